package inspect

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestDeltaSpectrumMatchesDense checks the r×r-core singular values
// against the Frobenius norm and the dense product's Gram eigenvalues.
func TestDeltaSpectrumMatchesDense(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ out, in, r int }{{40, 30, 4}, {17, 64, 8}, {5, 9, 3}} {
		b := make([]float64, c.out*c.r)
		a := make([]float64, c.r*c.in)
		for i := range b {
			b[i] = rng.NormFloat64()
		}
		for i := range a {
			a[i] = rng.NormFloat64()
		}
		s := 2.5
		sv := deltaSpectrum(b, c.out, a, c.in, c.r, s)
		// Dense ΔW and its Frobenius norm.
		var fro2 float64
		dense := make([]float64, c.out*c.in)
		for o := 0; o < c.out; o++ {
			for i := 0; i < c.in; i++ {
				var v float64
				for k := 0; k < c.r; k++ {
					v += b[o*c.r+k] * a[k*c.in+i]
				}
				dense[o*c.in+i] = s * v
				fro2 += s * v * s * v
			}
		}
		var sum2 float64
		for _, v := range sv {
			sum2 += v * v
		}
		if math.Abs(sum2-fro2) > 1e-9*fro2 {
			t.Fatalf("%+v: Σσ² = %v, ||ΔW||² = %v", c, sum2, fro2)
		}
		// σ_max by power iteration on the dense matrix.
		x := make([]float64, c.in)
		for i := range x {
			x[i] = 1
		}
		var lambda float64
		for it := 0; it < 500; it++ {
			y := make([]float64, c.out)
			for o := 0; o < c.out; o++ {
				for i := 0; i < c.in; i++ {
					y[o] += dense[o*c.in+i] * x[i]
				}
			}
			z := make([]float64, c.in)
			for o := 0; o < c.out; o++ {
				for i := 0; i < c.in; i++ {
					z[i] += dense[o*c.in+i] * y[o]
				}
			}
			var n float64
			for _, v := range z {
				n += v * v
			}
			n = math.Sqrt(n)
			lambda = n
			for i := range z {
				x[i] = z[i] / n
			}
		}
		if math.Abs(math.Sqrt(lambda)-sv[0]) > 1e-6*sv[0] {
			t.Fatalf("%+v: σ_max %v, power iteration %v", c, sv[0], math.Sqrt(lambda))
		}
	}
	if er := effectiveRank([]float64{1, 1, 1, 1}); math.Abs(er-4) > 1e-12 {
		t.Fatalf("flat spectrum effective rank %v", er)
	}
	if er := effectiveRank([]float64{3, 0, 0}); er != 1 {
		t.Fatalf("rank-one effective rank %v", er)
	}
}
