package computetest

import (
	"math"

	"github.com/lorakit/lorakit/pkg/compute"
)

// Attention with a prefix key/value segment (compute.Attention.Prefix,
// prefix tuning's past keys and values).
var prefixCases = []Case{
	{"attention_prefix", tolSum, func(e *Env) { testAttentionPrefix(e, compute.F32, false) }},
	{"attention_prefix_backward", tolGrad, func(e *Env) { testAttentionPrefix(e, compute.F32, true) }},
	{"attention_prefix_bf16", tolBF16Grad, func(e *Env) { testAttentionPrefix(e, compute.BF16, true) }},
	{"attention_prefix_long", tolGrad, testAttentionPrefixLong},
	{"attention_prefix_long_bf16", tolBF16Grad, testAttentionPrefixLongBF16},
	{"attention_prefix_equivalence", tolSum, func(e *Env) { testAttentionPrefixEquivalence(e, compute.F32) }},
	{"attention_prefix_equivalence_bf16", tolBF16, func(e *Env) { testAttentionPrefixEquivalence(e, compute.BF16) }},
}

func init() { Cases = append(Cases, prefixCases...) }

// prefixShapes are the prefix shapes of the suite: grouped and plain
// multi-head attention, one prefix key and more prefix keys than queries,
// several sequences, with the masks that interact with a prefix: a window
// that leaves only part of the prefix to the first queries and none to the
// last, a window that reaches into a long prefix, and a score cap.
func prefixShapes() []compute.Attention {
	s := float32(1 / math.Sqrt(8))
	return []compute.Attention{
		{Batch: 2, Seq: 7, Heads: 4, KVHeads: 2, HeadDim: 8, Scale: s, Prefix: 3},
		{Batch: 2, Seq: 7, Heads: 4, KVHeads: 2, HeadDim: 8, Scale: s, Prefix: 3, Window: 2},
		{Batch: 3, Seq: 5, Heads: 2, KVHeads: 2, HeadDim: 8, Scale: s, Prefix: 1, SoftCap: 1.5},
		{Batch: 2, Seq: 4, Heads: 3, KVHeads: 1, HeadDim: 4, Scale: 0.5, Prefix: 9},
		{Batch: 2, Seq: 4, Heads: 3, KVHeads: 1, HeadDim: 4, Scale: 0.5, Prefix: 9, Window: 7, SoftCap: 2},
	}
}

func testAttentionPrefix(e *Env, dt compute.DType, backward bool) {
	for _, p := range prefixShapes() {
		checkAttention(e, p, dt, nil, backward)
	}
	if backward {
		checkAttentionPrefixEmpty(e, dt)
	}
}

// testAttentionPrefixLongBF16 has sequences long enough for a backend that
// works in chunks of queries to use several, each seeing the prefix.
func testAttentionPrefixLongBF16(e *Env) {
	p := compute.Attention{Batch: 2, Seq: 40, Heads: 4, KVHeads: 2, HeadDim: 16, Scale: 0.25, Prefix: 12}
	checkAttention(e, p, compute.BF16, nil, true)
	p.Window, p.SoftCap = 15, 3
	checkAttention(e, p, compute.BF16, nil, true)
}

// testAttentionPrefixLong has a prefix longer than a GPU block's tile of
// 128 keys, cut by the window for the later queries (f32, against the
// analytic gradients).
func testAttentionPrefixLong(e *Env) {
	p := compute.Attention{Batch: 1, Seq: 20, Heads: 4, KVHeads: 1, HeadDim: 16, Scale: 0.25, Prefix: 120, Window: 130,
		SoftCap: 3}
	checkAttention(e, p, compute.F32, nil, true)
}

// checkAttentionPrefixEmpty: without queries, nothing sees the prefix, and
// its gradients are zero (they are overwritten, not left alone).
func checkAttentionPrefixEmpty(e *Env, dt compute.DType) {
	p := compute.Attention{Batch: 2, Seq: 0, Heads: 2, KVHeads: 1, HeadDim: 4, Scale: 0.5, Prefix: 3}
	n := p.Batch * p.Keys() * p.KVHeads * p.HeadDim
	k, v := e.Up(e.Rand(n, 1), dt), e.Up(e.Rand(n, 1), dt)
	dk, dv := e.Up(e.Rand(n, 1), dt), e.Up(e.Rand(n, 1), dt)
	q, out, lse := e.Alloc(dt, 0), e.Alloc(dt, 0), e.Alloc(compute.F32, 0)
	e.BE.Attention(p, out, lse, q, k, v)
	e.BE.AttentionBackward(p, e.Alloc(dt, 0), dk, dv, e.Alloc(dt, 0), q, k, v, out, lse)
	e.CheckTol("empty dk", e.Get(dk), make([]float64, n), tolExact)
	e.CheckTol("empty dv", e.Get(dv), make([]float64, n), tolExact)
}

// testAttentionPrefixEquivalence checks the identity the model relies on:
// attention with a prefix over the keys [prefix; x] is attention without a
// prefix over a sequence of Prefix+Seq tokens whose first Prefix keys and
// values are the prefix, restricted to the last Seq queries; with a zero
// output gradient on the first Prefix queries, the key and value gradients
// are the same too.
func testAttentionPrefixEquivalence(e *Env, dt compute.DType) {
	for _, p := range prefixShapes() {
		B, T, H, G, D, P, N := p.Batch, p.Seq, p.Heads, p.KVHeads, p.HeadDim, p.Prefix, p.Keys()
		full := p
		full.Prefix, full.Seq = 0, N
		q, k, v, dout := e.Rand(B*T*H*D, 2), e.Rand(B*N*G*D, 2), e.Rand(B*N*G*D, 1), e.Rand(B*T*H*D, 1)
		// The full sequence's queries and output gradients: the first P
		// rows of each sequence are other queries and zero gradients.
		qFull, doutFull := e.Rand(B*N*H*D, 2), make([]float64, B*N*H*D)
		for b := range B {
			copy(qFull[(b*N+P)*H*D:(b+1)*N*H*D], q[b*T*H*D:(b+1)*T*H*D])
			copy(doutFull[(b*N+P)*H*D:(b+1)*N*H*D], dout[b*T*H*D:(b+1)*T*H*D])
		}
		kb, vb := e.Up(k, dt), e.Up(v, dt)
		run := func(p compute.Attention, q, dout []float64) (out, lse, dq, dk, dv []float64) {
			nq := p.Batch * p.Seq * H * D
			qb, ob, lb := e.Up(q, dt), e.Alloc(dt, nq), e.Alloc(compute.F32, p.Batch*H*p.Seq)
			e.BE.Attention(p, ob, lb, qb, kb, vb)
			dqb, dkb, dvb := e.Alloc(dt, nq), e.Alloc(dt, len(k)), e.Alloc(dt, len(v))
			e.BE.AttentionBackward(p, dqb, dkb, dvb, e.Up(dout, dt), qb, kb, vb, ob, lb)
			return e.Get(ob), e.Get(lb), e.Get(dqb), e.Get(dkb), e.Get(dvb)
		}
		out, lse, dq, dk, dv := run(p, q, dout)
		fo, fl, fdq, fdk, fdv := run(full, qFull, doutFull)
		// The last T query rows of each sequence, and their lse.
		last := func(x []float64, row int) []float64 {
			var r []float64
			for b := range B {
				r = append(r, x[(b*N+P)*row:(b+1)*N*row]...)
			}
			return r
		}
		lastLSE := make([]float64, 0, B*H*T)
		for bh := range B * H {
			lastLSE = append(lastLSE, fl[bh*N+P:(bh+1)*N]...)
		}
		e.Check("out", out, last(fo, H*D))
		e.CheckTol("lse", lse, lastLSE, max(tolSum, e.Tol/10))
		e.Check("dq", dq, last(fdq, H*D))
		e.Check("dk", dk, fdk)
		e.Check("dv", dv, fdv)
	}
}
