package linalg

import (
	"math"
	"math/rand/v2"
	"testing"
)

func randDense(rng *rand.Rand, rows, cols int) *Dense {
	d := NewDense(rows, cols, nil)
	for i := range d.Data {
		d.Data[i] = rng.NormFloat64()
	}
	return d
}

// lowRank returns a rows×cols matrix of the given rank (a product of
// random factors), as a Dense.
func lowRank(rng *rand.Rand, rows, cols, rank int) *Dense {
	return Mul(randDense(rng, rows, rank), randDense(rng, rank, cols))
}

func maxAbsDiff(a, b *Dense) float64 {
	var d float64
	for i := range a.Data {
		d = math.Max(d, math.Abs(a.Data[i]-b.Data[i]))
	}
	return d
}

// reconstruct returns U·diag(S)·Vᵀ.
func reconstruct(s SVD) *Dense {
	us := s.U.Clone()
	for i := 0; i < us.Rows; i++ {
		for j := 0; j < us.Cols; j++ {
			us.Data[i*us.Cols+j] *= s.S[j]
		}
	}
	return Mul(us, s.V.T())
}

// orthonormalError returns max |(XᵀX − I)[i,j]| over the columns of x.
func orthonormalError(x *Dense) float64 {
	g := Mul(x.T(), x)
	var e float64
	for i := 0; i < g.Rows; i++ {
		for j := 0; j < g.Cols; j++ {
			want := 0.0
			if i == j {
				want = 1
			}
			e = math.Max(e, math.Abs(g.At(i, j)-want))
		}
	}
	return e
}

func checkSVD(t *testing.T, name string, a *Dense, s SVD, p int) {
	t.Helper()
	if s.U.Rows != a.Rows || s.U.Cols != p || s.V.Rows != a.Cols || s.V.Cols != p || len(s.S) != p {
		t.Fatalf("%s: shapes U %d×%d S %d V %d×%d for a %d×%d matrix", name, s.U.Rows, s.U.Cols, len(s.S), s.V.Rows, s.V.Cols, a.Rows, a.Cols)
	}
	scale := math.Max(a.Frobenius(), 1e-300)
	if d := maxAbsDiff(reconstruct(s), a); d > 1e-13*scale {
		t.Errorf("%s: |U·S·Vᵀ − A| = %g (‖A‖ %g)", name, d, scale)
	}
	if e := orthonormalError(s.U); e > 1e-13 {
		t.Errorf("%s: U not orthonormal: %g", name, e)
	}
	if e := orthonormalError(s.V); e > 1e-13 {
		t.Errorf("%s: V not orthonormal: %g", name, e)
	}
	for k := 1; k < len(s.S); k++ {
		if s.S[k] > s.S[k-1] || s.S[k] < 0 {
			t.Fatalf("%s: singular values not sorted: %v", name, s.S)
		}
	}
	checkSigns(t, name, s.U)
}

// checkSigns checks the convention: the largest-magnitude entry of each
// column of u (the first on a tie) is positive.
func checkSigns(t *testing.T, name string, u *Dense) {
	t.Helper()
	for j := 0; j < u.Cols; j++ {
		best, bi := -1.0, 0
		for i := 0; i < u.Rows; i++ {
			if a := math.Abs(u.At(i, j)); a > best {
				best, bi = a, i
			}
		}
		if u.At(bi, j) < 0 {
			t.Errorf("%s: column %d of U has its largest entry negative", name, j)
		}
	}
}

func TestQR(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct{ m, n int }{{7, 3}, {3, 7}, {5, 5}, {64, 16}, {1, 1}, {4, 1}, {1, 4}} {
		a := randDense(rng, c.m, c.n)
		q := NewQR(a)
		r := q.R()
		p := min(c.m, c.n)
		for i := 0; i < r.Rows; i++ {
			for j := 0; j < min(i, r.Cols); j++ {
				if r.At(i, j) != 0 {
					t.Fatalf("%+v: R[%d][%d] = %g below the diagonal", c, i, j, r.At(i, j))
				}
			}
		}
		// Q·R = A, and the first p columns of Q are orthonormal.
		if d := maxAbsDiff(q.ApplyQ(r), a); d > 1e-13*a.Frobenius() {
			t.Errorf("%+v: |Q·R − A| = %g", c, d)
		}
		eye := NewDense(p, p, nil)
		for i := 0; i < p; i++ {
			eye.Set(i, i, 1)
		}
		if e := orthonormalError(q.ApplyQ(eye)); e > 1e-14 {
			t.Errorf("%+v: Q not orthonormal: %g", c, e)
		}
		// NewQRColumns on Aᵀ's rows gives the same factorization.
		qc := NewQRColumns(a.T().Data, c.m, c.n)
		if d := maxAbsDiff(qc.R(), r); d != 0 {
			t.Errorf("%+v: NewQRColumns differs from NewQR by %g", c, d)
		}
	}
	// A zero column and a rank-deficient matrix.
	a := NewDense(4, 3, []float64{1, 0, 2, 2, 0, 4, 3, 0, 6, 4, 0, 8})
	q := NewQR(a)
	if d := maxAbsDiff(q.ApplyQ(q.R()), a); d > 1e-14 {
		t.Errorf("rank-deficient: |Q·R − A| = %g", d)
	}
}

func TestSVD(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	cases := map[string]*Dense{
		"tall":      randDense(rng, 40, 7),
		"wide":      randDense(rng, 6, 33),
		"square":    randDense(rng, 12, 12),
		"rank 3":    lowRank(rng, 20, 15, 3),
		"rank 2 wd": lowRank(rng, 5, 30, 2),
		"1×1":       NewDense(1, 1, []float64{-2.5}),
		"row":       randDense(rng, 1, 9),
		"column":    randDense(rng, 9, 1),
		"zero":      NewDense(4, 3, nil),
		"diag ties": NewDense(3, 3, []float64{2, 0, 0, 0, -2, 0, 0, 0, 1}),
	}
	for name, a := range cases {
		s := ComputeSVD(a)
		checkSVD(t, name, a, s, min(a.Rows, a.Cols))
	}
	// Known values: diag(3, −4) has singular values 4, 3.
	s := ComputeSVD(NewDense(2, 2, []float64{3, 0, 0, -4}))
	if math.Abs(s.S[0]-4) > 1e-15 || math.Abs(s.S[1]-3) > 1e-15 {
		t.Errorf("diag(3,−4): %v", s.S)
	}
	// Graded spectrum: Jacobi keeps small singular values to high relative
	// accuracy.
	u := ComputeSVD(randDense(rng, 8, 8)).U
	v := ComputeSVD(randDense(rng, 8, 8)).V
	want := []float64{1, 1e-2, 1e-4, 1e-6, 1e-8, 1e-10, 1e-12, 1e-14}
	d := NewDense(8, 8, nil)
	for i, x := range want {
		d.Set(i, i, x)
	}
	g := ComputeSVD(Mul(Mul(u, d), v.T()))
	for i, x := range want[:6] {
		if rel := math.Abs(g.S[i]-x) / x; rel > 1e-6 {
			t.Errorf("graded σ%d = %g, want %g (rel %g)", i, g.S[i], x, rel)
		}
	}
}

func TestSingularValuesDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	a := randDense(rng, 30, 10)
	s1, s2 := ComputeSVD(a), ComputeSVD(a.Clone())
	for i := range s1.S {
		if s1.S[i] != s2.S[i] {
			t.Fatal("two runs differ")
		}
	}
	for i := range s1.U.Data {
		if s1.U.Data[i] != s2.U.Data[i] {
			t.Fatal("two runs differ in U")
		}
	}
}

// TestProductSVDMatchesDense compares the core-based SVD of B·A with the SVD
// of the formed product, factor by factor (the spectra are distinct, so the
// sign convention makes the vectors unique).
func TestProductSVDMatchesDense(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, c := range []struct{ m, n, r int }{{40, 30, 4}, {17, 64, 8}, {5, 9, 3}, {6, 50, 8}, {50, 4, 8}, {3, 2, 5}} {
		b, a := randDense(rng, c.m, c.r), randDense(rng, c.r, c.n)
		ps := ProductSVD(b, a)
		dense := Mul(b, a)
		checkSVD(t, "product", dense, ps, min(c.m, c.n, c.r))
		ds := ComputeSVD(dense)
		p := min(c.m, c.n, c.r)
		if len(ps.S) != p {
			t.Fatalf("%+v: %d singular values, want %d", c, len(ps.S), p)
		}
		for k := 0; k < p; k++ {
			if math.Abs(ps.S[k]-ds.S[k]) > 1e-12*ds.S[0] {
				t.Errorf("%+v: σ%d = %v, dense %v", c, k, ps.S[k], ds.S[k])
			}
			for i := 0; i < c.m; i++ {
				if math.Abs(ps.U.At(i, k)-ds.U.At(i, k)) > 1e-9 {
					t.Fatalf("%+v: U[%d][%d] = %v, dense %v", c, i, k, ps.U.At(i, k), ds.U.At(i, k))
				}
			}
			for i := 0; i < c.n; i++ {
				if math.Abs(ps.V.At(i, k)-ds.V.At(i, k)) > 1e-9 {
					t.Fatalf("%+v: V[%d][%d] = %v, dense %v", c, i, k, ps.V.At(i, k), ds.V.At(i, k))
				}
			}
		}
		if got, want := ProductNorm(b, a), dense.Frobenius(); math.Abs(got-want) > 1e-12*want {
			t.Errorf("%+v: ProductNorm %v, dense %v", c, got, want)
		}
	}
}

// TestProductSVDFactorization: the result depends only on the product, not
// on how it is factored (B·M, M⁻¹·A).
func TestProductSVDFactorization(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	b, a := randDense(rng, 30, 5), randDense(rng, 5, 20)
	mm := randDense(rng, 5, 5)
	for i := 0; i < 5; i++ {
		mm.Set(i, i, mm.At(i, i)+5) // well conditioned
	}
	// M⁻¹·A by solving M·X = A with the SVD of M: X = V·S⁻¹·Uᵀ·A.
	ms := ComputeSVD(mm)
	inv := NewDense(5, 5, nil)
	for i := 0; i < 5; i++ {
		for j := 0; j < 5; j++ {
			var v float64
			for k := 0; k < 5; k++ {
				v += ms.V.At(i, k) / ms.S[k] * ms.U.At(j, k)
			}
			inv.Set(i, j, v)
		}
	}
	s1 := ProductSVD(b, a)
	s2 := ProductSVD(Mul(b, mm), Mul(inv, a))
	for i := range s1.U.Data {
		if math.Abs(s1.U.Data[i]-s2.U.Data[i]) > 1e-10 {
			t.Fatalf("U differs at %d: %v vs %v", i, s1.U.Data[i], s2.U.Data[i])
		}
	}
	for i := range s1.V.Data {
		if math.Abs(s1.V.Data[i]-s2.V.Data[i]) > 1e-10 {
			t.Fatalf("V differs at %d: %v vs %v", i, s1.V.Data[i], s2.V.Data[i])
		}
	}
}

// TestProductSpectrumPowerIteration checks the largest singular value of
// the core against power iteration on the formed product, and Σσ² against
// the Frobenius norm.
func TestProductSpectrumPowerIteration(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ out, in, r int }{{40, 30, 4}, {17, 64, 8}, {5, 9, 3}} {
		b, a := randDense(rng, c.out, c.r), randDense(rng, c.r, c.in)
		sv := ProductSingularValues(b, a)
		dense := Mul(b, a)
		var sum2 float64
		for _, v := range sv {
			sum2 += v * v
		}
		fro2 := dot(dense.Data, dense.Data)
		if math.Abs(sum2-fro2) > 1e-12*fro2 {
			t.Fatalf("%+v: Σσ² = %v, ‖BA‖² = %v", c, sum2, fro2)
		}
		x := NewDense(c.in, 1, nil)
		for i := range x.Data {
			x.Data[i] = 1
		}
		var lambda float64
		for it := 0; it < 500; it++ {
			z := Mul(dense.T(), Mul(dense, x))
			lambda = z.Frobenius()
			for i := range z.Data {
				z.Data[i] /= lambda
			}
			x = z
		}
		if math.Abs(math.Sqrt(lambda)-sv[0]) > 1e-9*sv[0] {
			t.Fatalf("%+v: σ_max %v, power iteration %v", c, sv[0], math.Sqrt(lambda))
		}
	}
}

func TestProductInner(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	b1, a1 := randDense(rng, 23, 4), randDense(rng, 4, 31)
	b2, a2 := randDense(rng, 23, 6), randDense(rng, 6, 31)
	x, y := Mul(b1, a1), Mul(b2, a2)
	want := dot(x.Data, y.Data)
	if got := ProductInner(b1, a1, b2, a2); math.Abs(got-want) > 1e-12*math.Abs(want) {
		t.Errorf("inner %v, dense %v", got, want)
	}
	// With itself: ‖X‖²; with −3·itself: −3‖X‖².
	if got, want := ProductInner(b1, a1, b1, a1), math.Pow(ProductNorm(b1, a1), 2); math.Abs(got-want) > 1e-12*want {
		t.Errorf("inner with itself %v, norm² %v", got, want)
	}
	neg := b1.Clone()
	for i := range neg.Data {
		neg.Data[i] *= -3
	}
	if got, want := ProductInner(b1, a1, neg, a1), -3*math.Pow(ProductNorm(b1, a1), 2); math.Abs(got-want) > 1e-12*math.Abs(want) {
		t.Errorf("inner with −3× itself %v, want %v", got, want)
	}
}

func TestEffectiveRank(t *testing.T) {
	if er := EffectiveRank([]float64{1, 1, 1, 1}); math.Abs(er-4) > 1e-12 {
		t.Fatalf("flat spectrum effective rank %v", er)
	}
	if er := EffectiveRank([]float64{3, 0, 0}); er != 1 {
		t.Fatalf("rank-one effective rank %v", er)
	}
	if er := EffectiveRank([]float64{0, 0}); er != 0 {
		t.Fatalf("zero spectrum effective rank %v", er)
	}
}

// BenchmarkProduct is one module of a rank-16 adapter on an 8B MLP
// projection (up_proj: 14336×4096): the full SVD, and the spectrum only.
func BenchmarkProduct(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	bm, am := randDense(rng, 14336, 16), randDense(rng, 16, 4096)
	b.Run("SVD", func(b *testing.B) {
		for b.Loop() {
			ProductSVD(bm, am)
		}
	})
	b.Run("SingularValues", func(b *testing.B) {
		for b.Loop() {
			ProductSingularValues(bm, am)
		}
	})
}
