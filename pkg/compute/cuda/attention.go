package cuda

import (
	"fmt"

	"github.com/lorakit/lorakit/pkg/compute"
)

// Attention has two paths:
//
//   - f32 (q, k, v, out all F32): the kernels of attention.cu, one block per
//     query (forward, dq) or key (dk, dv), an online softmax, O(Seq) memory
//     per head; the reference's arithmetic.
//   - bf16 (q, k, v, out and the gradients all BF16): the tensor cores
//     through cuBLAS. Queries are taken a chunk of C at a time; for each
//     chunk and each query head of a key/value group, one strided-batched
//     GEMM over the G key/value heads computes the scaled scores S = s·QKᵀ
//     (f32) against the keys the chunk can see, lk_attn_chunk_p their
//     softmax (f32, log-sum-exp kept) as P in bf16, and a second GEMM
//     O = P·V. The backward pass recomputes S and P chunk by chunk:
//     dV += Pᵀ·dO, dP = dO·Vᵀ, dS = P⊙(dP − δ) (lk_attn_chunk_ds), dQ =
//     s·dS·K, dK += s·dSᵀ·Q, dK and dV accumulated in f32. Scratch memory
//     is G·C·Keys·10 bytes: O(chunk × sequence), never O(sequence²).
//
// With a prefix (compute.Attention.Prefix) the key/value rows of sequence b
// start at b·Keys and query i is at key position Prefix+i; the kernels take
// the prefix as their last argument (before the forward flag of
// lk_attn_chunk_p).
//
// Other combinations of dtypes run the f32 path on widened copies.

func checkAttention(a compute.Attention) {
	if a.Batch < 0 || a.Seq < 0 || a.Heads <= 0 || a.KVHeads <= 0 || a.HeadDim <= 0 || a.Heads%a.KVHeads != 0 ||
		a.Window < 0 || !(a.SoftCap >= 0) || a.Prefix < 0 {
		panic(fmt.Sprintf("cuda: invalid attention shape %+v", a))
	}
	if a.Prefix > 0 && a.Segments != nil {
		panic("cuda: attention with both a prefix and segments")
	}
	if a.HeadDim > attnThreads*attnMaxR {
		panic(fmt.Sprintf("cuda: attention head dimension %d > %d", a.HeadDim, attnThreads*attnMaxR))
	}
	if a.Heads > maxGridYZ || a.Batch > maxGridYZ {
		panic(fmt.Sprintf("cuda: attention shape %+v exceeds the grid", a))
	}
}

func attnArgs(a compute.Attention) []arg {
	return []arg{i32Arg(a.Batch), i32Arg(a.Seq), i32Arg(a.Heads), i32Arg(a.KVHeads), i32Arg(a.HeadDim)}
}

// attnTail returns the trailing scale, window, soft-cap and prefix arguments.
func attnTail(a compute.Attention) []arg {
	return []arg{f32Arg(a.Scale), i32Arg(a.Window), f32Arg(a.SoftCap), i32Arg(a.Prefix)}
}

// allOf reports whether every buffer has dtype dt.
func allOf(dt compute.DType, bs ...*buffer) bool {
	for _, b := range bs {
		if b.dt != dt {
			return false
		}
	}
	return true
}

// Attention implements compute.Backend.
func (be *Backend) Attention(a compute.Attention, out, lse, q, k, v compute.Buffer) {
	checkAttention(a)
	B, T, H, G, D := a.Batch, a.Seq, a.Heads, a.KVHeads, a.HeadDim
	qb, ob := be.floatN(q, "attention q", B*T*H*D), be.floatN(out, "attention out", B*T*H*D)
	kb, vb := be.floatN(k, "attention k", B*a.Keys()*G*D), be.floatN(v, "attention v", B*a.Keys()*G*D)
	lb := be.floatN(lse, "attention lse", B*H*T)
	switch {
	case lb.dt == compute.F32 && allOf(compute.BF16, qb, kb, vb, ob):
		be.attentionTC(a, ob, lb, qb, kb, vb)
		return
	case !allOf(compute.F32, qb, kb, vb, ob, lb):
		w := be.mixed(out, lse, q, k, v)
		be.Attention(a, w.out(out), w.out(lse), w.in(q), w.in(k), w.in(v))
		w.done()
		return
	}
	start, end, ok := be.segBounds(a)
	if !ok {
		return
	}
	defer be.releaseAll(start, end)
	args := append([]arg{p(ob), p(lb), p(qb), p(kb), p(vb), ptrArg(start.addr())}, attnArgs(a)...)
	be.run("lk_attn_fwd", [3]uint32{uint32(T), uint32(H), uint32(B)}, [3]uint32{attnThreads, 1, 1},
		attnShared("fwd", D), append(args, attnTail(a)...)...)
}

// segBounds computes, for packed sequences, the first and one-past-last
// token of every token's document (nil buffers without Segments). ok is
// false when there is nothing to do (no tokens, a sticky error).
func (be *Backend) segBounds(a compute.Attention) (start, end *buffer, ok bool) {
	if a.Batch*a.Seq == 0 || !be.ok() {
		return nil, nil, false
	}
	if a.Segments == nil {
		return nil, nil, true
	}
	seg := be.typed(a.Segments, compute.I32, "attention segments")
	need("attention segments", seg.n, a.Batch*a.Seq)
	if start, ok = be.scratch(compute.I32, seg.n); !ok {
		return nil, nil, false
	}
	if end, ok = be.scratch(compute.I32, seg.n); !ok {
		be.release(start)
		return nil, nil, false
	}
	be.elementwise("lk_seg_bounds", a.Batch, p(start), p(end), p(seg), i32Arg(a.Batch), i32Arg(a.Seq), p(be.flags))
	return start, end, true
}

// AttentionBackward implements compute.Backend. The f32 path: δ =
// rowsum(dout⊙out), then one kernel for dq (a block per query) and one for
// dk, dv (a block per key).
func (be *Backend) AttentionBackward(a compute.Attention, dq, dk, dv, dout, q, k, v, out, lse compute.Buffer) {
	checkAttention(a)
	B, T, H, G, D := a.Batch, a.Seq, a.Heads, a.KVHeads, a.HeadDim
	nq, nk := B*T*H*D, B*a.Keys()*G*D
	dqb, dob, qb, ob := be.floatN(dq, "attention dq", nq), be.floatN(dout, "attention dout", nq),
		be.floatN(q, "attention q", nq), be.floatN(out, "attention out", nq)
	dkb, dvb, kb, vb := be.floatN(dk, "attention dk", nk), be.floatN(dv, "attention dv", nk),
		be.floatN(k, "attention k", nk), be.floatN(v, "attention v", nk)
	lb := be.floatN(lse, "attention lse", B*H*T)
	if T == 0 { // no query sees the prefix
		be.Zero(dk)
		be.Zero(dv)
		return
	}
	switch {
	case lb.dt == compute.F32 && allOf(compute.BF16, dqb, dkb, dvb, dob, qb, kb, vb, ob):
		be.attentionBackwardTC(a, dqb, dkb, dvb, dob, qb, kb, vb, ob, lb)
		return
	case !allOf(compute.F32, dqb, dkb, dvb, dob, qb, kb, vb, ob, lb):
		w := be.mixed(dq, dk, dv, dout, q, k, v, out, lse)
		be.AttentionBackward(a, w.out(dq), w.out(dk), w.out(dv), w.in(dout), w.in(q), w.in(k), w.in(v), w.in(out), w.in(lse))
		w.done()
		return
	}
	start, end, ok := be.segBounds(a)
	if !ok {
		return
	}
	defer be.releaseAll(start, end)
	delta, ok := be.attnDelta(a, dob, ob)
	if !ok {
		return
	}
	tail := append(attnArgs(a), attnTail(a)...)
	be.run("lk_attn_bwd_dq", [3]uint32{uint32(T), uint32(H), uint32(B)}, [3]uint32{attnThreads, 1, 1},
		attnShared("dq", D), append([]arg{p(dqb), p(dob), p(qb), p(kb), p(vb), p(lb), p(delta), ptrArg(start.addr())},
			tail...)...)
	be.run("lk_attn_bwd_dkv", [3]uint32{uint32(a.Keys()), uint32(G), uint32(B)}, [3]uint32{attnThreads, 1, 1},
		attnShared("dkv", D), append([]arg{p(dkb), p(dvb), p(dob), p(qb), p(kb), p(vb), p(lb), p(delta),
			ptrArg(end.addr())}, tail...)...)
	be.release(delta)
}

// attnDelta returns δ[b, h, i] = dout_i·out_i in an f32 scratch buffer.
func (be *Backend) attnDelta(a compute.Attention, dout, out *buffer) (*buffer, bool) {
	B, T, H, D := a.Batch, a.Seq, a.Heads, a.HeadDim
	delta, ok := be.scratch(compute.F32, B*H*T)
	if ok {
		be.elementwise("lk_attn_bwd_delta", B*T*H, p(delta), p(dout), p(out), i32Arg(B), i32Arg(T), i32Arg(H),
			i32Arg(D), dts(nil, dout, out))
	}
	return delta, ok
}

// attnScratchBudget bounds the bytes of one chunk's scores (S, dP and P)
// when Options.AttentionChunk does not set the chunk.
const attnScratchBudget = 1 << 30

// attnChunk returns the queries of one chunk of the tensor-core path: all
// of them up to 1024, else 512, fewer when G·C·Keys·10 bytes would exceed
// attnScratchBudget (at least 16).
func (be *Backend) attnChunk(a compute.Attention) int {
	if c := be.opt.AttentionChunk; c > 0 {
		return min(c, a.Seq)
	}
	over := func(c int) bool { return int64(a.KVHeads)*int64(c)*int64(a.Keys())*10 > attnScratchBudget }
	if a.Seq <= 1024 && (a.Prefix == 0 || !over(a.Seq)) {
		return max(a.Seq, 1)
	}
	c := min(512, a.Seq)
	for c > 16 && over(c) {
		c /= 2
	}
	return c
}

// chunk is the geometry of one chunk of queries of sequence b: queries
// i0..i0+rows−1 against key positions k0..k0+keys−1 (those of the chunk's
// last query, from the first its window lets any of them see).
type chunk struct {
	b, i0, rows, k0, keys int
}

func chunks(a compute.Attention, c int) []chunk {
	var cs []chunk
	for b := range a.Batch {
		for i0 := 0; i0 < a.Seq; i0 += c {
			n := min(c, a.Seq-i0)
			k0 := 0
			if a.Window > 0 {
				k0 = max(0, a.Prefix+i0-a.Window+1)
			}
			cs = append(cs, chunk{b: b, i0: i0, rows: n, k0: k0, keys: a.Prefix + i0 + n - k0})
		}
	}
	return cs
}

// attnOperands returns the bf16 row-major operands of the chunk's GEMMs for
// query head g·group + jm, batched over the key/value heads g: the query
// rows (and out, dout, dq rows) and the key rows (and value rows).
func attnOperands(a compute.Attention, ch chunk, jm int, q, k *buffer) (qo, ko operand) {
	T, H, G, D := a.Seq, a.Heads, a.KVHeads, a.HeadDim
	group := H / G
	qoff := ((ch.b*T+ch.i0)*H + jm) * D
	koff := (ch.b*a.Keys() + ch.k0) * G * D
	return operand{ptr: q.ptr() + uintptr(elemSize(q.dt)*qoff), dt: q.dt, ld: H * D, stride: int64(group * D)},
		operand{ptr: k.ptr() + uintptr(elemSize(k.dt)*koff), dt: k.dt, ld: G * D, stride: int64(D)}
}

// at returns the operand of the same geometry in buffer x.
func (o operand) at(base, x *buffer) operand {
	off := o.ptr - base.ptr()
	o.ptr = x.ptr() + off/uintptr(elemSize(base.dt))*uintptr(elemSize(x.dt))
	o.dt = x.dt
	return o
}

// chunkArgs returns the trailing arguments of lk_attn_chunk_p and _ds.
func chunkArgs(a compute.Attention, ch chunk, jm int, start *buffer) []arg {
	return []arg{ptrArg(start.addr()), i32Arg(ch.b), i32Arg(a.Seq), i32Arg(a.Heads), i32Arg(a.Heads / a.KVHeads),
		i32Arg(jm), i32Arg(ch.i0), i32Arg(ch.rows), i32Arg(ch.k0), i32Arg(ch.keys), i32Arg(a.Window), f32Arg(a.SoftCap),
		i32Arg(a.Prefix)}
}

// attnScratch allocates the chunk buffers: n f32 S, n bf16 P, and with
// backward n f32 dP.
func (be *Backend) attnScratch(n int, backward bool) (s, pb, dp *buffer, ok bool) {
	if s, ok = be.scratch(compute.F32, n); !ok {
		return nil, nil, nil, false
	}
	if pb, ok = be.scratch(compute.BF16, n); !ok {
		be.release(s)
		return nil, nil, nil, false
	}
	if backward {
		if dp, ok = be.scratch(compute.F32, n); !ok {
			be.releaseAll(s, pb)
			return nil, nil, nil, false
		}
	}
	return s, pb, dp, true
}

// scores queues S = scale·Q·Kᵀ for one chunk and query head g·group + jm.
func (be *Backend) scores(a compute.Attention, ch chunk, qo, ko operand, s *buffer) {
	be.gemmBatched(compute.Gemm{M: ch.rows, N: ch.keys, K: a.HeadDim, TransB: true, Alpha: a.Scale}, qo, ko,
		operand{ptr: s.ptr(), dt: compute.F32, ld: ch.keys, stride: int64(ch.rows * ch.keys)}, a.KVHeads)
}

// attentionTC is the forward tensor-core path.
func (be *Backend) attentionTC(a compute.Attention, out, lse, q, k, v *buffer) {
	C := be.attnChunk(a)
	start, end, ok := be.segBounds(a)
	if !ok {
		return
	}
	defer be.releaseAll(start, end)
	s, pb, _, ok := be.attnScratch(a.KVHeads*C*a.Keys(), false)
	if !ok {
		return
	}
	defer be.releaseAll(s, pb)
	grid := func(ch chunk) [3]uint32 { return [3]uint32{uint32(ch.rows), uint32(a.KVHeads), 1} }
	for _, ch := range chunks(a, C) {
		pm := operand{ptr: pb.ptr(), dt: compute.BF16, ld: ch.keys, stride: int64(ch.rows * ch.keys)}
		for jm := range a.Heads / a.KVHeads {
			qo, ko := attnOperands(a, ch, jm, q, k)
			be.scores(a, ch, qo, ko, s)
			be.run("lk_attn_chunk_p", grid(ch), [3]uint32{redThreads, 1, 1}, 0,
				append([]arg{p(pb), p(lse), p(s)}, append(chunkArgs(a, ch, jm, start), i32Arg(1))...)...)
			be.gemmBatched(compute.Gemm{M: ch.rows, N: a.HeadDim, K: ch.keys, Alpha: 1}, pm, ko.at(k, v), qo.at(q, out),
				a.KVHeads)
		}
	}
}

// attentionBackwardTC is the backward tensor-core path.
func (be *Backend) attentionBackwardTC(a compute.Attention, dq, dk, dv, dout, q, k, v, out, lse *buffer) {
	C := be.attnChunk(a)
	start, end, ok := be.segBounds(a)
	if !ok {
		return
	}
	defer be.releaseAll(start, end)
	delta, ok := be.attnDelta(a, dout, out)
	if !ok {
		return
	}
	defer be.release(delta)
	s, pb, dp, ok := be.attnScratch(a.KVHeads*C*a.Keys(), true)
	if !ok {
		return
	}
	defer be.releaseAll(s, pb, dp)
	dkAcc, ok := be.scratch(compute.F32, dk.n)
	if !ok {
		return
	}
	defer be.release(dkAcc)
	dvAcc, ok := be.scratch(compute.F32, dv.n)
	if !ok {
		return
	}
	defer be.release(dvAcc)
	be.Zero(dkAcc)
	be.Zero(dvAcc)
	grid := func(ch chunk) [3]uint32 { return [3]uint32{uint32(ch.rows), uint32(a.KVHeads), 1} }
	D, G := a.HeadDim, a.KVHeads
	for _, ch := range chunks(a, C) {
		pm := operand{ptr: pb.ptr(), dt: compute.BF16, ld: ch.keys, stride: int64(ch.rows * ch.keys)}
		dpm := operand{ptr: dp.ptr(), dt: compute.F32, ld: ch.keys, stride: int64(ch.rows * ch.keys)}
		for jm := range a.Heads / a.KVHeads {
			qo, ko := attnOperands(a, ch, jm, q, k)
			vo, do := ko.at(k, v), qo.at(q, dout)
			be.scores(a, ch, qo, ko, s)
			be.run("lk_attn_chunk_p", grid(ch), [3]uint32{redThreads, 1, 1}, 0,
				append([]arg{p(pb), p(lse), p(s)}, append(chunkArgs(a, ch, jm, start), i32Arg(0))...)...)
			// dV += Pᵀ·dO
			be.gemmBatched(compute.Gemm{TransA: true, M: ch.keys, N: D, K: ch.rows, Alpha: 1, Beta: 1}, pm, do,
				ko.at(k, dvAcc), G)
			// dP = dO·Vᵀ
			be.gemmBatched(compute.Gemm{M: ch.rows, N: ch.keys, K: D, TransB: true, Alpha: 1}, do, vo, dpm, G)
			be.run("lk_attn_chunk_ds", grid(ch), [3]uint32{redThreads, 1, 1}, 0,
				append([]arg{p(pb), p(s), p(dp), p(lse), p(delta)}, chunkArgs(a, ch, jm, start)...)...)
			// dQ = scale·dS·K; dK += scale·dSᵀ·Q
			be.gemmBatched(compute.Gemm{M: ch.rows, N: D, K: ch.keys, Alpha: a.Scale}, pm, ko, qo.at(q, dq), G)
			be.gemmBatched(compute.Gemm{TransA: true, M: ch.keys, N: D, K: ch.rows, Alpha: a.Scale, Beta: 1}, pm, qo,
				ko.at(k, dkAcc), G)
		}
	}
	be.Convert(dk, dkAcc)
	be.Convert(dv, dvAcc)
}
