package computetest

import (
	"math"

	"github.com/lorakit/lorakit/pkg/compute"
)

// Tolerances of the table: f32 arithmetic against float64 references.
const (
	tolExact = 0    // pure data movement
	tolElem  = 1e-6 // a few f32 roundings per element
	tolSum   = 1e-5 // f32 sums over up to a few hundred terms
	tolGrad  = 1e-4 // against float64 finite differences
)

// Cases is the conformance table.
var Cases = append(gemmCases(), []Case{
	{"memory", tolExact, testMemory},
	{"upload_bf16_rounding", tolExact, testBF16Rounding},
	{"convert", tolExact, testConvert},
	{"dequant4_nf4_dq_f32", tolExact, func(e *Env) { testDequant4(e, dqCase{n: 21000, bs: 64, dq: true}) }},
	{"dequant4_nf4_dq_bf16", tolExact, func(e *Env) { testDequant4(e, dqCase{n: 21000, bs: 64, dq: true, out: compute.BF16}) }},
	{"dequant4_nf4_f32", tolExact, func(e *Env) { testDequant4(e, dqCase{n: 1961, bs: 64}) }},
	{"dequant4_nf4_bf16", tolExact, func(e *Env) { testDequant4(e, dqCase{n: 1961, bs: 128, out: compute.BF16}) }},
	{"dequant4_fp4_dq_f32", tolExact, func(e *Env) { testDequant4(e, dqCase{n: 70001, bs: 128, dq: true, fp4: true}) }},
	{"dequant4_fp4_f32", tolExact, func(e *Env) { testDequant4(e, dqCase{n: 999, bs: 32, fp4: true}) }},
	{"dequant4_nf4_dq_f16", tolExact, func(e *Env) { testDequant4(e, dqCase{n: 5003, bs: 32, dq: true, f16: true}) }},
	{"dequant4_small", tolExact, func(e *Env) {
		for _, n := range []int{1, 2, 3, 64, 65} {
			testDequant4(e, dqCase{n: n, bs: 64, dq: n%2 == 1})
		}
	}},
	{"elementwise", tolElem, testElementwise},
	{"embedding_f32", tolExact, func(e *Env) { testEmbedding(e, compute.F32) }},
	{"embedding_bf16", tolExact, func(e *Env) { testEmbedding(e, compute.BF16) }},
	{"rmsnorm", tolElem * 4, func(e *Env) { testRMSNorm(e, compute.F32) }},
	{"rmsnorm_backward", tolGrad, func(e *Env) { testRMSNormBackward(e, compute.F32) }},
	{"rope", tolElem, func(e *Env) { testRope(e, compute.F32, 0) }},
	{"rope_partial", tolElem, func(e *Env) { testRope(e, compute.F32, 6) }},
	{"attention", tolSum, testAttention},
	{"attention_backward", tolGrad, testAttentionBackward},
	{"attention_packed", tolSum, testAttentionPacked},
	{"attention_packed_rows", tolSum, testAttentionPackedRows},
	{"attention_backward_packed", tolGrad, testAttentionPackedBackward},
	{"glu_silu", tolElem * 4, func(e *Env) { testGLU(e, compute.F32, compute.SiLU) }},
	{"glu_silu_backward", tolGrad, func(e *Env) { testGLUBackward(e, compute.F32, compute.SiLU) }},
	{"glu_gelu_tanh", tolElem * 4, func(e *Env) { testGLU(e, compute.F32, compute.GELUTanh) }},
	{"glu_gelu_tanh_backward", tolGrad, func(e *Env) { testGLUBackward(e, compute.F32, compute.GELUTanh) }},
	{"glu_gelu", tolElem * 4, func(e *Env) { testGLU(e, compute.F32, compute.GELU) }},
	{"glu_gelu_backward", tolGrad, func(e *Env) { testGLUBackward(e, compute.F32, compute.GELU) }},
	{"cross_entropy", tolSum, func(e *Env) { testCrossEntropy(e, 0) }},
	{"cross_entropy_softcap", tolSum, func(e *Env) { testCrossEntropy(e, 4.5) }},
	{"softcap", tolElem * 4, func(e *Env) { testSoftCap(e, compute.F32) }},
	{"dropout_mask", tolExact, testDropout},
	{"dora_norm_f32", tolSum, func(e *Env) { testDoRANorm(e, compute.F32) }},
	{"dora_norm_bf16", tolSum, func(e *Env) { testDoRANorm(e, compute.BF16) }},
	{"dora_forward", tolElem * 4, testDoRAForward},
	{"dora_backward", tolGrad, testDoRABackward},
	{"scale_cols", tolElem, testScaleCols},
	{"col_dot", tolSum, testColDot},
	{"adamw", tolElem * 4, testAdamW},
	{"norm2", tolElem, testNorm2},
}...)

func init() { Cases = append(Cases, bf16Cases...) }

func gemmCases() []Case {
	var cs []Case
	shapes := [][3]int{{1, 1, 1}, {3, 5, 7}, {37, 45, 300}, {64, 64, 64}, {70, 33, 513}, {2, 130, 8}, {8, 40, 1}}
	for _, s := range shapes {
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				p := compute.Gemm{TransA: ta, TransB: tb, M: s[0], N: s[1], K: s[2], Alpha: 1}
				cs = append(cs, gemmCase(p, compute.F32, compute.F32))
			}
		}
	}
	for _, p := range []compute.Gemm{
		{M: 37, N: 45, K: 300, Alpha: 0.5, Beta: 0},
		{M: 37, N: 45, K: 300, Alpha: -1.5, Beta: 1},
		{M: 37, N: 45, K: 300, Alpha: 2, Beta: -0.25, TransB: true},
		{M: 5, N: 6, K: 0, Alpha: 1, Beta: 0.5},
		{M: 0, N: 6, K: 3, Alpha: 1, Beta: 0},
	} {
		cs = append(cs, gemmCase(p, compute.F32, compute.F32))
	}
	for _, p := range []compute.Gemm{
		{M: 37, N: 45, K: 300, Alpha: 1, TransB: true},
		{M: 33, N: 40, K: 100, Alpha: 1, Beta: 1},
		{M: 9, N: 70, K: 64, Alpha: 1, TransA: true},
	} {
		cs = append(cs, gemmCase(p, compute.F32, compute.BF16))
		cs = append(cs, gemmCase(p, compute.BF16, compute.F32))
	}
	return cs
}

func gemmCase(p compute.Gemm, da, db compute.DType) Case {
	return Case{Name: "gemm_" + fmtGemm(p) + "_" + da.String() + "_" + db.String(), Tol: tolSum, Run: func(e *Env) {
		a, b := e.Rand(p.M*p.K, 1), e.Rand(p.K*p.N, 1)
		c := e.Rand(p.M*p.N, 1)
		up := func(x []float64, dt compute.DType) compute.Buffer {
			if dt == compute.BF16 {
				return e.BF16(x)
			}
			return e.F32(x)
		}
		ab, bb := up(a, da), up(b, db)
		// A view at an offset checks that operands may be views.
		cfull := e.Alloc(compute.F32, p.M*p.N+3)
		cb := e.BE.View(cfull, 3, p.M*p.N)
		init := append([]float64(nil), c...)
		if p.Beta == 0 {
			for i := range init {
				init[i] = math.NaN() // must not be read
			}
		}
		e.BE.Upload(cb, toF32(init))
		e.BE.Gemm(p, ab, bb, cb)
		e.Check("C", e.Get(cb), refGemm(p, a, b, c))
		e.CheckTol("untouched prefix", e.Get(e.BE.View(cfull, 0, 3)), []float64{0, 0, 0}, tolExact)
	}}
}

func testMemory(e *Env) {
	x := e.Rand(50, 3)
	b := e.F32(x)
	e.Check("upload/download", e.Get(b), x)
	v := e.BE.View(b, 10, 20)
	e.Check("view", e.Get(v), x[10:30])
	c := e.Alloc(compute.F32, 20)
	e.BE.Copy(c, v)
	e.Check("copy", e.Get(c), x[10:30])
	e.BE.Zero(v)
	want := append([]float64(nil), x...)
	clear(want[10:30])
	e.Check("zero view", e.Get(b), want)
	e.Check("copy is independent", e.Get(c), x[10:30])
	z := e.Alloc(compute.F32, 7)
	e.Check("alloc zeroes", e.Get(z), make([]float64, 7))
}

func testBF16Rounding(e *Env) {
	x := append(e.Rand(200, 100),
		1+1.0/256, 1+3.0/256, -(1 + 1.0/256), 1+1.0/256+1.0/65536, 3.3895313892515355e38, 1e-40, 0, math.Inf(1), math.Inf(-1))
	want := make([]float64, len(x))
	for i, v := range x {
		want[i] = roundBF16(v)
	}
	b := e.Alloc(compute.BF16, len(x))
	e.BE.Upload(b, toF32(x))
	got := e.Get(b)
	e.Check("bf16", got, want)
	n := e.Alloc(compute.BF16, 1)
	e.BE.Upload(n, []float32{float32(math.NaN())})
	if g := e.Get(n); !math.IsNaN(g[0]) {
		e.T.Errorf("NaN uploaded to BF16 reads back as %v", g[0])
	}
}

func testElementwise(e *Env) {
	n := 1000
	x, y, z := e.Rand(n, 2), e.Rand(n, 2), e.Rand(n, 2)
	xb, yb, zb := e.F32(x), e.F32(y), e.F32(z)
	e.BE.Axpy(yb, xb, -0.75)
	want := make([]float64, n)
	for i := range want {
		want[i] = y[i] - 0.75*x[i]
	}
	e.Check("axpy", e.Get(yb), want)
	e.BE.Scale(xb, 3)
	for i := range x {
		x[i] *= 3
	}
	e.Check("scale", e.Get(xb), x)
	y = e.Get(yb)
	out := e.Alloc(compute.F32, n)
	e.BE.Mul(out, xb, yb)
	for i := range want {
		want[i] = x[i] * y[i]
	}
	e.Check("mul", e.Get(out), want)
	e.BE.AddMul(zb, xb, yb)
	for i := range want {
		want[i] = z[i] + x[i]*y[i]
	}
	e.Check("addmul", e.Get(zb), want)
	e.BE.Mul(xb, xb, yb)
	for i := range want {
		want[i] = x[i] * y[i]
	}
	e.Check("mul in place", e.Get(xb), want)
}

func testEmbedding(e *Env, dt compute.DType) {
	V, D := 11, 6
	table := e.Rand(V*D, 1)
	var tb compute.Buffer
	if dt == compute.BF16 {
		tb = e.BF16(table)
	} else {
		tb = e.F32(table)
	}
	ids := []int32{3, 0, 10, 3, 7}
	out := e.Alloc(compute.F32, len(ids)*D)
	e.BE.Embedding(out, tb, e.I32(ids), D)
	var want []float64
	for _, id := range ids {
		want = append(want, table[int(id)*D:int(id+1)*D]...)
	}
	e.Check("rows", e.Get(out), want)
}

// testRMSNorm runs RMSNorm on activations of dtype dt (weight and rstd
// F32), and with an F32 output and no rstd.
func testRMSNorm(e *Env, dt compute.DType) {
	rows, dim := 7, 48
	x, w := e.Rand(rows*dim, 2), e.Rand(dim, 1)
	for i := range w {
		w[i] += 1
	}
	xb := e.Up(x, dt)
	y, rstd := e.Alloc(dt, rows*dim), e.Alloc(compute.F32, rows)
	e.BE.RMSNorm(y, rstd, xb, e.F32(w), rows, dim, 1e-5)
	wy, wr := refRMSNorm(x, w, rows, dim, float64(float32(1e-5)))
	e.Check("y", e.Get(y), wy)
	e.CheckTol("rstd", e.Get(rstd), wr, tolElem*4)
	y2 := e.Alloc(compute.F32, rows*dim)
	e.BE.RMSNorm(y2, nil, xb, e.F32(w), rows, dim, 1e-5)
	e.CheckTol("F32 y without rstd", e.Get(y2), wy, tolElem*4)
}

// testRMSNormBackward takes x and dy of dtype dt and accumulates into an
// F32 dx, and for BF16 also into a BF16 dx.
func testRMSNormBackward(e *Env, dt compute.DType) {
	rows, dim := 5, 24
	x, w, dy := e.Rand(rows*dim, 2), e.Rand(dim, 1), e.Rand(rows*dim, 1)
	xb, dyb := e.Up(x, dt), e.Up(dy, dt)
	eps := float64(float32(1e-5))
	_, rstd := refRMSNorm(x, w, rows, dim, eps)
	g := FD(x, func() float64 { y, _ := refRMSNorm(x, w, rows, dim, eps); return dot64(dy, y) })
	dxTypes := []compute.DType{compute.F32}
	if dt == compute.BF16 {
		dxTypes = append(dxTypes, compute.BF16)
	}
	for _, dxt := range dxTypes {
		acc := e.Rand(rows*dim, 1)
		dx := e.Up(acc, dxt)
		e.BE.RMSNormBackward(dx, dyb, xb, e.F32(w), e.F32(rstd), rows, dim)
		want := make([]float64, len(g))
		for i := range g {
			want[i] = g[i] + acc[i]
		}
		e.Check("dx (accumulated) "+dxt.String(), e.Get(dx), want)
	}
}

// testRope rotates heads of 10 values, all of them or the first rotary.
func testRope(e *Env, dt compute.DType, rotary int) {
	p := compute.Rope{Tokens: 6, Heads: 3, HeadDim: 10, Rotary: rotary}
	maxPos, half := 10, p.Dims()/2
	cos, sin := make([]float64, maxPos*half), make([]float64, maxPos*half)
	for i := range cos {
		a := 7 * e.rng.Float64()
		cos[i], sin[i] = float64(float32(math.Cos(a))), float64(float32(math.Sin(a)))
	}
	pos := []int32{0, 3, 9, 3, 1, 5}
	x := e.Rand(p.Tokens*p.Heads*p.HeadDim, 2)
	xb := e.Up(x, dt)
	posb, cb, sb := e.I32(pos), e.F32(cos), e.F32(sin)
	e.BE.Rope(p, xb, posb, cb, sb)
	y := refRope(p, x, pos, cos, sin)
	e.Check("forward", e.Get(xb), y)
	// The inverse is the transpose: <rope(x), d> = <x, rope⁻¹(d)>.
	d := e.Rand(len(x), 1)
	db := e.Up(d, dt)
	p.Inverse = true
	e.BE.Rope(p, db, posb, cb, sb)
	g := FD(x, func() float64 { p.Inverse = false; return dot64(d, refRope(p, x, pos, cos, sin)) })
	e.CheckTol("inverse (backward)", e.Get(db), g, max(tolGrad, e.Tol))
}

func attnShape() compute.Attention {
	return compute.Attention{Batch: 2, Seq: 7, Heads: 4, KVHeads: 2, HeadDim: 8, Scale: float32(1 / math.Sqrt(8))}
}

func testAttention(e *Env) {
	for _, p := range []compute.Attention{attnShape(),
		{Batch: 1, Seq: 70, Heads: 3, KVHeads: 1, HeadDim: 16, Scale: 0.25},
		{Batch: 3, Seq: 1, Heads: 2, KVHeads: 2, HeadDim: 4, Scale: 0.5}} {
		B, T, H, G, D := p.Batch, p.Seq, p.Heads, p.KVHeads, p.HeadDim
		q, k, v := e.Rand(B*T*H*D, 2), e.Rand(B*T*G*D, 2), e.Rand(B*T*G*D, 1)
		out, lse := e.Alloc(compute.F32, B*T*H*D), e.Alloc(compute.F32, B*H*T)
		e.BE.Attention(p, out, lse, e.F32(q), e.F32(k), e.F32(v))
		wo, wl := refAttention(p, q, k, v)
		e.Check("out", e.Get(out), wo)
		e.Check("lse", e.Get(lse), wl)
	}
}

func testAttentionBackward(e *Env) {
	p := attnShape()
	B, T, H, G, D := p.Batch, p.Seq, p.Heads, p.KVHeads, p.HeadDim
	q, k, v := e.Rand(B*T*H*D, 2), e.Rand(B*T*G*D, 2), e.Rand(B*T*G*D, 1)
	dout := e.Rand(B*T*H*D, 1)
	qb, kb, vb := e.F32(q), e.F32(k), e.F32(v)
	out, lse := e.Alloc(compute.F32, B*T*H*D), e.Alloc(compute.F32, B*H*T)
	e.BE.Attention(p, out, lse, qb, kb, vb)
	dq, dk, dv := e.F32(e.Rand(len(q), 1)), e.F32(e.Rand(len(k), 1)), e.F32(e.Rand(len(v), 1))
	e.BE.AttentionBackward(p, dq, dk, dv, e.F32(dout), qb, kb, vb, out, lse)
	loss := func() float64 { o, _ := refAttention(p, q, k, v); return dot64(dout, o) }
	e.Check("dq", e.Get(dq), FD(q, loss))
	e.Check("dk", e.Get(dk), FD(k, loss))
	e.Check("dv", e.Get(dv), FD(v, loss))
}

func testGLU(e *Env, dt compute.DType, act compute.Activation) {
	n := 500
	g, u := e.Rand(n, 8), e.Rand(n, 2)
	out := e.Alloc(dt, n)
	e.BE.GLU(act, out, e.Up(g, dt), e.Up(u, dt))
	e.Check("out", e.Get(out), refGLU(act, g, u))
}

func testGLUBackward(e *Env, dt compute.DType, act compute.Activation) {
	n := 300
	g, u, d := e.Rand(n, 8), e.Rand(n, 2), e.Rand(n, 1)
	gb, ub, db := e.Up(g, dt), e.Up(u, dt), e.Up(d, dt)
	dg, du := e.Alloc(dt, n), e.Alloc(dt, n)
	e.BE.GLUBackward(act, dg, du, db, gb, ub)
	loss := func() float64 { return dot64(d, refGLU(act, g, u)) }
	wg := FD(g, loss)
	e.Check("dgate", e.Get(dg), wg)
	e.Check("dup", e.Get(du), FD(u, loss))
	// dgate may alias dout.
	e.BE.GLUBackward(act, db, du, db, gb, ub)
	e.Check("dgate over dout", e.Get(db), wg)
}

// testCrossEntropy checks the loss and its gradient with respect to the
// logits, with the logits soft-capped at softCap when it is not 0.
func testCrossEntropy(e *Env, softCap float64) {
	rows, vocab := 6, 50
	x := e.Rand(rows*vocab, 6)
	if softCap > 0 {
		x[3] = 40 // well into the cap's saturation
	}
	targets := []int32{4, compute.IgnoreIndex, 49, 0, -1, 17}
	tb := e.I32(targets)
	scale := 0.125
	sc := float32(softCap)
	loss, dl := e.Alloc(compute.F32, rows), e.Alloc(compute.F32, rows*vocab)
	e.BE.CrossEntropy(loss, dl, e.F32(x), tb, rows, vocab, float32(scale), sc)
	want := refCrossEntropy(refSoftCap(x, softCap), targets, rows, vocab)
	e.Check("loss", e.Get(loss), want)
	g := FD(x, func() float64 {
		var s float64
		for _, l := range refCrossEntropy(refSoftCap(x, softCap), targets, rows, vocab) {
			s += l
		}
		return s * scale
	})
	e.CheckTol("dlogits", e.Get(dl), g, tolGrad)
	// In place, and loss only.
	xb := e.F32(x)
	e.BE.CrossEntropy(loss, xb, xb, tb, rows, vocab, float32(scale), sc)
	e.CheckTol("dlogits in place", e.Get(xb), g, tolGrad)
	loss2 := e.Alloc(compute.F32, rows)
	e.BE.CrossEntropy(loss2, nil, e.F32(x), tb, rows, vocab, 1, sc)
	e.Check("loss without gradient", e.Get(loss2), want)
}

func testSoftCap(e *Env, dt compute.DType) {
	x := append(e.Rand(300, 80), 1e4, -1e4, 0)
	xb := e.Up(x, dt)
	e.BE.SoftCap(xb, 30)
	e.Check("capped", e.Get(xb), refSoftCap(x, 30))
}

func testDropout(e *Env) {
	n := 20000
	m := e.Alloc(compute.F32, n)
	p := float32(0.25)
	e.BE.DropoutMask(m, p, 42, 7)
	got := e.Get(m)
	key, th, keep := compute.DropoutKey(42, 7), compute.DropoutThreshold(p), float64(compute.DropoutScale(p))
	want := make([]float64, n)
	dropped := 0
	for i := range want {
		if compute.DropoutDrops(key, i, th) {
			dropped++
		} else {
			want[i] = keep
		}
	}
	e.Check("mask", got, want)
	if math.Abs(float64(dropped)-float64(n)*0.25) > 6*math.Sqrt(float64(n)*0.25*0.75) {
		e.T.Errorf("dropped %d of %d at p=0.25", dropped, n)
	}
	e.BE.DropoutMask(m, p, 42, 8)
	if same := dot64(e.Get(m), got); same == dot64(got, got) {
		e.T.Errorf("streams 7 and 8 give the same mask")
	}
	e.BE.DropoutMask(m, 0, 42, 7)
	for i, v := range e.Get(m) {
		if v != 1 {
			e.T.Fatalf("p=0: mask[%d] = %v", i, v)
		}
	}
}

func testDoRANorm(e *Env, dt compute.DType) {
	out, in, rank := 12, 40, 3
	scale := float32(0.7)
	w, a, b := e.Rand(out*in, 1), e.Rand(rank*in, 1), e.Rand(out*rank, 1)
	var wb compute.Buffer
	if dt == compute.BF16 {
		wb = e.BF16(w)
	} else {
		wb = e.F32(w)
	}
	n := e.Alloc(compute.F32, out)
	e.BE.DoRANorm(n, wb, e.F32(a), e.F32(b), out, in, rank, scale)
	e.Check("norm", e.Get(n), refDoRANorm(w, a, b, out, in, rank, float64(scale)))
}

func doraInputs(e *Env, rows, cols int) (y, base, lora, mag, norm []float64) {
	y, base, lora = e.Rand(rows*cols, 1), e.Rand(rows*cols, 1), e.Rand(rows*cols, 1)
	mag, norm = e.Rand(cols, 1), e.Rand(cols, 1)
	for i := range norm {
		mag[i] += 2
		norm[i] += 2
	}
	return
}

func testDoRAForward(e *Env) {
	rows, cols := 9, 20
	scale := float32(1.5)
	y, base, lora, mag, norm := doraInputs(e, rows, cols)
	want, wcomb := refDoRAForward(y, base, lora, mag, norm, rows, cols, float64(scale))
	yb, comb := e.F32(y), e.Alloc(compute.F32, rows*cols)
	e.BE.DoRAForward(yb, comb, e.F32(base), e.F32(lora), e.F32(mag), e.F32(norm), rows, cols, scale)
	e.Check("y", e.Get(yb), want)
	e.Check("comb", e.Get(comb), wcomb)
	// base aliasing y, no comb.
	want, _ = refDoRAForward(base, base, lora, mag, norm, rows, cols, float64(scale))
	bb := e.F32(base)
	e.BE.DoRAForward(bb, nil, bb, e.F32(lora), e.F32(mag), e.F32(norm), rows, cols, scale)
	e.Check("y aliasing base", e.Get(bb), want)
}

func testDoRABackward(e *Env) {
	rows, cols := 9, 20
	scale := float32(1.5)
	y, base, lora, mag, norm := doraInputs(e, rows, cols)
	dy := e.Rand(rows*cols, 1)
	_, comb := refDoRAForward(y, base, lora, mag, norm, rows, cols, float64(scale))
	dbase, dlora := e.Alloc(compute.F32, rows*cols), e.Alloc(compute.F32, rows*cols)
	acc := e.Rand(cols, 1)
	dmag := e.F32(acc)
	e.BE.DoRABackward(dbase, dlora, dmag, e.F32(dy), e.F32(comb), e.F32(mag), e.F32(norm), rows, cols, scale)
	loss := func() float64 {
		o, _ := refDoRAForward(y, base, lora, mag, norm, rows, cols, float64(scale))
		return dot64(dy, o)
	}
	e.Check("dbase", e.Get(dbase), FD(base, loss))
	e.Check("dlora", e.Get(dlora), FD(lora, loss))
	gm := FD(mag, loss)
	for i := range gm {
		gm[i] += acc[i]
	}
	e.Check("dmag (accumulated)", e.Get(dmag), gm)
}

func testAdamW(e *Env) {
	n := 3000
	p := e.Rand(n, 1)
	m, v := make([]float64, n), make([]float64, n)
	pb, mb, vb := e.F32(p), e.Alloc(compute.F32, n), e.Alloc(compute.F32, n)
	for step := 1; step <= 3; step++ {
		h := compute.AdamW{LR: 1e-2, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: step}
		g := e.Rand(n, 0.1)
		g[0] = 0
		e.BE.AdamWStep(h, pb, e.F32(g), mb, vb)
		refAdamW(h, p, g, m, v)
		e.Check("p", e.Get(pb), p)
		e.Check("m", e.Get(mb), m)
		e.Check("v", e.Get(vb), v)
	}
}

func testNorm2(e *Env) {
	for _, n := range []int{1, 100, 10007} {
		x := e.Rand(n, 3)
		d := e.Alloc(compute.F32, 3)
		e.BE.Norm2(e.BE.View(d, 1, 1), e.F32(x))
		e.Check("norm", e.Get(d), []float64{0, math.Sqrt(dot64(x, x)), 0})
	}
}

func testScaleCols(e *Env) {
	rows, cols := 13, 37
	x, v, d := e.Rand(rows*cols, 2), e.Rand(cols, 2), e.Rand(rows*cols, 1)
	want, acc := make([]float64, rows*cols), make([]float64, rows*cols)
	for i := range want {
		want[i] = x[i] * v[i%cols]
		acc[i] = d[i] + want[i]
	}
	out := e.Alloc(compute.F32, rows*cols)
	xb, vb := e.F32(x), e.F32(v)
	e.BE.ScaleCols(out, xb, vb, rows, cols, false)
	e.Check("dst = x⊙v", e.Get(out), want)
	db := e.F32(d)
	e.BE.ScaleCols(db, xb, vb, rows, cols, true)
	e.Check("dst += x⊙v", e.Get(db), acc)
	e.BE.ScaleCols(xb, xb, vb, rows, cols, false)
	e.Check("in place", e.Get(xb), want)
}

func testColDot(e *Env) {
	rows, cols := 200, 37
	a, b, o := e.Rand(rows*cols, 1), e.Rand(rows*cols, 1), e.Rand(cols, 1)
	want := append([]float64(nil), o...)
	for r := range rows {
		for c := range cols {
			want[c] += a[r*cols+c] * b[r*cols+c]
		}
	}
	ob := e.F32(o)
	e.BE.ColDot(ob, e.F32(a), e.F32(b), rows, cols)
	e.Check("out (accumulated)", e.Get(ob), want)
}
