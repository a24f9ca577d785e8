// Package linalg is the small dense linear algebra lorakit needs to work on
// low-rank products without forming them: a row-major float64 matrix,
// Householder QR, the singular value decomposition by one-sided Jacobi
// rotations, and the SVD, norm and inner product of a product B·A computed
// from its r×r cores (QR of B and of Aᵀ, then the SVD of R_B·R_Aᵀ), so an
// out×in matrix is never formed.
//
// Everything is float64 and deterministic: the same inputs give the same
// bits on every machine and for every GOMAXPROCS (no goroutines, no
// platform-dependent reductions).
//
// # Sign convention
//
// A singular vector pair (u, v) is only defined up to a common sign. This
// package makes the entry of largest magnitude of every left singular vector
// u positive (the lowest index wins a tie), and flips v with it: the
// convention of scikit-learn's svd_flip. It depends only on the matrix, not
// on how it was factored, so ProductSVD(B·M, M⁻¹·A) and ProductSVD(B, A)
// agree to rounding. Singular values are sorted from the largest; equal
// singular values span a subspace whose basis is not unique, and then only
// the product U·diag(S)·Vᵀ restricted to whole groups of equal values is
// defined.
//
// # Range
//
// Norms are sums of squares without rescaling: entries must stay below about
// 1e150 in magnitude (float32-derived data always does).
package linalg

import (
	"fmt"
	"math"
)

// Dense is a row-major matrix: the entry (i, j) is Data[i*Cols+j].
type Dense struct {
	Rows, Cols int
	Data       []float64
}

// NewDense returns a rows×cols matrix over data (used, not copied), or a
// zero matrix when data is nil. It panics when len(data) != rows*cols.
func NewDense(rows, cols int, data []float64) *Dense {
	if rows < 0 || cols < 0 {
		panic(fmt.Sprintf("linalg: negative dimension %d×%d", rows, cols))
	}
	if data == nil {
		data = make([]float64, rows*cols)
	}
	if len(data) != rows*cols {
		panic(fmt.Sprintf("linalg: %d values for a %d×%d matrix", len(data), rows, cols))
	}
	return &Dense{Rows: rows, Cols: cols, Data: data}
}

// At returns the entry (i, j).
func (m *Dense) At(i, j int) float64 { return m.Data[i*m.Cols+j] }

// Set sets the entry (i, j).
func (m *Dense) Set(i, j int, v float64) { m.Data[i*m.Cols+j] = v }

// Clone returns a copy of m.
func (m *Dense) Clone() *Dense {
	return &Dense{Rows: m.Rows, Cols: m.Cols, Data: append([]float64(nil), m.Data...)}
}

// T returns the transpose of m as a new matrix.
func (m *Dense) T() *Dense {
	t := NewDense(m.Cols, m.Rows, nil)
	transposeInto(t.Data, m.Data, m.Rows, m.Cols)
	return t
}

// transposeInto writes the transpose of the rows×cols row-major src to dst.
func transposeInto(dst, src []float64, rows, cols int) {
	const blk = 32 // cache blocking for tall operands
	for i0 := 0; i0 < rows; i0 += blk {
		i1 := min(i0+blk, rows)
		for j0 := 0; j0 < cols; j0 += blk {
			j1 := min(j0+blk, cols)
			for i := i0; i < i1; i++ {
				for j := j0; j < j1; j++ {
					dst[j*rows+i] = src[i*cols+j]
				}
			}
		}
	}
}

// Mul returns a·b. It panics when the inner dimensions differ.
func Mul(a, b *Dense) *Dense {
	if a.Cols != b.Rows {
		panic(fmt.Sprintf("linalg: Mul of %d×%d and %d×%d", a.Rows, a.Cols, b.Rows, b.Cols))
	}
	c := NewDense(a.Rows, b.Cols, nil)
	for i := 0; i < a.Rows; i++ {
		ci := c.Data[i*c.Cols : (i+1)*c.Cols]
		for k, aik := range a.Data[i*a.Cols : (i+1)*a.Cols] {
			if aik == 0 {
				continue
			}
			axpy(ci, aik, b.Data[k*b.Cols:(k+1)*b.Cols])
		}
	}
	return c
}

// Frobenius returns the Frobenius norm of m.
func (m *Dense) Frobenius() float64 { return math.Sqrt(dot(m.Data, m.Data)) }

// dot returns Σ x[i]·y[i] (len(y) >= len(x)).
func dot(x, y []float64) float64 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// axpy sets y[i] += a·x[i] (len(x) >= len(y)).
func axpy(y []float64, a float64, x []float64) {
	x = x[:len(y)]
	for i, v := range x {
		y[i] += a * v
	}
}

// EffectiveRank is exp of the entropy of the normalized singular values
// (Roy & Vetterli, 2007): r for a flat spectrum of r values, 1 for a rank-one
// matrix, 0 when every value is zero.
func EffectiveRank(sv []float64) float64 {
	var sum float64
	for _, v := range sv {
		sum += v
	}
	if sum == 0 {
		return 0
	}
	var h float64
	for _, v := range sv {
		if p := v / sum; p > 0 {
			h -= p * math.Log(p)
		}
	}
	return math.Exp(h)
}
