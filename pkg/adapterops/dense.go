package adapterops

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/lorakit/lorakit/pkg/linalg"
)

// The *_svd pruning methods are defined elementwise on the deltas, so they
// form each module's out×in matrix. One such matrix (float32) is alive at a
// time: it first holds each ΔWᵢ in turn to find its magnitude threshold, then
// the combined matrix, built row block by row block from ΔWᵢ recomputed in
// the same arithmetic (so the thresholds apply to identical values).

// rowBlock is the number of rows a goroutine handles at a time.
const rowBlock = 16

// parallelRows calls fn on consecutive row ranges [r0, r1) of rows, on
// nWorkers goroutines; worker is the goroutine's number, for its buffers.
func parallelRows(rows, nWorkers int, fn func(worker, r0, r1 int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < max(1, min(nWorkers, (rows+rowBlock-1)/rowBlock)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				r0 := int(next.Add(rowBlock)) - rowBlock
				if r0 >= rows {
					return
				}
				fn(w, r0, min(r0+rowBlock, rows))
			}
		}()
	}
	wg.Wait()
}

// deltaRows writes rows [r0, r1) of PEFT's get_delta_weight,
// f32(f32(B·A)·f32(s)), into dst; each entry of B·A is accumulated in
// float64 and rounded once. acc holds in float64s.
func deltaRows(dst []float32, f *factors, r0, r1 int, acc []float64) {
	r, in := f.mod.Rank, int(f.mod.In)
	s := float32(f.scale)
	for o := r0; o < r1; o++ {
		clear(acc)
		for k, bk := range f.b[o*r : (o+1)*r] {
			if bk == 0 {
				continue
			}
			b64 := float64(bk)
			for i, v := range f.a[k*in : (k+1)*in] {
				acc[i] += b64 * float64(v)
			}
		}
		row := dst[(o-r0)*in : (o-r0+1)*in]
		for i, v := range acc {
			row[i] = float32(v) * s
		}
	}
}

// denseModule is a *_svd pruning method on one module: prune each ΔWᵢ,
// combine them, and keep the rank largest singular triplets.
func (c *combiner) denseModule(ctx context.Context, path string, ms []member, in, out, rank int) (a, b []float32, kept float64, note string, err error) {
	nw := workers(c.o.Threads)
	d := make([]float32, out*in)
	accs := make([][]float64, nw)
	for i := range accs {
		accs[i] = make([]float64, in)
	}
	pruners := make([]pruner, len(ms))
	ws := make([]float32, len(ms))
	for i, m := range ms {
		ws[i] = float32(m.weight)
		switch c.method.prune() {
		case pruneMagnitude:
			parallelRows(out, nw, func(w, r0, r1 int) { deltaRows(d[r0*in:r1*in], m.f, r0, r1, accs[w]) })
			pruners[i] = pruner{kind: pruneMagnitude, rule: magnitudeRule(d, c.o.Density)}
		case pruneRandom:
			pruners[i] = newRandomPruner(c.o.Seed, path, DAREDeltaW, m.index, c.o.Density)
		}
	}
	bufs := make([][][]float32, nw)
	for w := range bufs {
		bufs[w] = make([][]float32, len(ms))
		for i := range bufs[w] {
			bufs[w][i] = make([]float32, rowBlock*in)
		}
	}
	kind := c.method.merge(c.o.MajoritySign)
	parallelRows(out, nw, func(w, r0, r1 int) {
		ts := bufs[w]
		for i, m := range ms {
			ts[i] = ts[i][:(r1-r0)*in]
			deltaRows(ts[i], m.f, r0, r1, accs[w])
			pruners[i].apply(ts[i], int64(r0*in))
		}
		mergeInto(d[r0*in:r1*in], ts, ws, kind)
	})
	var total float64
	for _, v := range d {
		total += float64(v) * float64(v)
	}
	u, s, v, note, err := topSVD(ctx, d, out, in, rank, nw)
	if err != nil {
		return nil, nil, 0, "", err
	}
	a, b = truncated(u, s, v, rank)
	var k2 float64
	for _, x := range s[:min(rank, len(s))] {
		k2 += x * x
	}
	kept = 1
	if total > 0 {
		kept = math.Min(1, math.Sqrt(k2/total))
	}
	return a, b, kept, note, nil
}

// exactLimit: matrices with min(m, n) up to this get the full Jacobi SVD.
const exactLimit = 64

// Subspace iteration parameters: the residual ‖D·vⱼ − σⱼ·uⱼ‖ of every kept
// triplet must fall below subspaceTol·σ₁.
const (
	subspaceTol   = 1e-9
	subspaceIters = 300
)

// topSVD returns at least min(k, m, n) leading singular triplets of the
// m×n row-major d (U m×p, S, V n×p), and a note when the iteration stopped
// before its tolerance.
func topSVD(ctx context.Context, d []float32, m, n, k, nWorkers int) (u *linalg.Dense, s []float64, v *linalg.Dense, note string, err error) {
	k = min(k, m, n)
	if min(m, n) <= exactLimit || k == 0 {
		d64 := linalg.NewDense(m, n, nil)
		for i, x := range d {
			d64.Data[i] = float64(x)
		}
		r := linalg.ComputeSVD(d64)
		return r.U, r.S, r.V, "", nil
	}
	return subspaceSVD(ctx, d, m, n, k, nWorkers)
}

// subspaceSVD computes the k leading singular triplets of d by block
// subspace iteration with Rayleigh–Ritz extraction (a block of k plus
// max(k, 10) vectors, a deterministic Gaussian start). Each iteration
// multiplies by D and by Dᵀ; the residual of the Ritz triplets is checked
// with the next product at no extra cost.
func subspaceSVD(ctx context.Context, d []float32, m, n, k, nWorkers int) (u *linalg.Dense, s []float64, v *linalg.Dense, note string, err error) {
	bs := min(m, n, k+max(k, 10))
	q := linalg.NewDense(n, bs, nil)
	rng := rand.New(rand.NewPCG(1, 2)) // a fixed start
	for i := range q.Data {
		q.Data[i] = rng.NormFloat64()
	}
	q = orthonormal(q)
	var ws *linalg.Dense // right Ritz rotation of the last iteration
	resid := math.Inf(1)
	for it := 0; it <= subspaceIters; it++ {
		if err := ctx.Err(); err != nil {
			return nil, nil, nil, "", err
		}
		y := mulD(d, m, n, q, nWorkers) // D·Q
		if ws != nil {
			resid = 0
			if s[0] == 0 {
				break // D = 0
			}
			dv := linalg.Mul(y, ws) // D·vⱼ for the Ritz vectors vⱼ = Q·wⱼ
			for j := 0; j < k; j++ {
				var r2 float64
				for i := 0; i < m; i++ {
					e := dv.Data[i*bs+j] - s[j]*u.Data[i*bs+j]
					r2 += e * e
				}
				resid = math.Max(resid, math.Sqrt(r2)/s[0])
			}
			if resid <= subspaceTol || it == subspaceIters {
				break
			}
		}
		qy := orthonormal(y)
		z := mulDT(d, m, n, qy, nWorkers) // Dᵀ·Qy = Qz·Rz
		qr := linalg.NewQR(z)
		q = qr.ApplyQ(identity(bs))
		// Qyᵀ·D = Rzᵀ·Qzᵀ; Rzᵀ = Us·Σ·Wsᵀ gives U = Qy·Us, V = Qz·Ws.
		core := linalg.ComputeSVD(qr.R().T())
		u, s, v, ws = linalg.Mul(qy, core.U), core.S, linalg.Mul(q, core.V), core.V
	}
	if resid > subspaceTol {
		note = fmt.Sprintf("SVD iteration stopped at relative residual %.2g after %d iterations (tolerance %.0g)", resid, subspaceIters, subspaceTol)
	}
	// The convention on the final vectors, and only the k wanted.
	u, v = firstColumns(u, k), firstColumns(v, k)
	linalg.FlipSigns(u, v)
	return u, slices.Clone(s[:k]), v, note, nil
}

func identity(n int) *linalg.Dense {
	e := linalg.NewDense(n, n, nil)
	for i := 0; i < n; i++ {
		e.Set(i, i, 1)
	}
	return e
}

// orthonormal returns an orthonormal basis (Householder Q) of x's columns.
func orthonormal(x *linalg.Dense) *linalg.Dense {
	return linalg.NewQR(x).ApplyQ(identity(min(x.Rows, x.Cols)))
}

func firstColumns(x *linalg.Dense, k int) *linalg.Dense {
	out := linalg.NewDense(x.Rows, k, nil)
	for i := 0; i < x.Rows; i++ {
		copy(out.Data[i*k:(i+1)*k], x.Data[i*x.Cols:i*x.Cols+k])
	}
	return out
}

// mulD returns D·Q for the m×n float32 D and an n×b Q.
func mulD(d []float32, m, n int, q *linalg.Dense, nWorkers int) *linalg.Dense {
	b := q.Cols
	y := linalg.NewDense(m, b, nil)
	parallelRows(m, nWorkers, func(_, r0, r1 int) {
		for i := r0; i < r1; i++ {
			yi := y.Data[i*b : (i+1)*b]
			for l, x := range d[i*n : (i+1)*n] {
				if x == 0 {
					continue
				}
				x64 := float64(x)
				ql := q.Data[l*b : (l+1)*b]
				for j := range yi {
					yi[j] += x64 * ql[j]
				}
			}
		}
	})
	return y
}

// mulDT returns Dᵀ·Y for the m×n float32 D and an m×b Y; goroutines own
// ranges of D's columns.
func mulDT(d []float32, m, n int, y *linalg.Dense, nWorkers int) *linalg.Dense {
	b := y.Cols
	z := linalg.NewDense(n, b, nil)
	parallelRows(n, nWorkers, func(_, c0, c1 int) {
		for i := 0; i < m; i++ {
			yi := y.Data[i*b : (i+1)*b]
			for l, x := range d[i*n+c0 : i*n+c1] {
				if x == 0 {
					continue
				}
				x64 := float64(x)
				zl := z.Data[(c0+l)*b : (c0+l+1)*b]
				for j := range zl {
					zl[j] += x64 * yi[j]
				}
			}
		}
	})
	return z
}

// clamp is PEFT's svd_clamp: hi = torch.quantile(cat(B'.flatten(),
// A'.flatten()), q) with linear interpolation in float32, then every entry
// of both is clamped to [−hi, hi] (min(max(x, −hi), hi), as torch.clamp).
func clamp(a, b []float32, q float64) {
	dist := make([]float32, 0, len(a)+len(b))
	dist = append(append(dist, b...), a...)
	slices.Sort(dist)
	pos := float32(q) * float32(len(dist)-1)
	lo := int(pos)
	hiIdx := int(math.Ceil(float64(pos)))
	w := pos - float32(lo)
	below, above := dist[lo], dist[min(hiIdx, len(dist)-1)]
	var hi float32
	if w < 0.5 {
		hi = below + w*(above-below)
	} else {
		hi = above - (above-below)*(1-w)
	}
	low := -hi
	for _, x := range [][]float32{a, b} {
		for i, v := range x {
			x[i] = min(max(v, low), hi)
		}
	}
}
