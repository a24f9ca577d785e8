package linalg

import (
	"math"
	"sort"
)

// SVD is a thin singular value decomposition A = U·diag(S)·Vᵀ of an m×n
// matrix, p = min(m, n): U is m×p and V is n×p with orthonormal columns, S
// holds p singular values from the largest. Signs follow the package's
// convention (the largest-magnitude entry of each column of U is positive).
type SVD struct {
	U *Dense
	S []float64
	V *Dense
}

// maxSweeps bounds the Jacobi iteration; convergence takes well under 20
// sweeps in practice (it is quadratic once the columns are nearly orthogonal).
const maxSweeps = 100

// ComputeSVD returns the thin SVD of a by one-sided Jacobi rotations
// (Hestenes), which computes small singular values to high relative
// accuracy. a is not modified.
func ComputeSVD(a *Dense) SVD {
	m, n := a.Rows, a.Cols
	u, s, v := svdRowMajor(a.Data, m, n)
	return newSVD(u, s, v, m, n)
}

// SingularValues returns the singular values of a, largest first.
func SingularValues(a *Dense) []float64 {
	return ComputeSVD(a).S
}

// svdRowMajor returns the SVD of the m×n row-major matrix a (not modified)
// as column-major singular vectors, whichever of m and n is larger.
func svdRowMajor(a []float64, m, n int) (u, s, v []float64) {
	if m >= n {
		cols := make([]float64, m*n)
		transposeInto(cols, a, m, n)
		return svdColumns(cols, m, n)
	}
	// Aᵀ = U'·S·V'ᵀ, so A = V'·S·U'ᵀ; the rows of A are the columns of Aᵀ.
	v, s, u = svdColumns(append([]float64(nil), a...), n, m)
	return u, s, v
}

// newSVD packs column-major singular vectors and applies the sign
// convention.
func newSVD(u, s, v []float64, m, n int) SVD {
	r := SVD{U: fromColumns(u, m, len(s)), S: s, V: fromColumns(v, n, len(s))}
	FlipSigns(r.U, r.V)
	return r
}

// fromColumns converts p column-major columns of length m to an m×p Dense.
func fromColumns(cols []float64, m, p int) *Dense {
	d := NewDense(m, p, nil)
	transposeInto(d.Data, cols, p, m)
	return d
}

// svdColumns computes the SVD of the m×n matrix (m >= n) given by its n
// columns (column-major, overwritten). It returns n left singular vectors
// (columns of length m, orthonormal: the ones of zero singular values are an
// orthonormal completion), the n singular values sorted from the largest
// (stable: equal values keep their column order) and the n right singular
// vectors (columns of length n). No sign convention is applied.
func svdColumns(w []float64, m, n int) (u, s, v []float64) {
	v = make([]float64, n*n)
	for j := 0; j < n; j++ {
		v[j*n+j] = 1
	}
	tol := math.Sqrt(float64(m)) * 0x1p-52
	for sweep := 0; sweep < maxSweeps; sweep++ {
		rotated := false
		for i := 0; i < n-1; i++ {
			wi := w[i*m : (i+1)*m]
			for j := i + 1; j < n; j++ {
				wj := w[j*m : (j+1)*m]
				alpha, beta, gamma := dot(wi, wi), dot(wj, wj), dot(wi, wj)
				if gamma == 0 || math.Abs(gamma) <= tol*math.Sqrt(alpha)*math.Sqrt(beta) {
					continue
				}
				rotated = true
				zeta := (beta - alpha) / (2 * gamma)
				t := math.Copysign(1, zeta) / (math.Abs(zeta) + math.Sqrt(1+zeta*zeta))
				c := 1 / math.Sqrt(1+t*t)
				sn := c * t
				rotate(wi, wj, c, sn)
				rotate(v[i*n:(i+1)*n], v[j*n:(j+1)*n], c, sn)
			}
		}
		if !rotated {
			break
		}
	}
	sigma := make([]float64, n)
	for j := range sigma {
		sigma[j] = math.Sqrt(dot(w[j*m:(j+1)*m], w[j*m:(j+1)*m]))
	}
	order := make([]int, n)
	for j := range order {
		order[j] = j
	}
	sort.SliceStable(order, func(a, b int) bool { return sigma[order[a]] > sigma[order[b]] })
	u = make([]float64, m*n)
	s = make([]float64, n)
	vs := make([]float64, n*n)
	var zero []int
	for k, j := range order {
		s[k] = sigma[j]
		copy(vs[k*n:(k+1)*n], v[j*n:(j+1)*n])
		if sigma[j] == 0 {
			zero = append(zero, k)
			continue
		}
		inv := 1 / sigma[j]
		uk := u[k*m : (k+1)*m]
		for i, x := range w[j*m : (j+1)*m] {
			uk[i] = x * inv
		}
	}
	complete(u, m, n, zero)
	return u, s, vs
}

// rotate applies the plane rotation [c −s; s c] to the column pair (x, y):
// x ← c·x − s·y, y ← s·x + c·y.
func rotate(x, y []float64, c, s float64) {
	y = y[:len(x)]
	for i := range x {
		a, b := x[i], y[i]
		x[i] = c*a - s*b
		y[i] = s*a + c*b
	}
}

// complete fills the columns listed in missing (column-major, length m,
// n columns) with unit vectors orthogonal to every other column: the first
// standard basis vectors that survive two rounds of Gram–Schmidt.
func complete(u []float64, m, n int, missing []int) {
	if len(missing) == 0 {
		return
	}
	isMissing := make([]bool, n)
	for _, k := range missing {
		isMissing[k] = true
	}
	cand := 0
	for _, k := range missing {
		uk := u[k*m : (k+1)*m]
		for ; cand < m; cand++ {
			clear(uk)
			uk[cand] = 1
			for round := 0; round < 2; round++ {
				for j := 0; j < n; j++ {
					if j == k || isMissing[j] {
						continue
					}
					uj := u[j*m : (j+1)*m]
					axpy(uk, -dot(uj, uk), uj)
				}
			}
			if nrm := math.Sqrt(dot(uk, uk)); nrm > 0.5 {
				for i := range uk {
					uk[i] /= nrm
				}
				isMissing[k] = false
				cand++
				break
			}
		}
	}
}

// FlipSigns applies the package's sign convention to singular vector pairs
// computed elsewhere: for each column j, when the entry of largest
// magnitude of column j of u (the first one on a tie) is negative, column j
// of u and of v are negated.
func FlipSigns(u, v *Dense) {
	if u.Cols != v.Cols {
		panic("linalg: FlipSigns: u and v have different numbers of columns")
	}
	for j := 0; j < u.Cols; j++ {
		best, bi := -1.0, 0
		for i := 0; i < u.Rows; i++ {
			if a := math.Abs(u.Data[i*u.Cols+j]); a > best {
				best, bi = a, i
			}
		}
		if u.Data[bi*u.Cols+j] >= 0 {
			continue
		}
		for _, m := range []*Dense{u, v} {
			for i := 0; i < m.Rows; i++ {
				m.Data[i*m.Cols+j] = -m.Data[i*m.Cols+j]
			}
		}
	}
}
