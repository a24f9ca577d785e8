package computetest

import (
	"math"

	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
)

// U8 uploads x as a U8 buffer.
func (e *Env) U8(x []byte) compute.Buffer {
	b := e.Alloc(compute.U8, len(x))
	e.BE.UploadBytes(b, x)
	return b
}

// Quant4 uploads a bitsandbytes 4-bit state and its packed codes (as
// nf4.ParseModule or nf4.QuantizeTensor return them) and describes them as
// a compute.Quant4. Each buffer is a view at an offset into a larger one, to
// check that views work.
func (e *Env) Quant4(qs *nf4.QuantState, packed []byte) compute.Quant4 {
	u8 := func(x []byte) compute.Buffer {
		b := e.U8(append([]byte{0xa5, 0x5a}, x...))
		return e.BE.View(b, 2, len(x))
	}
	f32 := func(x []float32) compute.Buffer {
		v := make([]float64, len(x)+1)
		for i, f := range x {
			v[i+1] = float64(f)
		}
		return e.BE.View(e.F32(v), 1, len(x))
	}
	q := compute.Quant4{N: int(qs.NumElements()), Blocksize: qs.Blocksize, Packed: u8(packed),
		Code: f32(qs.Map[:]), RoundF16: qs.DType == dtype.F16}
	if nd := qs.Nested; nd != nil {
		q.Absmax = u8(nd.Codes)
		q.NestedAbsmax, q.NestedCode = f32(nd.Absmax), f32(nd.Map[:])
		q.NestedBlocksize, q.Offset = nd.Blocksize, nd.Offset
	} else {
		q.Absmax = f32(qs.Absmax)
	}
	return q
}

type dqCase struct {
	n, bs        int
	dq, fp4, f16 bool
	out          compute.DType
}

// testDequant4 quantizes random weights with pkg/nf4 and requires the
// backend's decoding to be bit-identical to nf4's, cast as
// bitsandbytes casts to the weight's dtype.
func testDequant4(e *Env, c dqCase) {
	x := e.Rand(c.n, 1)
	// Blocks of very different scales, an all-zero block and outliers.
	for i := range x {
		x[i] *= math.Pow(10, float64((i/c.bs)%7-4))
		if i/c.bs == 2 {
			x[i] = 0
		}
	}
	x[c.n/2] = 40
	opts := nf4.DefaultOptions()
	opts.Blocksize, opts.DoubleQuant = c.bs, c.dq
	if c.fp4 {
		opts.Type = nf4.FP4
	}
	if c.f16 {
		opts.DType = dtype.F16
	}
	q, err := nf4.QuantizeTensor(toF32(x), []int64{int64(c.n)}, opts)
	if err != nil {
		e.T.Fatalf("quantize: %v", err)
	}
	f := make([]float32, c.n)
	if err := q.State.Dequantize(f, q.Packed); err != nil {
		e.T.Fatalf("nf4 dequantize: %v", err)
	}
	want := make([]float64, c.n)
	for i, v := range f {
		switch {
		case c.f16:
			v = dtype.F16ToF32(dtype.F32ToF16(v))
		case c.out == compute.BF16:
			v = dtype.BF16ToF32(dtype.F32ToBF16(v))
		}
		want[i] = float64(v)
	}
	out := c.out
	if out == 0 {
		out = compute.F32
	}
	dst := e.Alloc(out, c.n+5)
	e.BE.Dequantize4(e.BE.View(dst, 5, c.n), e.Quant4(&q.State, q.Packed))
	got := e.Get(dst)
	e.Check("values", got[5:], want)
	e.Check("untouched prefix", got[:5], make([]float64, 5))
}

func testConvert(e *Env) {
	x := append(e.Rand(300, 50), 1+1.0/256, 1+3.0/256, -(1 + 1.0/256), 3.3895313892515355e38, math.Inf(-1), 0)
	want := make([]float64, len(x))
	for i, v := range x {
		want[i] = roundBF16(v)
	}
	src := e.F32(x)
	h := e.Alloc(compute.BF16, len(x))
	e.BE.Convert(h, src)
	e.Check("f32 to bf16", e.Get(h), want)
	back := e.Alloc(compute.F32, len(x))
	e.BE.Convert(back, h)
	e.Check("bf16 to f32", e.Get(back), want)
	same := e.Alloc(compute.F32, len(x))
	e.BE.Convert(same, src)
	e.Check("f32 to f32", e.Get(same), x)
	n := e.F32([]float64{math.NaN()})
	nh := e.Alloc(compute.BF16, 1)
	e.BE.Convert(nh, n)
	if g := e.Get(nh); !math.IsNaN(g[0]) {
		e.T.Errorf("NaN converted to BF16 reads back as %v", g[0])
	}
}

// packedShape is a batch of two sequences of 12 tokens: the first packs
// documents of 5, 4 and 3 tokens, the second one document and a second one
// starting at token 7.
func packedShape() (compute.Attention, []int32) {
	p := compute.Attention{Batch: 2, Seq: 12, Heads: 4, KVHeads: 2, HeadDim: 8, Scale: float32(1 / math.Sqrt(8))}
	seg := []int32{0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 7, 7, 7, 7, 7}
	return p, seg
}

func testAttentionPacked(e *Env) {
	p, seg := packedShape()
	B, T, H, G, D := p.Batch, p.Seq, p.Heads, p.KVHeads, p.HeadDim
	q, k, v := e.Rand(B*T*H*D, 2), e.Rand(B*T*G*D, 2), e.Rand(B*T*G*D, 1)
	p.Segments = e.I32(seg)
	out, lse := e.Alloc(compute.F32, B*T*H*D), e.Alloc(compute.F32, B*H*T)
	e.BE.Attention(p, out, lse, e.F32(q), e.F32(k), e.F32(v))
	wo, wl := refAttentionSeg(p, q, k, v, seg)
	e.Check("out", e.Get(out), wo)
	e.Check("lse", e.Get(lse), wl)
	// One segment per sequence is plain causal attention.
	p.Segments = e.I32(make([]int32, B*T))
	e.BE.Attention(p, out, lse, e.F32(q), e.F32(k), e.F32(v))
	wo, wl = refAttention(p, q, k, v)
	e.Check("single segment out", e.Get(out), wo)
	e.Check("single segment lse", e.Get(lse), wl)
}

// testAttentionPackedRows checks that each document of a packed sequence
// gets what the backend computes for it alone.
func testAttentionPackedRows(e *Env) {
	p, seg := packedShape()
	B, T, H, G, D := p.Batch, p.Seq, p.Heads, p.KVHeads, p.HeadDim
	q, k, v := e.Rand(B*T*H*D, 2), e.Rand(B*T*G*D, 2), e.Rand(B*T*G*D, 1)
	p.Segments = e.I32(seg)
	out, lse := e.Alloc(compute.F32, B*T*H*D), e.Alloc(compute.F32, B*H*T)
	e.BE.Attention(p, out, lse, e.F32(q), e.F32(k), e.F32(v))
	gotOut, gotLse := e.Get(out), e.Get(lse)
	for b := range B {
		for t0 := 0; t0 < T; {
			t1 := t0 + 1
			for t1 < T && seg[b*T+t1] == seg[b*T+t0] {
				t1++
			}
			n := t1 - t0
			one := compute.Attention{Batch: 1, Seq: n, Heads: H, KVHeads: G, HeadDim: D, Scale: p.Scale}
			so, sl := e.Alloc(compute.F32, n*H*D), e.Alloc(compute.F32, H*n)
			e.BE.Attention(one, so, sl, e.F32(q[(b*T+t0)*H*D:(b*T+t1)*H*D]),
				e.F32(k[(b*T+t0)*G*D:(b*T+t1)*G*D]), e.F32(v[(b*T+t0)*G*D:(b*T+t1)*G*D]))
			e.Check("document out", gotOut[(b*T+t0)*H*D:(b*T+t1)*H*D], e.Get(so))
			wl := e.Get(sl)
			for h := range H {
				e.Check("document lse", gotLse[(b*H+h)*T+t0:(b*H+h)*T+t1], wl[h*n:(h+1)*n])
			}
			t0 = t1
		}
	}
}

func testAttentionPackedBackward(e *Env) {
	p, seg := packedShape()
	B, T, H, G, D := p.Batch, p.Seq, p.Heads, p.KVHeads, p.HeadDim
	q, k, v := e.Rand(B*T*H*D, 2), e.Rand(B*T*G*D, 2), e.Rand(B*T*G*D, 1)
	dout := e.Rand(B*T*H*D, 1)
	p.Segments = e.I32(seg)
	qb, kb, vb := e.F32(q), e.F32(k), e.F32(v)
	out, lse := e.Alloc(compute.F32, B*T*H*D), e.Alloc(compute.F32, B*H*T)
	e.BE.Attention(p, out, lse, qb, kb, vb)
	dq, dk, dv := e.F32(e.Rand(len(q), 1)), e.F32(e.Rand(len(k), 1)), e.F32(e.Rand(len(v), 1))
	e.BE.AttentionBackward(p, dq, dk, dv, e.F32(dout), qb, kb, vb, out, lse)
	loss := func() float64 { o, _ := refAttentionSeg(p, q, k, v, seg); return dot64(dout, o) }
	e.Check("dq", e.Get(dq), FD(q, loss))
	e.Check("dk", e.Get(dk), FD(k, loss))
	e.Check("dv", e.Get(dv), FD(v, loss))
}
