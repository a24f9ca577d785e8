package linalg

import "math"

// QR is the Householder QR decomposition of an m×n matrix A = Q·R, with
// p = min(m, n) reflectors H_j = I − τ_j·v_j·v_jᵀ (Q = H_0·H_1·…·H_{p−1}) and
// R upper trapezoidal p×n. Q is never formed: ApplyQ multiplies by it.
//
// The storage is column-major (column j of A at cols[j*m:(j+1)*m]), so the
// tall matrices of low-rank factors are walked contiguously.
type QR struct {
	m, n int
	cols []float64 // reflectors below the diagonal, R on and above it
	tau  []float64
}

// NewQR factors a (which is not modified).
func NewQR(a *Dense) *QR {
	cols := make([]float64, a.Rows*a.Cols)
	transposeInto(cols, a.Data, a.Rows, a.Cols)
	return factorQR(cols, a.Rows, a.Cols)
}

// NewQRColumns factors the m×n matrix whose columns are the rows of the
// n×m row-major matrix cols (that is, cols is Aᵀ). cols is not modified.
// For a LoRA A of shape r×in, NewQRColumns(A, in, r) factors Aᵀ without a
// transposition.
func NewQRColumns(cols []float64, m, n int) *QR {
	if len(cols) != m*n {
		panic("linalg: NewQRColumns: wrong length")
	}
	return factorQR(append([]float64(nil), cols...), m, n)
}

// factorQR runs Householder QR in place on column-major storage (LAPACK
// dgeqr2's choice of reflector: β = −sign(α)·‖x‖, so no cancellation).
func factorQR(cols []float64, m, n int) *QR {
	p := min(m, n)
	q := &QR{m: m, n: n, cols: cols, tau: make([]float64, p)}
	for j := 0; j < p; j++ {
		x := cols[j*m+j : (j+1)*m]
		alpha := x[0]
		xnorm := math.Sqrt(dot(x[1:], x[1:]))
		if xnorm == 0 {
			continue // H_j = I; R[j][j] = α
		}
		beta := -math.Copysign(math.Sqrt(alpha*alpha+xnorm*xnorm), alpha)
		q.tau[j] = (beta - alpha) / beta
		scale := 1 / (alpha - beta)
		for i := 1; i < len(x); i++ {
			x[i] *= scale
		}
		reflect(x[1:], q.tau[j], cols[(j+1)*m:], m, j, n-j-1)
		x[0] = beta
	}
	return q
}

// reflect applies H = I − τ·v·vᵀ, v = (1, v1), to the k columns of length m
// stored one after another in cols, from row j on: y ← y − τ·(vᵀy)·v. Four
// columns share each pass over v.
func reflect(v1 []float64, tau float64, cols []float64, m, j, k int) {
	n := len(v1)
	c := 0
	for ; c+4 <= k; c += 4 {
		y0 := cols[c*m+j : c*m+j+1+n]
		y1 := cols[(c+1)*m+j : (c+1)*m+j+1+n]
		y2 := cols[(c+2)*m+j : (c+2)*m+j+1+n]
		y3 := cols[(c+3)*m+j : (c+3)*m+j+1+n]
		s0, s1, s2, s3 := y0[0], y1[0], y2[0], y3[0]
		t0, t1, t2, t3 := y0[1:][:n], y1[1:][:n], y2[1:][:n], y3[1:][:n]
		for i, vi := range v1 {
			s0 += vi * t0[i]
			s1 += vi * t1[i]
			s2 += vi * t2[i]
			s3 += vi * t3[i]
		}
		s0, s1, s2, s3 = s0*tau, s1*tau, s2*tau, s3*tau
		y0[0] -= s0
		y1[0] -= s1
		y2[0] -= s2
		y3[0] -= s3
		for i, vi := range v1 {
			t0[i] -= s0 * vi
			t1[i] -= s1 * vi
			t2[i] -= s2 * vi
			t3[i] -= s3 * vi
		}
	}
	for ; c < k; c++ {
		y := cols[c*m+j : c*m+j+1+n]
		w := tau * (y[0] + dot(v1, y[1:]))
		y[0] -= w
		axpy(y[1:], -w, v1)
	}
}

// R returns the p×n upper-trapezoidal factor, p = min(m, n).
func (q *QR) R() *Dense {
	p := min(q.m, q.n)
	r := NewDense(p, q.n, nil)
	for k := 0; k < q.n; k++ {
		col := q.cols[k*q.m : (k+1)*q.m]
		for i := 0; i <= k && i < p; i++ {
			r.Data[i*q.n+k] = col[i]
		}
	}
	return r
}

// applyQColumns overwrites the k columns x (each of length m, column-major;
// entries p…m−1 of each column are expected to be zero for Q·[X; 0]) with
// Q·x, applying the reflectors from the last to the first.
func (q *QR) applyQColumns(x []float64, k int) {
	m := q.m
	for j := min(q.m, q.n) - 1; j >= 0; j-- {
		if q.tau[j] != 0 {
			// v[0] is stored as R[j][j]; the reflector's first entry is 1.
			reflect(q.cols[j*m+j+1:(j+1)*m], q.tau[j], x, m, j, k)
		}
	}
}

// ApplyQ returns Q·x for a p×k matrix x (p = min(m, n)), an m×k matrix: the
// first p columns of Q times x.
func (q *QR) ApplyQ(x *Dense) *Dense {
	p := min(q.m, q.n)
	if x.Rows != p {
		panic("linalg: ApplyQ: wrong number of rows")
	}
	k := x.Cols
	cols := make([]float64, q.m*k)
	for c := 0; c < k; c++ {
		for i := 0; i < p; i++ {
			cols[c*q.m+i] = x.Data[i*k+c]
		}
	}
	q.applyQColumns(cols, k)
	out := NewDense(q.m, k, nil)
	transposeInto(out.Data, cols, k, q.m)
	return out
}
