package inspect

import (
	"math"
	"sort"
)

// qrR returns the r×r upper-triangular factor R of the thin QR
// decomposition of the row-major n×r matrix m (n ≥ r assumed; smaller n
// gives a zero-padded R), by Householder reflections in float64. Q is never
// formed. m is not modified.
func qrR(m []float64, n, r int) []float64 {
	a := append([]float64(nil), m...)
	for j := 0; j < r && j < n; j++ {
		var norm float64
		for i := j; i < n; i++ {
			norm = math.Hypot(norm, a[i*r+j])
		}
		if norm == 0 {
			continue
		}
		if a[j*r+j] > 0 {
			norm = -norm
		}
		// v = x - norm·e1, stored in column j below the diagonal.
		for i := j; i < n; i++ {
			a[i*r+j] /= -norm
		}
		a[j*r+j] += 1
		for k := j + 1; k < r; k++ {
			var s float64
			for i := j; i < n; i++ {
				s += a[i*r+j] * a[i*r+k]
			}
			s = -s / a[j*r+j]
			for i := j; i < n; i++ {
				a[i*r+k] += s * a[i*r+j]
			}
		}
		a[j*r+j] = norm
	}
	R := make([]float64, r*r)
	for i := 0; i < r && i < n; i++ {
		for k := i; k < r; k++ {
			R[i*r+k] = a[i*r+k]
		}
	}
	return R
}

// singularValues returns the singular values of the row-major r×r matrix
// m, largest first, by one-sided Jacobi rotations in float64.
func singularValues(m []float64, r int) []float64 {
	a := append([]float64(nil), m...)
	for sweep := 0; sweep < 60; sweep++ {
		off := 0.0
		for p := 0; p < r; p++ {
			for q := p + 1; q < r; q++ {
				var alpha, beta, gamma float64
				for i := 0; i < r; i++ {
					x, y := a[i*r+p], a[i*r+q]
					alpha += x * x
					beta += y * y
					gamma += x * y
				}
				if gamma == 0 || math.Abs(gamma) <= 1e-15*math.Sqrt(alpha*beta) {
					continue
				}
				off = math.Max(off, math.Abs(gamma)/math.Sqrt(alpha*beta))
				zeta := (beta - alpha) / (2 * gamma)
				t := math.Copysign(1, zeta) / (math.Abs(zeta) + math.Sqrt(1+zeta*zeta))
				c := 1 / math.Sqrt(1+t*t)
				s := c * t
				for i := 0; i < r; i++ {
					x, y := a[i*r+p], a[i*r+q]
					a[i*r+p] = c*x - s*y
					a[i*r+q] = s*x + c*y
				}
			}
		}
		if off < 1e-15 {
			break
		}
	}
	sv := make([]float64, r)
	for j := 0; j < r; j++ {
		var s float64
		for i := 0; i < r; i++ {
			s = math.Hypot(s, a[i*r+j])
		}
		sv[j] = s
	}
	sort.Sort(sort.Reverse(sort.Float64Slice(sv)))
	return sv
}

// deltaSpectrum returns the singular values of s·B·A without forming B·A:
// with B = Q_B·R_B and Aᵀ = Q_A·R_A, s·B·A = Q_B·(s·R_B·R_Aᵀ)·Q_Aᵀ, whose
// singular values are those of the r×r core. B is out×r, A is r×in, both
// row-major.
func deltaSpectrum(b []float64, out int, a []float64, in, r int, s float64) []float64 {
	rb := qrR(b, out, r)
	at := make([]float64, in*r)
	for k := 0; k < r; k++ {
		for i := 0; i < in; i++ {
			at[i*r+k] = a[k*in+i]
		}
	}
	ra := qrR(at, in, r)
	core := make([]float64, r*r)
	for i := 0; i < r; i++ {
		for j := 0; j < r; j++ {
			var v float64
			for k := 0; k < r; k++ {
				v += rb[i*r+k] * ra[j*r+k] // (R_B · R_Aᵀ)[i,j]
			}
			core[i*r+j] = s * v
		}
	}
	return singularValues(core, r)
}

// effectiveRank is exp of the entropy of the normalized singular values
// (Roy & Vetterli, 2007): r for a flat spectrum, 1 for a rank-one delta.
func effectiveRank(sv []float64) float64 {
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
