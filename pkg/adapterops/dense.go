package adapterops

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/lorakit/lorakit/internal/kernels/lowrank"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
	"github.com/lorakit/lorakit/pkg/linalg"
	"github.com/lorakit/lorakit/pkg/pipeline"
)

// The *_svd pruning methods are defined elementwise on the deltas, so they
// form each module's out×in matrix. One such matrix (float32) is alive at a
// time: it first holds each ΔWᵢ in turn to find its magnitude threshold, then
// the combined matrix, built row block by row block from ΔWᵢ recomputed in
// the same arithmetic (so the thresholds apply to identical values). Its
// leading singular triplets come from a block subspace iteration whose
// products with the matrix are the float32 GEMMs of package compute/cpu.

// rowBlock is the number of rows a goroutine handles at a time.
const rowBlock = 16

// parallelRows calls fn on consecutive row ranges [r0, r1) of rows, on
// nWorkers goroutines; worker is the goroutine's number, for its buffers.
func parallelRows(rows, nWorkers int, fn func(worker, r0, r1 int)) {
	parallelBlocks(rows, rowBlock, nWorkers, fn)
}

// parallelBlocks calls fn on the ranges [lo, hi) of block entries of n in
// turn, on nWorkers goroutines; worker is the goroutine's number.
func parallelBlocks(n, block, nWorkers int, fn func(worker, lo, hi int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < max(1, min(nWorkers, (n+block-1)/block)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lo := int(next.Add(int64(block))) - block
				if lo >= n {
					return
				}
				fn(w, lo, min(lo+block, n))
			}
		}()
	}
	wg.Wait()
}

// deltaRows writes rows [r0, r1) of PEFT's get_delta_weight,
// f32(f32(B·A)·f32(s)), into dst (which it overwrites): each entry of B·A
// is the chain of float32 fused multiply-adds of spec peft.md §7.6, the
// product lora-merge uses (the lowrank kernel). scratch is the kernel's,
// returned for the next call.
func deltaRows(dst []float32, f *factors, r0, r1 int, scratch []float32) []float32 {
	r, in := f.mod.Rank, int(f.mod.In)
	clear(dst[:(r1-r0)*in])
	return lowrank.Add(dst, r1-r0, in, f.b[r0*r:r1*r], f.a, r, float32(f.scale), scratch)
}

// denseModule is a *_svd pruning method on one module: prune each ΔWᵢ,
// combine them, and keep the rank largest singular triplets. The combined
// matrix is the only out×in one: ΔWᵢ is computed block by block of rows,
// in cache, each time it is needed (twice to find a magnitude threshold,
// once to combine); the matrix's buffer is kept for the next module.
func (c *combiner) denseModule(ctx context.Context, path string, ms []member, in, out, rank int) (a, b []float32, kept float64, note string, err error) {
	nw := workers(c.o.Threads)
	if cap(c.dense) < out*in {
		pipeline.FreeFloats(c.dense) // the old buffer goes before the new one comes
		c.dense = pipeline.Floats(out * in)
	}
	d := c.dense[:out*in] // every entry is written below
	scratch := make([][]float32, nw)
	bufs := make([][][]float32, nw)
	for w := range bufs {
		bufs[w] = make([][]float32, len(ms))
		for i := range bufs[w] {
			bufs[w][i] = make([]float32, rowBlock*in)
		}
	}
	pruners := make([]pruner, len(ms))
	ws := make([]float32, len(ms))
	for i, m := range ms {
		ws[i] = float32(m.weight)
		switch c.method.prune() {
		case pruneMagnitude:
			rows := func(w, lo, hi int) []float32 {
				r0, r1 := lo/in, hi/in
				buf := bufs[w][0][:(r1-r0)*in]
				scratch[w] = deltaRows(buf, m.f, r0, r1, scratch[w])
				return buf
			}
			whole := func() []float32 { // the radix fallback's
				parallelRows(out, nw, func(w, r0, r1 int) { scratch[w] = deltaRows(d[r0*in:r1*in], m.f, r0, r1, scratch[w]) })
				return d
			}
			pruners[i] = pruner{kind: pruneMagnitude, rule: selectRule(out*in, c.o.Density, rowBlock*in, nw, rows, whole)}
		case pruneRandom:
			pruners[i] = newRandomPruner(c.o.Seed, path, DAREDeltaW, m.index, c.o.Density)
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, 0, "", err
		}
	}
	kind := c.method.merge(c.o.MajoritySign)
	sums := make([]float64, (out+rowBlock-1)/rowBlock) // Σ d² per row block, summed in order below
	parallelRows(out, nw, func(w, r0, r1 int) {
		ts := bufs[w]
		for i, m := range ms {
			ts[i] = ts[i][:(r1-r0)*in]
			scratch[w] = deltaRows(ts[i], m.f, r0, r1, scratch[w])
			pruners[i].apply(ts[i], int64(r0*in))
		}
		block := d[r0*in : r1*in]
		mergeInto(block, ts, ws, kind)
		var s float64
		for _, v := range block {
			s += float64(v) * float64(v)
		}
		sums[r0/rowBlock] = s
	})
	var total float64
	for _, s := range sums {
		total += s
	}
	// The combined ΔW lies close to the row spaces of the inputs' A: they
	// start the iteration.
	var start [][]float32
	for _, m := range ms {
		for k := 0; k < m.f.mod.Rank; k++ {
			start = append(start, m.f.a[k*in:(k+1)*in])
		}
	}
	u, s, v, note, err := topSVD(ctx, d, out, in, rank, nw, start)
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

// Subspace iteration parameters. The products with D are float32 GEMMs
// (relative error around 1e-7), so the residual ‖D·vⱼ − σⱼ·uⱼ‖ of the kept
// triplets is driven below subspaceTol·σ₁ (a few float32 roundings of
// every entry of D·vⱼ), or below subspaceStall·σ₁ when three iterations
// in a row improve it by less than 10% (the float32 floor); the report
// notes a residual above subspaceStall, or above subspaceTol after
// subspaceIters iterations.
const (
	subspaceTol   = 2e-6
	subspaceStall = 1e-4
	subspaceIters = 100
)

// topSVD returns at least min(k, m, n) leading singular triplets of the
// m×n row-major d (U m×p, S, V n×p), and a note when the iteration stopped
// before its tolerance. start holds vectors of length n near the leading
// right singular subspace (may be empty).
func topSVD(ctx context.Context, d []float32, m, n, k, nWorkers int, start [][]float32) (u *linalg.Dense, s []float64, v *linalg.Dense, note string, err error) {
	k = min(k, m, n)
	if min(m, n) <= exactLimit || k == 0 {
		d64 := linalg.NewDense(m, n, nil)
		for i, x := range d {
			d64.Data[i] = float64(x)
		}
		r := linalg.ComputeSVD(d64)
		return r.U, r.S, r.V, "", nil
	}
	return subspaceSVD(ctx, d, m, n, k, nWorkers, start)
}

// subspaceSVD computes the k leading singular triplets of d by block
// subspace iteration with Rayleigh–Ritz extraction. The block has k plus
// max(k, 10) vectors, or as many as start gives, and starts from start and
// deterministic Gaussian vectors. Each iteration multiplies by D and by Dᵀ
// (float32 GEMMs on nWorkers threads; the results do not depend on
// nWorkers); the residual of the Ritz triplets is checked with the next
// product at no extra cost. Everything else is float64 on n×b and m×b
// matrices.
func subspaceSVD(ctx context.Context, d []float32, m, n, k, nWorkers int, start [][]float32) (u *linalg.Dense, s []float64, v *linalg.Dense, note string, err error) {
	bs := min(m, n, max(k+max(k, 10), len(start)))
	q := linalg.NewDense(n, bs, nil)
	rng := rand.New(rand.NewPCG(1, 2)) // a fixed start
	for j := 0; j < bs; j++ {
		for i := 0; i < n; i++ {
			if j < len(start) {
				q.Data[i*bs+j] = float64(start[j][i])
			} else {
				q.Data[i*bs+j] = rng.NormFloat64()
			}
		}
	}
	g := newGEMM(d, m, n, bs, nWorkers)
	q, _ = tallQR(q, g.be)
	var ws *linalg.Dense // right Ritz rotation of the last iteration: vⱼ = Q·wⱼ
	resid, best, stalled := math.Inf(1), math.Inf(1), 0
	it := 0
	for ; ; it++ {
		if err := ctx.Err(); err != nil {
			return nil, nil, nil, "", err
		}
		y := g.mulD(q) // D·Q
		if ws != nil {
			resid = 0
			if s[0] == 0 {
				break // D = 0
			}
			dv := tallMul(y, ws, g.be) // D·vⱼ
			for j := 0; j < k; j++ {
				var r2 float64
				for i := 0; i < m; i++ {
					e := dv.Data[i*bs+j] - s[j]*u.Data[i*bs+j]
					r2 += e * e
				}
				resid = math.Max(resid, math.Sqrt(r2)/s[0])
			}
			if resid < 0.9*best {
				best, stalled = resid, 0
			} else {
				stalled++
			}
			if resid <= subspaceTol || (stalled >= 3 && resid <= subspaceStall) || it >= subspaceIters {
				break
			}
		}
		qy, _ := tallQR(y, g.be)
		z := g.mulDT(qy) // Dᵀ·Qy = Qz·Rz
		var rz *linalg.Dense
		q, rz = tallQR(z, g.be)
		// Qyᵀ·D = Rzᵀ·Qzᵀ; Rzᵀ = Us·Σ·Wsᵀ gives U = Qy·Us, V = Qz·Ws.
		core := linalg.ComputeSVD(rz.T())
		u, s, ws = tallMul(qy, core.U, g.be), core.S, core.V
	}
	v = tallMul(q, ws, g.be)
	if resid > subspaceStall || (resid > subspaceTol && it >= subspaceIters) {
		note = fmt.Sprintf("SVD iteration stopped at relative residual %.2g after %d iterations (tolerance %.0g)", resid, it, subspaceTol)
	}
	// The convention on the final vectors, and only the k wanted.
	u, v = firstColumns(u, k), firstColumns(v, k)
	linalg.FlipSigns(u, v)
	return u, slices.Clone(s[:k]), v, note, nil
}

// gemm multiplies the m×n float32 D by blocks of b vectors with the CPU
// backend's GEMM, reusing its float32 buffers.
type gemm struct {
	be      *cpu.Backend
	d       compute.Buffer
	m, n, b int
	in, out []float32
}

func newGEMM(d []float32, m, n, b, nWorkers int) *gemm {
	return &gemm{be: cpu.New(nWorkers), d: cpu.NewBuffer(d), m: m, n: n, b: b,
		in: make([]float32, max(m, n)*b), out: make([]float32, max(m, n)*b)}
}

// mulD returns D·Q for an n×b Q.
func (g *gemm) mulD(q *linalg.Dense) *linalg.Dense {
	return g.mul(q, g.n, g.m, false)
}

// mulDT returns Dᵀ·Y for an m×b Y.
func (g *gemm) mulDT(y *linalg.Dense) *linalg.Dense {
	return g.mul(y, g.m, g.n, true)
}

// mul computes op(D)·x for x k×b (op(D) rows×k) in float32.
func (g *gemm) mul(x *linalg.Dense, k, rows int, trans bool) *linalg.Dense {
	in, out := g.in[:k*g.b], g.out[:rows*g.b]
	for i, v := range x.Data {
		in[i] = float32(v)
	}
	g.be.Gemm(compute.Gemm{TransA: trans, M: rows, N: g.b, K: k, Alpha: 1}, g.d, cpu.NewBuffer(in), cpu.NewBuffer(out))
	r := linalg.NewDense(rows, g.b, nil)
	for i, v := range out {
		r.Data[i] = float64(v)
	}
	return r
}

func identity(n int) *linalg.Dense {
	e := linalg.NewDense(n, n, nil)
	for i := 0; i < n; i++ {
		e.Set(i, i, 1)
	}
	return e
}

func firstColumns(x *linalg.Dense, k int) *linalg.Dense {
	out := linalg.NewDense(x.Rows, k, nil)
	for i := 0; i < x.Rows; i++ {
		copy(out.Data[i*k:(i+1)*k], x.Data[i*x.Cols:i*x.Cols+k])
	}
	return out
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
