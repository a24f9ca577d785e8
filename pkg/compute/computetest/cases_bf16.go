package computetest

import (
	"math"

	"github.com/lorakit/lorakit/pkg/compute"
)

// Mixed precision (BF16 operands) and the attention variants. The inputs
// are bf16 values (rounded before the reference sees them), so the
// tolerances cover the outputs' rounding to bf16 (2⁻⁹ relative), f32 sums
// that land on the other side of a rounding tie (2⁻⁸), and, for a GPU,
// intermediate products rounded to bf16 for the tensor cores.
const (
	tolBF16     = 1e-2
	tolBF16Grad = 3e-2
)

var bf16Cases = []Case{
	{"gemm_bf16_c", tolBF16, testGemmBF16C},
	{"elementwise_bf16", tolBF16, testElementwiseBF16},
	{"embedding_bf16_out", tolExact, testEmbeddingBF16Out},
	{"rmsnorm_bf16", tolBF16, func(e *Env) { testRMSNorm(e, compute.BF16) }},
	{"rmsnorm_backward_bf16", tolBF16, func(e *Env) { testRMSNormBackward(e, compute.BF16) }},
	{"rope_bf16", tolBF16, func(e *Env) { testRope(e, compute.BF16, 0) }},
	{"rope_partial_bf16", tolBF16, func(e *Env) { testRope(e, compute.BF16, 4) }},
	{"glu_silu_bf16", tolBF16, func(e *Env) { testGLU(e, compute.BF16, compute.SiLU) }},
	{"glu_silu_backward_bf16", tolBF16, func(e *Env) { testGLUBackward(e, compute.BF16, compute.SiLU) }},
	{"glu_gelu_tanh_bf16", tolBF16, func(e *Env) { testGLU(e, compute.BF16, compute.GELUTanh) }},
	{"glu_gelu_tanh_backward_bf16", tolBF16, func(e *Env) { testGLUBackward(e, compute.BF16, compute.GELUTanh) }},
	{"softcap_bf16", tolBF16, func(e *Env) { testSoftCap(e, compute.BF16) }},
	{"adapters_bf16", tolBF16, testAdaptersBF16},
	{"attention_window", tolSum, func(e *Env) { testAttentionVariant(e, compute.F32, 3, 0, false) }},
	{"attention_softcap", tolSum, func(e *Env) { testAttentionVariant(e, compute.F32, 0, 1.5, false) }},
	{"attention_backward_window_softcap", tolGrad, func(e *Env) { testAttentionVariant(e, compute.F32, 4, 2, true) }},
	{"attention_packed_window_softcap", tolGrad, func(e *Env) { testAttentionPackedVariant(e, compute.F32, 3, 2) }},
	{"attention_bf16", tolBF16, func(e *Env) { testAttentionVariant(e, compute.BF16, 0, 0, false) }},
	{"attention_backward_bf16", tolBF16Grad, func(e *Env) { testAttentionVariant(e, compute.BF16, 0, 0, true) }},
	{"attention_bf16_window_softcap", tolBF16Grad, func(e *Env) { testAttentionVariant(e, compute.BF16, 5, 1.5, true) }},
	{"attention_packed_bf16", tolBF16Grad, func(e *Env) { testAttentionPackedVariant(e, compute.BF16, 0, 0) }},
	{"attention_long_bf16", tolBF16Grad, testAttentionLongBF16},
	{"fill_uniform", tolExact, testFillUniform},
}

// Up uploads x as dt; for BF16 it first rounds x in place (see BF16).
func (e *Env) Up(x []float64, dt compute.DType) compute.Buffer {
	if dt == compute.BF16 {
		return e.BF16(x)
	}
	return e.F32(x)
}

func testGemmBF16C(e *Env) {
	for _, c := range []struct {
		p      compute.Gemm
		da, db compute.DType
	}{
		{compute.Gemm{M: 37, N: 45, K: 300, Alpha: 1, TransB: true}, compute.BF16, compute.BF16},
		{compute.Gemm{M: 33, N: 40, K: 100, Alpha: 0.5, Beta: 1}, compute.BF16, compute.BF16},
		{compute.Gemm{M: 9, N: 70, K: 64, Alpha: 1, Beta: -2, TransA: true}, compute.BF16, compute.BF16},
		{compute.Gemm{M: 20, N: 17, K: 50, Alpha: 1, TransA: true, TransB: true}, compute.F32, compute.BF16},
		{compute.Gemm{M: 5, N: 6, K: 0, Alpha: 1, Beta: 0.5}, compute.BF16, compute.BF16},
	} {
		p := c.p
		a, b, cc := e.Rand(p.M*p.K, 1), e.Rand(p.K*p.N, 1), e.Rand(p.M*p.N, 1)
		ab, bb := e.Up(a, c.da), e.Up(b, c.db)
		cb := e.BF16(cc)
		if p.Beta == 0 {
			e.BE.Upload(cb, toF32(nanSlice(len(cc)))) // must not be read
		}
		e.BE.Gemm(p, ab, bb, cb)
		e.Check("C "+fmtGemm(p), e.Get(cb), refGemm(p, a, b, cc))
	}
}

func nanSlice(n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = math.NaN()
	}
	return x
}

func testElementwiseBF16(e *Env) {
	n := 1000
	for _, dts := range [][3]compute.DType{{compute.BF16, compute.BF16, compute.BF16}, {compute.BF16, compute.F32, compute.BF16},
		{compute.F32, compute.BF16, compute.F32}} {
		x, y, z := e.Rand(n, 2), e.Rand(n, 2), e.Rand(n, 2)
		xb, yb, zb := e.Up(x, dts[0]), e.Up(y, dts[1]), e.Up(z, dts[2])
		e.BE.Axpy(yb, xb, -0.75)
		want := make([]float64, n)
		for i := range want {
			want[i] = y[i] - 0.75*x[i]
		}
		e.Check("axpy", e.Get(yb), want)
		y = e.Get(yb)
		e.BE.Scale(xb, 3)
		for i := range x {
			x[i] *= 3
		}
		e.Check("scale", e.Get(xb), x)
		x = e.Get(xb)
		e.BE.AddMul(zb, xb, yb)
		for i := range want {
			want[i] = z[i] + x[i]*y[i]
		}
		e.Check("addmul", e.Get(zb), want)
		e.BE.Mul(zb, xb, yb)
		for i := range want {
			want[i] = x[i] * y[i]
		}
		e.Check("mul", e.Get(zb), want)
	}
}

func testEmbeddingBF16Out(e *Env) {
	V, D := 11, 6
	ids := []int32{3, 0, 10, 3, 7}
	for _, dt := range []compute.DType{compute.F32, compute.BF16} {
		table := e.Rand(V*D, 1)
		tb := e.Up(table, dt)
		out := e.Alloc(compute.BF16, len(ids)*D)
		e.BE.Embedding(out, tb, e.I32(ids), D)
		var want []float64
		for _, id := range ids {
			for _, v := range table[int(id)*D : int(id+1)*D] {
				want = append(want, roundBF16(v))
			}
		}
		e.Check("rows", e.Get(out), want)
	}
}

// testAdaptersBF16 runs the DoRA and (IA)³ operations on BF16 activations
// (their F32 parameters and statistics stay F32).
func testAdaptersBF16(e *Env) {
	rows, cols := 9, 20
	scale := float32(1.5)
	y, base, lora, mag, norm := doraInputs(e, rows, cols)
	yb, baseb, lorab := e.BF16(y), e.BF16(base), e.BF16(lora)
	want, wcomb := refDoRAForward(y, base, lora, mag, norm, rows, cols, float64(scale))
	comb := e.Alloc(compute.BF16, rows*cols)
	e.BE.DoRAForward(yb, comb, baseb, lorab, e.F32(mag), e.F32(norm), rows, cols, scale)
	e.Check("dora y", e.Get(yb), want)
	e.Check("dora comb", e.Get(comb), wcomb)
	wcomb = e.Get(comb)
	dy := e.Rand(rows*cols, 1)
	dyb := e.BF16(dy)
	dbase, dlora, dmag := e.Alloc(compute.BF16, rows*cols), e.Alloc(compute.BF16, rows*cols), e.Alloc(compute.F32, cols)
	e.BE.DoRABackward(dbase, dlora, dmag, dyb, comb, e.F32(mag), e.F32(norm), rows, cols, scale)
	wb, wl, wm := make([]float64, rows*cols), make([]float64, rows*cols), make([]float64, cols)
	for r := range rows {
		for c := range cols {
			i := r*cols + c
			g := mag[c] / norm[c]
			wb[i], wl[i] = (g-1)*dy[i], g*float64(scale)*dy[i]
			wm[c] += dy[i] * wcomb[i] / norm[c]
		}
	}
	e.Check("dora dbase", e.Get(dbase), wb)
	e.Check("dora dlora", e.Get(dlora), wl)
	e.Check("dora dmag", e.Get(dmag), wm)

	x, v := e.Rand(rows*cols, 2), e.Rand(cols, 2)
	xb := e.BF16(x)
	out := e.Alloc(compute.BF16, rows*cols)
	e.BE.ScaleCols(out, xb, e.F32(v), rows, cols, false)
	sc := make([]float64, rows*cols)
	for i := range sc {
		sc[i] = x[i] * v[i%cols]
	}
	e.Check("scalecols", e.Get(out), sc)
	cd := e.Alloc(compute.F32, cols)
	e.BE.ColDot(cd, xb, dyb, rows, cols)
	wd := make([]float64, cols)
	for i := range x {
		wd[i%cols] += x[i] * dy[i]
	}
	e.Check("coldot", e.Get(cd), wd)
}

// testAttentionVariant checks the forward (and with backward the
// gradients) of attention with dtype dt, a sliding window and a score cap
// on two shapes: a small batch with grouped heads, and one sequence long
// enough for a backend that works in chunks of queries to use several.
func testAttentionVariant(e *Env, dt compute.DType, window int, softcap float32, backward bool) {
	shapes := []compute.Attention{attnShape(), {Batch: 1, Seq: 70, Heads: 4, KVHeads: 1, HeadDim: 16, Scale: 0.25}}
	if backward {
		shapes = shapes[:1]
	}
	for _, p := range shapes {
		p.Window, p.SoftCap = window, softcap
		checkAttention(e, p, dt, nil, backward)
	}
}

func testAttentionPackedVariant(e *Env, dt compute.DType, window int, softcap float32) {
	p, seg := packedShape()
	p.Window, p.SoftCap = window, softcap
	checkAttention(e, p, dt, seg, true)
}

// testAttentionLongBF16 is a long sequence with a head dimension of 64: the
// shape class of the GPU's tensor-core path.
func testAttentionLongBF16(e *Env) {
	p := compute.Attention{Batch: 2, Seq: 100, Heads: 4, KVHeads: 2, HeadDim: 64, Scale: 0.125}
	seg := make([]int32, p.Batch*p.Seq)
	for i := p.Seq + 60; i < len(seg); i++ {
		seg[i] = 1
	}
	checkAttention(e, p, compute.BF16, seg, false)
	checkAttention(e, compute.Attention{Batch: 1, Seq: 40, Heads: 2, KVHeads: 1, HeadDim: 64, Scale: 0.125}, compute.BF16, nil, true)
}

func checkAttention(e *Env, p compute.Attention, dt compute.DType, seg []int32, backward bool) {
	B, T, H, G, D, N := p.Batch, p.Seq, p.Heads, p.KVHeads, p.HeadDim, p.Keys()
	q, k, v := e.Rand(B*T*H*D, 2), e.Rand(B*N*G*D, 2), e.Rand(B*N*G*D, 1)
	qb, kb, vb := e.Up(q, dt), e.Up(k, dt), e.Up(v, dt)
	if seg != nil {
		p.Segments = e.I32(seg)
	}
	out, lse := e.Alloc(dt, B*T*H*D), e.Alloc(compute.F32, B*H*T)
	e.BE.Attention(p, out, lse, qb, kb, vb)
	wo, wl := refAttentionSeg(p, q, k, v, seg)
	e.Check("out", e.Get(out), wo)
	e.CheckTol("lse", e.Get(lse), wl, max(tolSum, e.Tol/10))
	if !backward {
		return
	}
	dout := e.Rand(B*T*H*D, 1)
	dob := e.Up(dout, dt)
	dq, dk, dv := e.Up(e.Rand(len(q), 1), dt), e.Up(e.Rand(len(k), 1), dt), e.Up(e.Rand(len(v), 1), dt)
	e.BE.AttentionBackward(p, dq, dk, dv, dob, qb, kb, vb, out, lse)
	wq, wk, wv := refAttentionGrad(p, q, k, v, dout, seg)
	if len(q) <= 1000 { // the analytic reference against finite differences
		loss := func() float64 { o, _ := refAttentionSeg(p, q, k, v, seg); return dot64(dout, o) }
		for _, c := range []struct {
			name    string
			x, want []float64
		}{{"dq", q, wq}, {"dk", k, wk}, {"dv", v, wv}} {
			e.CheckTol("reference "+c.name, c.want, FD(c.x, loss), tolGrad)
		}
	}
	e.Check("dq", e.Get(dq), wq)
	e.Check("dk", e.Get(dk), wk)
	e.Check("dv", e.Get(dv), wv)
}

func testFillUniform(e *Env) {
	n := 5000
	for _, dt := range []compute.DType{compute.F32, compute.BF16, compute.U8} {
		full := e.Alloc(dt, n+3)
		b := e.BE.View(full, 3, n)
		e.BE.FillUniform(b, 77, -0.5, 0.25)
		want := make([]float64, n)
		for i := range want {
			u := compute.UniformBits(77, i)
			switch dt {
			case compute.U8:
				want[i] = float64(byte(u))
			case compute.BF16:
				want[i] = roundBF16(float64(compute.UniformValue(u, -0.5, 0.25)))
			default:
				want[i] = float64(compute.UniformValue(u, -0.5, 0.25))
			}
		}
		if dt == compute.U8 {
			continue // checked below through a dequantization
		}
		got := e.Get(b)
		e.Check("values "+dt.String(), got, want)
		var mean float64
		for _, v := range got {
			mean += v / float64(n)
			if v < -0.5 || v > 0.25 {
				e.T.Fatalf("%v value %v outside [-0.5, 0.25]", dt, v)
			}
		}
		if math.Abs(mean-(-0.125)) > 0.02 {
			e.T.Errorf("%v mean %v, want about -0.125", dt, mean)
		}
		e.CheckTol("untouched prefix "+dt.String(), e.Get(e.BE.View(full, 0, 3)), []float64{0, 0, 0}, tolExact)
	}
	// Random bytes as 4-bit codes: decoded with a code table of 0..15 and a
	// scale of 1, value k is its nibble.
	packed := e.Alloc(compute.U8, n/2)
	e.BE.FillUniform(packed, 9, 0, 0)
	code := make([]float64, 16)
	for i := range code {
		code[i] = float64(i)
	}
	ones := make([]float64, (n+63)/64)
	for i := range ones {
		ones[i] = 1
	}
	q := compute.Quant4{N: n, Blocksize: 64, Packed: packed, Code: e.F32(code), Absmax: e.F32(ones)}
	dst := e.Alloc(compute.F32, n)
	e.BE.Dequantize4(dst, q)
	want := make([]float64, n)
	for i := range want {
		by := byte(compute.UniformBits(9, i/2))
		if i%2 == 0 {
			want[i] = float64(by >> 4)
		} else {
			want[i] = float64(by & 15)
		}
	}
	e.Check("bytes", e.Get(dst), want)
}
