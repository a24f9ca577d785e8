package adapterops

import (
	"math"

	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
	"github.com/lorakit/lorakit/pkg/linalg"
)

// The float64 steps of the subspace iteration work on tall m×b matrices
// (b the block size, a few dozen): products with b×b matrices and
// orthonormalisation. They run on the goroutines of the dense methods, rows
// split into fixed blocks: each row is computed by the same arithmetic
// wherever it runs, and sums over rows add the blocks' partial sums in
// block order, so the results do not depend on the number of threads.

// tallBlock is the number of rows of a tall matrix a goroutine takes at a
// time.
const tallBlock = 512

// tallMul returns a·c for an m×b a and a b×p c, as a float32 GEMM on be:
// the tall matrices of the iteration only ever meet D through float32
// GEMMs, whose rounding dominates.
func tallMul(a, c *linalg.Dense, be *cpu.Backend) *linalg.Dense {
	out := linalg.NewDense(a.Rows, c.Cols, nil)
	af, cf, of := toF32(a.Data), toF32(c.Data), make([]float32, len(out.Data))
	be.Gemm(compute.Gemm{M: a.Rows, N: c.Cols, K: a.Cols, Alpha: 1}, cpu.NewBuffer(af), cpu.NewBuffer(cf), cpu.NewBuffer(of))
	for i, v := range of {
		out.Data[i] = float64(v)
	}
	return out
}

func toF32(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}

// tallQR returns q with orthonormal columns and an upper-triangular r with
// y = q·r, for an m×b y (m >= b): Cholesky QR twice (CholQR2: the Gram
// matrix, its Cholesky factor, a triangular solve per row; the second pass
// restores orthogonality to rounding), accurate while y's condition number
// stays below about 1e7. For a y nearer to rank deficiency (a module whose
// ΔW has lower rank than the block) it is Householder QR (package linalg).
func tallQR(y *linalg.Dense, be *cpu.Backend) (q, r *linalg.Dense) {
	q1, r1, ok := cholQR(y, be)
	if ok {
		var r2 *linalg.Dense
		if q, r2, ok = cholQR(q1, be); ok {
			return q, linalg.Mul(r2, r1)
		}
	}
	h := linalg.NewQR(y)
	return h.ApplyQ(identity(y.Cols)), h.R()
}

// cholQR is one pass of Cholesky QR; ok is false when the Gram matrix is
// too ill-conditioned for it. The Gram matrix is float64; Q = Y·R⁻¹ is a
// float32 GEMM (the second pass of tallQR makes Q orthonormal to float32
// rounding whatever the first left).
func cholQR(y *linalg.Dense, be *cpu.Backend) (q, r *linalg.Dense, ok bool) {
	m, b := y.Rows, y.Cols
	parts := make([][]float64, (m+tallBlock-1)/tallBlock)
	parallelBlocks(m, tallBlock, be.Threads(), func(_, lo, hi int) {
		g := make([]float64, b*b) // upper triangle
		for i := lo; i < hi; i++ {
			row := y.Data[i*b : (i+1)*b]
			for p, x := range row {
				if x == 0 {
					continue
				}
				gp := g[p*b : (p+1)*b]
				for l := p; l < b; l++ {
					gp[l] += x * row[l]
				}
			}
		}
		parts[lo/tallBlock] = g
	})
	g := make([]float64, b*b)
	for _, part := range parts {
		for i, v := range part {
			g[i] += v
		}
	}
	// G = RᵀR, R upper triangular with a positive diagonal.
	r = linalg.NewDense(b, b, nil)
	var largest float64
	for p := 0; p < b; p++ {
		largest = math.Max(largest, g[p*b+p])
	}
	for j := 0; j < b; j++ {
		for i := 0; i <= j; i++ {
			s := g[i*b+j]
			for l := 0; l < i; l++ {
				s -= r.Data[l*b+i] * r.Data[l*b+j]
			}
			if i == j {
				if !(s > 1e-13*largest) {
					return nil, nil, false
				}
				r.Data[j*b+j] = math.Sqrt(s)
			} else {
				r.Data[i*b+j] = s / r.Data[i*b+i]
			}
		}
	}
	// R⁻¹ (upper triangular), column by column: R·x = eⱼ.
	inv := linalg.NewDense(b, b, nil)
	for j := 0; j < b; j++ {
		for i := j; i >= 0; i-- {
			s := 0.0
			if i == j {
				s = 1
			}
			for l := i + 1; l <= j; l++ {
				s -= r.Data[i*b+l] * inv.Data[l*b+j]
			}
			inv.Data[i*b+j] = s / r.Data[i*b+i]
		}
	}
	return tallMul(y, inv, be), r, true
}
