package cuda

import (
	"fmt"
	"math"

	"github.com/lorakit/lorakit/pkg/compute"
)

// Gemm implements compute.Backend through cublasGemmEx with f32
// accumulation: F32×F32 in f32 arithmetic, BF16×BF16 on the tensor cores;
// a BF16 operand beside an F32 one is widened to f32 in a scratch buffer
// first (exact), or, with Options.BF16Gemm, the F32 operand is rounded to
// bf16 instead. C may be F32 or BF16 (an f32 product reaches a BF16 C
// through an f32 scratch C, as cuBLAS pairs a bf16 C only with bf16 inputs).
func (be *Backend) Gemm(gm compute.Gemm, a, b, c compute.Buffer) {
	if gm.M < 0 || gm.N < 0 || gm.K < 0 {
		panic("cuda: gemm with negative dimensions")
	}
	cb := be.float(c, "gemm C")
	need("gemm C", cb.n, gm.M*gm.N)
	ab, bb := be.float(a, "gemm A"), be.float(b, "gemm B")
	need("gemm A", ab.n, gm.M*gm.K)
	need("gemm B", bb.n, gm.K*gm.N)
	if gm.M == 0 || gm.N == 0 {
		return
	}
	if gm.K == 0 || gm.Alpha == 0 {
		be.elementwise("lk_gemm_beta", gm.M*gm.N, p(cb), i64Arg(gm.M*gm.N), f32Arg(gm.Beta), dts(cb))
		return
	}
	if !be.ok() {
		return
	}
	ap, bp := ab.ptr(), bb.ptr()
	at, bt := ab.dt, bb.dt
	var tmps []*buffer
	defer func() { be.releaseAll(tmps...) }()
	if at != bt {
		// Convert the odd one out: the BF16 operand to f32 (exact), or with
		// BF16Gemm the F32 operand to bf16.
		to := compute.F32
		if be.opt.BF16Gemm {
			to = compute.BF16
		}
		from := ab
		if ab.dt == to {
			from = bb
		}
		tmp, ok := be.scratch(to, from.n)
		if !ok {
			return
		}
		tmps = append(tmps, tmp)
		be.Convert(tmp, from)
		if from == ab {
			ap, at = tmp.ptr(), to
		} else {
			bp, bt = tmp.ptr(), to
		}
	}
	cp, ct := cb.ptr(), cb.dt
	if ct == compute.BF16 && at == compute.F32 {
		tmp, ok := be.scratch(compute.F32, cb.n)
		if !ok {
			return
		}
		tmps = append(tmps, tmp)
		if gm.Beta != 0 {
			be.Convert(tmp, cb)
		}
		cp, ct = tmp.ptr(), compute.F32
		defer be.Convert(cb, tmp)
	}
	ao, bo, co := dense(gm, ap, bp, cp, at, bt, ct)
	be.gemm(gm, ao, bo, co)
}

// gemm queues one GEMM of row-major operands (see colMajor).
func (be *Backend) gemm(gm compute.Gemm, a, b, c operand) { be.gemmBatched(gm, a, b, c, 1) }

// gemmBatched queues batch GEMMs whose operands lie stride elements apart.
func (be *Backend) gemmBatched(gm compute.Gemm, a, b, c operand, batch int) {
	g := colMajor(gm, a, b, c, batch)
	if be.ok() {
		be.fail(be.dev.gemm(&g))
	}
}

// Scale implements compute.Backend.
func (be *Backend) Scale(x compute.Buffer, alpha float32) {
	xb := be.float(x, "scale x")
	be.elementwise("lk_scale", xb.n, p(xb), i64Arg(xb.n), f32Arg(alpha), dts(xb))
}

// Axpy implements compute.Backend.
func (be *Backend) Axpy(y, x compute.Buffer, alpha float32) {
	yb := be.float(y, "axpy y")
	xb := be.floatN(x, "axpy x", yb.n)
	be.elementwise("lk_axpy", yb.n, p(yb), p(xb), i64Arg(yb.n), f32Arg(alpha), dts(yb, xb))
}

// Mul implements compute.Backend.
func (be *Backend) Mul(dst, a, b compute.Buffer) {
	d := be.float(dst, "mul dst")
	ab, bb := be.floatN(a, "mul a", d.n), be.floatN(b, "mul b", d.n)
	be.elementwise("lk_mul", d.n, p(d), p(ab), p(bb), i64Arg(d.n), dts(d, ab, bb))
}

// AddMul implements compute.Backend.
func (be *Backend) AddMul(dst, a, b compute.Buffer) {
	d := be.float(dst, "addmul dst")
	ab, bb := be.floatN(a, "addmul a", d.n), be.floatN(b, "addmul b", d.n)
	be.elementwise("lk_addmul", d.n, p(d), p(ab), p(bb), i64Arg(d.n), dts(d, ab, bb))
}

// Embedding implements compute.Backend. An id outside the table is reported
// by Sync (ErrDevice) and gives a zero row.
func (be *Backend) Embedding(out, table, ids compute.Buffer, dim int) {
	id := be.typed(ids, compute.I32, "embedding ids")
	o := be.floatN(out, "embedding out", id.n*dim)
	t := be.float(table, "embedding table")
	rows := t.n / max(dim, 1)
	need("embedding table", t.n, rows*dim)
	if id.n == 0 || dim == 0 {
		return
	}
	be.run("lk_embedding", [3]uint32{uint32(id.n), 1, 1}, [3]uint32{redThreads, 1, 1}, 0,
		p(o), p(t), p(id), i32Arg(id.n), i32Arg(dim), i32Arg(rows), p(be.flags), dts(o, t))
}

// RMSNorm implements compute.Backend.
func (be *Backend) RMSNorm(y, rstd, x, w compute.Buffer, rows, dim int, eps float32) {
	if m := be.mixed(w, rstd); m != nil { // the kernel takes an f32 weight and rstd
		be.RMSNorm(y, m.out(rstd), x, m.in(w), rows, dim, eps)
		m.done()
		return
	}
	xb, yb, wb := be.floatN(x, "rmsnorm x", rows*dim), be.floatN(y, "rmsnorm y", rows*dim), be.f32(w, "rmsnorm w", dim)
	rs := be.ptrOrNil(rstd, "rmsnorm rstd", rows)
	be.rowwise("lk_rmsnorm_fwd", rows, p(yb), ptrArg(rs), p(xb), p(wb), i32Arg(rows), i32Arg(dim), f32Arg(eps), dts(yb, xb))
}

// RMSNormBackward implements compute.Backend.
func (be *Backend) RMSNormBackward(dx, dy, x, w, rstd compute.Buffer, rows, dim int) {
	if m := be.mixed(w, rstd); m != nil {
		be.RMSNormBackward(dx, dy, x, m.in(w), m.in(rstd), rows, dim)
		m.done()
		return
	}
	dxb, dyb := be.floatN(dx, "rmsnorm dx", rows*dim), be.floatN(dy, "rmsnorm dy", rows*dim)
	xb, wb, rs := be.floatN(x, "rmsnorm x", rows*dim), be.f32(w, "rmsnorm w", dim), be.f32(rstd, "rmsnorm rstd", rows)
	be.rowwise("lk_rmsnorm_bwd", rows, p(dxb), p(dyb), p(xb), p(wb), p(rs), i32Arg(rows), i32Arg(dim), dts(dxb, dyb, xb))
}

// Rope implements compute.Backend. A position outside the table is reported
// by Sync (ErrDevice) and leaves its token unchanged.
func (be *Backend) Rope(r compute.Rope, x, pos, cos, sin compute.Buffer) {
	rot := r.Dims()
	if rot%2 != 0 || rot <= 0 || rot > r.HeadDim {
		panic(fmt.Sprintf("cuda: rope rotating %d of %d dimensions", rot, r.HeadDim))
	}
	half := rot / 2
	xb := be.floatN(x, "rope x", r.Tokens*r.Heads*r.HeadDim)
	pb := be.typed(pos, compute.I32, "rope pos")
	need("rope pos", pb.n, r.Tokens)
	cb := be.typed(cos, compute.F32, "rope cos")
	sb := be.f32(sin, "rope sin", cb.n)
	npos := 0
	if half > 0 {
		npos = cb.n / half
	}
	be.elementwise("lk_rope", r.Tokens*r.Heads*half, p(xb), p(pb), p(cb), p(sb), i32Arg(r.Tokens), i32Arg(r.Heads),
		i32Arg(r.HeadDim), i32Arg(rot), i32Arg(npos), boolArg(r.Inverse), p(be.flags), dts(xb))
}

// GLU implements compute.Backend.
func (be *Backend) GLU(act compute.Activation, out, gate, up compute.Buffer) {
	o := be.float(out, "glu out")
	g, u := be.floatN(gate, "glu gate", o.n), be.floatN(up, "glu up", o.n)
	be.elementwise("lk_glu_fwd", o.n, p(o), p(g), p(u), i64Arg(o.n), i32Arg(actArg(act)), dts(o, g, u))
}

// GLUBackward implements compute.Backend.
func (be *Backend) GLUBackward(act compute.Activation, dgate, dup, dout, gate, up compute.Buffer) {
	do := be.float(dout, "glu dout")
	n := do.n
	dg, du := be.floatN(dgate, "glu dgate", n), be.floatN(dup, "glu dup", n)
	g, u := be.floatN(gate, "glu gate", n), be.floatN(up, "glu up", n)
	be.elementwise("lk_glu_bwd", n, p(dg), p(du), p(do), p(g), p(u), i64Arg(n), i32Arg(actArg(act)), dts(dg, du, do, g, u))
}

// actArg is the kernels' number of an activation (glu.cu).
func actArg(a compute.Activation) int {
	switch a {
	case compute.SiLU, compute.GELUTanh, compute.GELU:
		return int(a)
	}
	panic(fmt.Sprintf("cuda: glu activation %v", a))
}

// SoftCap implements compute.Backend.
func (be *Backend) SoftCap(x compute.Buffer, c float32) {
	if !(c > 0) {
		panic(fmt.Sprintf("cuda: soft cap %v", c))
	}
	xb := be.float(x, "softcap x")
	be.elementwise("lk_softcap", xb.n, p(xb), i64Arg(xb.n), f32Arg(c), dts(xb))
}

// CrossEntropy implements compute.Backend. A target ≥ vocab is reported by
// Sync (ErrDevice); its row gets a NaN loss and a zero gradient.
func (be *Backend) CrossEntropy(loss, dlogits, logits, targets compute.Buffer, rows, vocab int, gradScale, softCap float32) {
	lb, xb := be.f32(loss, "cross-entropy loss", rows), be.f32(logits, "cross-entropy logits", rows*vocab)
	tb := be.typed(targets, compute.I32, "cross-entropy targets")
	need("cross-entropy targets", tb.n, rows)
	dl := be.ptrOrNil(dlogits, "cross-entropy dlogits", rows*vocab)
	if vocab <= 0 || softCap < 0 || softCap != softCap {
		panic(fmt.Sprintf("cuda: cross-entropy with vocabulary %d, soft cap %v", vocab, softCap))
	}
	be.rowwise("lk_cross_entropy", rows, p(lb), ptrArg(dl), p(xb), p(tb), i32Arg(rows), i32Arg(vocab),
		f32Arg(gradScale), f32Arg(softCap), p(be.flags))
}

// FillUniform implements compute.Backend with compute's hash, bit for bit.
func (be *Backend) FillUniform(dst compute.Buffer, seed uint64, lo, hi float32) {
	d := be.get(dst)
	kind := 0
	switch d.dt {
	case compute.F32:
	case compute.BF16:
		kind = 1
	case compute.U8:
		kind = 2
	default:
		panic(fmt.Sprintf("cuda: FillUniform of %v", d.dt))
	}
	key := compute.UniformKey(seed)
	be.elementwise("lk_fill_uniform", d.n, p(d), i64Arg(d.n), u64Arg(key), f32Arg(lo), f32Arg(hi-lo), i32Arg(kind))
}

// DropoutMask implements compute.Backend with compute's hash, bit for bit.
func (be *Backend) DropoutMask(mask compute.Buffer, pr float32, seed, stream uint64) {
	m := be.typed(mask, compute.F32, "dropout mask")
	be.elementwise("lk_dropout_mask", m.n, p(m), i64Arg(m.n), u64Arg(compute.DropoutKey(seed, stream)),
		u32Arg(compute.DropoutThreshold(pr)), f32Arg(compute.DropoutScale(pr)))
}

// DoRANorm implements compute.Backend.
func (be *Backend) DoRANorm(norm, w, a, b compute.Buffer, out, in, rank int, scale float32) {
	if m := be.mixed(norm, a, b); m != nil { // W is read as it is
		be.DoRANorm(m.out(norm), w, m.in(a), m.in(b), out, in, rank, scale)
		m.done()
		return
	}
	nb, ab, bb := be.f32(norm, "dora norm", out), be.f32(a, "dora A", rank*in), be.f32(b, "dora B", out*rank)
	wb := be.get(w)
	need("dora W", wb.n, out*in)
	kernel := "lk_dora_norm_f32w"
	switch wb.dt {
	case compute.F32:
	case compute.BF16:
		kernel = "lk_dora_norm_bf16w"
	default:
		panic(fmt.Sprintf("cuda: dora W has dtype %v", wb.dt))
	}
	be.rowwise(kernel, out, p(nb), p(wb), p(ab), p(bb), i32Arg(out), i32Arg(in), i32Arg(rank), f32Arg(scale))
}

// DoRAForward implements compute.Backend.
func (be *Backend) DoRAForward(y, comb, base, lora, mag, norm compute.Buffer, rows, cols int, scale float32) {
	if w := be.mixed(y, comb, base, lora, mag, norm); w != nil {
		be.DoRAForward(w.out(y), w.out(comb), w.in(base), w.in(lora), w.in(mag), w.in(norm), rows, cols, scale)
		w.done()
		return
	}
	n := rows * cols
	yb, bb, lb := be.f32(y, "dora y", n), be.f32(base, "dora base", n), be.f32(lora, "dora lora", n)
	mb, nb := be.f32(mag, "dora magnitude", cols), be.f32(norm, "dora norm", cols)
	cp := be.ptrOrNil(comb, "dora comb", n)
	be.elementwise("lk_dora_fwd", n, p(yb), ptrArg(cp), p(bb), p(lb), p(mb), p(nb), i32Arg(rows), i32Arg(cols),
		f32Arg(scale))
}

// DoRABackward implements compute.Backend.
func (be *Backend) DoRABackward(dbase, dlora, dmag, dy, comb, mag, norm compute.Buffer, rows, cols int, scale float32) {
	if w := be.mixed(dbase, dlora, dmag, dy, comb, mag, norm); w != nil {
		be.DoRABackward(w.out(dbase), w.out(dlora), w.out(dmag), w.in(dy), w.in(comb), w.in(mag), w.in(norm), rows, cols, scale)
		w.done()
		return
	}
	n := rows * cols
	dbb, dlb := be.f32(dbase, "dora dbase", n), be.f32(dlora, "dora dlora", n)
	dyb, cb := be.f32(dy, "dora dy", n), be.f32(comb, "dora comb", n)
	dmb, mb, nb := be.f32(dmag, "dora dmag", cols), be.f32(mag, "dora magnitude", cols), be.f32(norm, "dora norm", cols)
	be.elementwise("lk_dora_bwd_elem", n, p(dbb), p(dlb), p(dyb), p(mb), p(nb), i32Arg(rows), i32Arg(cols), f32Arg(scale))
	be.elementwise("lk_dora_bwd_dmag", cols, p(dmb), p(dyb), p(cb), p(nb), i32Arg(rows), i32Arg(cols))
}

// ScaleCols implements compute.Backend.
func (be *Backend) ScaleCols(dst, x, v compute.Buffer, rows, cols int, accumulate bool) {
	if w := be.mixed(dst, x, v); w != nil {
		be.ScaleCols(w.out(dst), w.in(x), w.in(v), rows, cols, accumulate)
		w.done()
		return
	}
	d, xb, vb := be.f32(dst, "scalecols dst", rows*cols), be.f32(x, "scalecols x", rows*cols), be.f32(v, "scalecols v", cols)
	be.elementwise("lk_scale_cols", rows*cols, p(d), p(xb), p(vb), i32Arg(rows), i32Arg(cols), boolArg(accumulate))
}

// ColDot implements compute.Backend.
func (be *Backend) ColDot(out, a, b compute.Buffer, rows, cols int) {
	if w := be.mixed(out, a, b); w != nil {
		be.ColDot(w.out(out), w.in(a), w.in(b), rows, cols)
		w.done()
		return
	}
	o, ab, bb := be.f32(out, "coldot out", cols), be.f32(a, "coldot a", rows*cols), be.f32(b, "coldot b", rows*cols)
	be.elementwise("lk_col_dot", cols, p(o), p(ab), p(bb), i32Arg(rows), i32Arg(cols))
}

// adamWScalars returns the f32 scalars of one AdamW update exactly as
// compute/cpu forms them (float64, then rounded).
func adamWScalars(h compute.AdamW) (decay, w1, b2, w2, stepSize, bc2s, eps float32, wd bool) {
	t := float64(h.Step)
	decay = float32(1 - h.LR*h.WeightDecay)
	w1 = float32(1 - h.Beta1)
	b2 = float32(h.Beta2)
	w2 = float32(1 - h.Beta2)
	bc1 := 1 - math.Pow(h.Beta1, t)
	bc2 := 1 - math.Pow(h.Beta2, t)
	stepSize = float32(-(h.LR / bc1))
	bc2s = float32(math.Sqrt(bc2))
	eps = float32(h.Eps)
	wd = h.WeightDecay != 0
	return
}

// AdamWStep implements compute.Backend with the reference's arithmetic.
func (be *Backend) AdamWStep(h compute.AdamW, pb, g, m, v compute.Buffer) {
	pp := be.typed(pb, compute.F32, "adamw param")
	n := pp.n
	gb, mb, vb := be.f32(g, "adamw grad", n), be.f32(m, "adamw m", n), be.f32(v, "adamw v", n)
	if h.Step < 1 {
		panic("cuda: adamw step counter starts at 1")
	}
	decay, w1, b2, w2, stepSize, bc2s, eps, wd := adamWScalars(h)
	be.elementwise("lk_adamw_step", n, p(pp), p(gb), p(mb), p(vb), i64Arg(n), f32Arg(decay), f32Arg(w1), f32Arg(b2),
		f32Arg(w2), f32Arg(stepSize), f32Arg(bc2s), f32Arg(eps), boolArg(wd))
}

// Norm2 implements compute.Backend: double-precision sums of fixed chunks of
// norm2Chunk elements, added in order.
func (be *Backend) Norm2(dst, x compute.Buffer) {
	d := be.typed(dst, compute.F32, "norm2 dst")
	if d.n < 1 {
		panic(fmt.Sprintf("cuda: norm2 dst has %d elements, want at least 1", d.n))
	}
	xb := be.typed(x, compute.F32, "norm2 x")
	if !be.ok() {
		return
	}
	chunks := (xb.n + norm2Chunk - 1) / norm2Chunk
	part, ok := be.scratch(compute.F32, 2*max(chunks, 1)) // doubles
	if !ok {
		return
	}
	if chunks > 0 {
		be.run("lk_norm2_partial", [3]uint32{uint32(chunks), 1, 1}, [3]uint32{redThreads, 1, 1}, 0,
			p(part), p(xb), i64Arg(xb.n))
	}
	be.run("lk_norm2_final", [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0, p(d), p(part), i64Arg(chunks))
	be.release(part)
}

// Convert implements compute.Backend.
func (be *Backend) Convert(dst, src compute.Buffer) {
	d, s := be.get(dst), be.get(src)
	need("convert destination", d.n, s.n)
	switch {
	case d.dt == s.dt && (d.dt == compute.F32 || d.dt == compute.BF16):
		be.Copy(dst, src)
	case d.dt == compute.BF16 && s.dt == compute.F32:
		be.elementwise("lk_f32_to_bf16", d.n, p(d), p(s), i64Arg(d.n))
	case d.dt == compute.F32 && s.dt == compute.BF16:
		be.elementwise("lk_bf16_to_f32", d.n, p(d), p(s), i64Arg(d.n))
	default:
		panic(fmt.Sprintf("cuda: Convert from %v to %v", s.dt, d.dt))
	}
}

// Dequantize4 implements compute.Backend, bit-identical to compute/cpu.
func (be *Backend) Dequantize4(dst compute.Buffer, q compute.Quant4) {
	if q.N < 0 || q.Blocksize <= 0 || q.Blocksize%2 != 0 {
		panic(fmt.Sprintf("cuda: dequantize %d values in blocks of %d", q.N, q.Blocksize))
	}
	nb := q.Blocks()
	d := be.get(dst)
	need("dequantize destination", d.n, q.N)
	if d.dt != compute.F32 && d.dt != compute.BF16 {
		panic(fmt.Sprintf("cuda: dequantize into %v", d.dt))
	}
	packed := be.typed(q.Packed, compute.U8, "dequantize packed")
	need("dequantize packed", packed.n, (q.N+1)/2)
	code := be.f32(q.Code, "dequantize code", 16)
	abs := be.get(q.Absmax)
	need("dequantize absmax", abs.n, nb)
	var absF, absU, nabs, ncode uintptr
	nbs := 1
	switch abs.dt {
	case compute.F32:
		absF = abs.ptr()
	case compute.U8:
		if q.NestedBlocksize <= 0 {
			panic(fmt.Sprintf("cuda: dequantize with nested block size %d", q.NestedBlocksize))
		}
		nbs = q.NestedBlocksize
		absU = abs.ptr()
		nabs = be.f32(q.NestedAbsmax, "dequantize nested absmax", (nb+nbs-1)/nbs).ptr()
		ncode = be.f32(q.NestedCode, "dequantize nested code", 256).ptr()
	default:
		panic(fmt.Sprintf("cuda: dequantize absmax has dtype %v", abs.dt))
	}
	be.elementwise("lk_dequant4", q.N, p(d), p(packed), p(code), ptrArg(absF), ptrArg(absU), ptrArg(nabs),
		ptrArg(ncode), i64Arg(q.N), i32Arg(q.Blocksize), i32Arg(nbs), f32Arg(q.Offset), boolArg(q.RoundF16),
		boolArg(d.dt == compute.BF16))
}
