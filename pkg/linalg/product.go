package linalg

import "fmt"

// The functions below work on a product M = B·A of an m×r matrix B and an
// r×n matrix A (a LoRA delta without its scaling) through the QR
// factorizations B = Q_B·R_B and Aᵀ = Q_A·R_A: M = Q_B·(R_B·R_Aᵀ)·Q_Aᵀ, so the
// singular values of M are those of the small core R_B·R_Aᵀ and its singular
// vectors are Q_B and Q_A applied to the core's. Cost O((m+n)·r²); the m×n
// product is never formed.

func checkProduct(b, a *Dense) {
	if b.Cols != a.Rows {
		panic(fmt.Sprintf("linalg: product of %d×%d and %d×%d", b.Rows, b.Cols, a.Rows, a.Cols))
	}
}

// productCore factors B and Aᵀ and returns both factorizations and the
// core R_B·R_Aᵀ (min(m,r) × min(n,r)).
func productCore(b, a *Dense) (qb, qa *QR, core *Dense) {
	checkProduct(b, a)
	qb = NewQR(b)
	qa = NewQRColumns(a.Data, a.Cols, a.Rows)
	return qb, qa, Mul(qb.R(), qa.R().T())
}

// ProductSingularValues returns the min(m, n, r) singular values of b·a,
// largest first.
func ProductSingularValues(b, a *Dense) []float64 {
	_, _, core := productCore(b, a)
	return SingularValues(core)
}

// ProductNorm returns the Frobenius norm of b·a, computed from the core
// (accurate even when b·a is much smaller than ‖b‖·‖a‖).
func ProductNorm(b, a *Dense) float64 {
	_, _, core := productCore(b, a)
	return core.Frobenius()
}

// ProductSVD returns the thin SVD of b·a with p = min(m, n, r) singular
// triplets: U is m×p, V is n×p.
func ProductSVD(b, a *Dense) SVD {
	qb, qa, core := productCore(b, a)
	m, n := b.Rows, a.Cols
	pb, pa := core.Rows, core.Cols
	uc, s, vc := svdRowMajor(core.Data, pb, pa) // core singular vectors, column-major
	p := len(s)
	u := expand(uc, pb, m, p)
	qb.applyQColumns(u, p)
	v := expand(vc, pa, n, p)
	qa.applyQColumns(v, p)
	return newSVD(u, s, v, m, n)
}

// expand copies p columns of length short into columns of length long,
// zero-padded.
func expand(cols []float64, short, long, p int) []float64 {
	out := make([]float64, long*p)
	for c := 0; c < p; c++ {
		copy(out[c*long:c*long+short], cols[c*short:(c+1)*short])
	}
	return out
}

// ProductInner returns the Frobenius inner product ⟨B₁·A₁, B₂·A₂⟩ =
// tr((B₁ᵀ·B₂)·(A₂·A₁ᵀ)), in O((m+n)·r₁·r₂). B₁ and B₂ must have the same
// number of rows, A₁ and A₂ the same number of columns.
func ProductInner(b1, a1, b2, a2 *Dense) float64 {
	checkProduct(b1, a1)
	checkProduct(b2, a2)
	if b1.Rows != b2.Rows || a1.Cols != a2.Cols {
		panic(fmt.Sprintf("linalg: ProductInner of %d×%d and %d×%d products", b1.Rows, a1.Cols, b2.Rows, a2.Cols))
	}
	r1, r2 := b1.Cols, b2.Cols
	g := make([]float64, r1*r2) // B₁ᵀ·B₂, accumulated row by row of the B's
	for o := 0; o < b1.Rows; o++ {
		x := b1.Data[o*r1 : (o+1)*r1]
		y := b2.Data[o*r2 : (o+1)*r2]
		for j, xj := range x {
			if xj != 0 {
				axpy(g[j*r2:(j+1)*r2], xj, y)
			}
		}
	}
	n := a1.Cols
	var sum float64
	for j := 0; j < r1; j++ {
		rowA1 := a1.Data[j*n : (j+1)*n]
		for k := 0; k < r2; k++ {
			if gjk := g[j*r2+k]; gjk != 0 {
				sum += gjk * dot(a2.Data[k*n:(k+1)*n], rowA1)
			}
		}
	}
	return sum
}
