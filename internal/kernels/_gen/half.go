package main

import (
	"fmt"

	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// The half family converts between float32 and the 16-bit float formats.
// Each kernel converts the first len(dst) &^ (block−1) elements (block: 32
// for AVX2 and NEON, 64 for AVX-512); the Go side does the rest. bf16
// rounding uses exact integer operations; binary16 uses the F16C / FCVTN
// conversions, which round to nearest even (MXCSR and FPCR are never
// changed from their defaults in Go programs).

func halfAMD64(g *amd64Gen) {
	for _, w := range []struct {
		sfx   string
		lanes int
	}{{"AVX2", 8}, {"AVX512", 16}} {
		halfDecodeBF16(g, w.sfx, w.lanes)
		halfEncodeBF16(g, w.sfx, w.lanes)
		halfDecodeF16(g, w.sfx, w.lanes)
		halfEncodeF16(g, w.sfx, w.lanes)
	}
}

// vec returns a new vector register of the given lane count.
func (g *amd64Gen) vec(lanes int) reg.VecVirtual {
	if lanes == 16 {
		return g.ZMM()
	}
	return g.YMM()
}

// halfLoop emits a loop over n/block blocks: body(i) is called for each of
// the four vectors of the block with the source and destination registers
// already advanced; after it, src and dst advance by block elements of the
// given sizes.
func (g *amd64Gen) halfLoop(name string, block, srcSize, dstSize int, n, src, dst reg.GPVirtual, body func()) {
	g.SHRQ(operand.U8(log2(block)), n)
	g.JZ(operand.LabelRef(name + "_done"))
	g.Label(name + "_loop")
	body()
	g.ADDQ(operand.U32(block*srcSize), src)
	g.ADDQ(operand.U32(block*dstSize), dst)
	g.DECQ(n)
	g.JNZ(operand.LabelRef(name + "_loop"))
	g.Label(name + "_done")
	g.VZEROUPPER()
	g.RET()
}

func log2(n int) int {
	k := 0
	for 1<<k < n {
		k++
	}
	return k
}

// halfDecode widens 16-bit values with conv (source operand, destination).
func halfDecode(g *amd64Gen, name, what string, lanes int, conv func(operand.Mem, reg.VecVirtual)) {
	block := 4 * lanes
	g.fn(name, "func(dst []float32, src []uint16)",
		fmt.Sprintf("%s widens the first len(dst)&^%d %s values of src into dst.", name, block-1, what))
	dst, src, n := g.ptr("dst"), g.ptr("src"), g.length("dst")
	g.halfLoop(name, block, 2, 4, n, src, dst, func() {
		for k := 0; k < 4; k++ {
			v := g.vec(lanes)
			conv(mem(src, 2*lanes*k), v)
			g.VMOVDQU32orU(v, mem(dst, 4*lanes*k), lanes)
		}
	})
}

// bf16: zero-extend and shift into the upper half.
func halfDecodeBF16(g *amd64Gen, sfx string, lanes int) {
	halfDecode(g, "decodeBF16"+sfx, "bfloat16", lanes, func(m operand.Mem, v reg.VecVirtual) {
		g.VPMOVZXWD(m, v)
		g.VPSLLD(operand.U8(16), v, v)
	})
}

func halfDecodeF16(g *amd64Gen, sfx string, lanes int) {
	halfDecode(g, "decodeF16"+sfx, "binary16", lanes, func(m operand.Mem, v reg.VecVirtual) {
		g.VCVTPH2PS(m, v)
	})
}

// VMOVDQU32orU stores v with VMOVDQU32 (AVX-512) or VMOVDQU (AVX2).
func (g *amd64Gen) VMOVDQU32orU(v reg.VecVirtual, m operand.Mem, lanes int) {
	if lanes == 16 {
		g.VMOVDQU32(v, m)
		return
	}
	g.VMOVDQU(v, m)
}

// broadcast loads the 32-bit constant v into every lane of a new register.
func (g *amd64Gen) broadcast(name string, v uint32, lanes int) reg.VecVirtual {
	r := g.vec(lanes)
	g.VPBROADCASTD(g.u32(name, v), r)
	return r
}

func halfEncodeBF16(g *amd64Gen, sfx string, lanes int) {
	name := "encodeBF16" + sfx
	block := 4 * lanes
	g.fn(name, "func(dst []uint16, src []float32)",
		fmt.Sprintf("%s rounds the first len(src)&^%d values of src to bfloat16 (as F32ToBF16).", name, block-1))
	dst, src, n := g.ptr("dst"), g.ptr("src"), g.length("src")
	one := g.broadcast("bf16one", 1, lanes)
	round := g.broadcast("bf16round", 0x7fff, lanes)
	abs := g.broadcast("absmask", 0x7fffffff, lanes)
	inf := g.broadcast("f32inf", 0x7f800000, lanes)
	quiet := g.broadcast("bf16quiet", 0x40, lanes)
	// r = (w + 0x7fff + (w>>16 & 1)) >> 16, or w>>16 | 0x40 where
	// |w| > Inf (NaN).
	rne := func(k int) reg.VecVirtual {
		w, hi, t := g.vec(lanes), g.vec(lanes), g.vec(lanes)
		if lanes == 16 {
			g.VMOVDQU32(mem(src, 4*lanes*k), w)
			g.VPSRLD(operand.U8(16), w, hi)
			g.VPANDD(one, hi, t)
			g.VPADDD(w, t, t)
			g.VPADDD(round, t, t)
			g.VPSRLD(operand.U8(16), t, t)
			a, m := g.vec(lanes), g.K()
			g.VPANDD(abs, w, a)
			g.VPCMPUD(operand.U8(6), inf, a, m) // a > Inf, unsigned
			g.VPORD(quiet, hi, m, t)            // merge-masked
			return t
		}
		g.VMOVDQU(mem(src, 4*lanes*k), w)
		g.VPSRLD(operand.U8(16), w, hi)
		g.VPAND(one, hi, t)
		g.VPADDD(w, t, t)
		g.VPADDD(round, t, t)
		g.VPSRLD(operand.U8(16), t, t)
		a, q := g.vec(lanes), g.vec(lanes)
		g.VPAND(abs, w, a)
		g.VPCMPGTD(inf, a, a) // signed is exact: both sides < 2³¹
		g.VPOR(quiet, hi, q)
		g.VPBLENDVB(a, q, t, t)
		return t
	}
	g.halfLoop(name, block, 4, 2, n, src, dst, func() {
		if lanes == 16 {
			for k := 0; k < 4; k++ {
				g.VPMOVDW(rne(k), mem(dst, 2*lanes*k))
			}
			return
		}
		for k := 0; k < 4; k += 2 {
			a, b := rne(k), rne(k+1)
			g.VPACKUSDW(b, a, a) // lanes ≤ 0xffff: no saturation
			g.VPERMQ(operand.U8(0xd8), a, a)
			g.VMOVDQU(a, mem(dst, 2*lanes*k))
		}
	})
}

func halfEncodeF16(g *amd64Gen, sfx string, lanes int) {
	name := "encodeF16" + sfx
	block := 4 * lanes
	g.fn(name, "func(dst []uint16, src []float32)",
		fmt.Sprintf("%s rounds the first len(src)&^%d values of src to binary16 (as F32ToF16).", name, block-1))
	dst, src, n := g.ptr("dst"), g.ptr("src"), g.length("src")
	g.halfLoop(name, block, 4, 2, n, src, dst, func() {
		for k := 0; k < 4; k++ {
			v := g.vec(lanes)
			g.VMOVUPS(mem(src, 4*lanes*k), v)
			g.VCVTPS2PH(operand.U8(0), v, mem(dst, 2*lanes*k)) // to nearest even
		}
	})
}

// NEON: 32 elements per iteration in eight 4-lane registers.
func halfARM64(g *arm64Gen) {
	// bf16 → f32: zip a zero halfword below every value.
	g.fn("decodeBF16NEON", "func(dst []float32, src []uint16)",
		"decodeBF16NEON widens the first len(dst)&^31 bfloat16 values of src into dst.")
	g.neonLoopHead("dst")
	g.i("VEOR V31.B16, V31.B16, V31.B16")
	g.label("decbf16")
	g.i("VLD1.P 64(R2), [V0.H8, V1.H8, V2.H8, V3.H8]")
	for k := 0; k < 4; k++ {
		g.i("VZIP1 V%d.H8, V31.H8, V%d.H8", k, 4+2*k)
		g.i("VZIP2 V%d.H8, V31.H8, V%d.H8", k, 5+2*k)
	}
	g.i("VST1.P [V4.S4, V5.S4, V6.S4, V7.S4], 64(R0)")
	g.i("VST1.P [V8.S4, V9.S4, V10.S4, V11.S4], 64(R0)")
	g.neonLoopTail("decbf16")

	// f32 → bf16 with the integer rounding of F32ToBF16.
	g.fn("encodeBF16NEON", "func(dst []uint16, src []float32)",
		"encodeBF16NEON rounds the first len(src)&^31 values of src to bfloat16 (as F32ToBF16).")
	g.neonLoopHead("src")
	g.dup32(1, "R4", 24)
	g.dup32(0x7fff, "R4", 25)
	g.dup32(0x7fffffff, "R4", 26)
	g.dup32(0x7f800000, "R4", 27)
	g.dup32(0x40, "R4", 28)
	g.label("encbf16")
	g.i("VLD1.P 64(R2), [V0.S4, V1.S4, V2.S4, V3.S4]")
	g.i("VLD1.P 64(R2), [V4.S4, V5.S4, V6.S4, V7.S4]")
	for k := 0; k < 8; k++ {
		// V8+k: hi; V16+k: result; V29, V30: scratch.
		g.i("VUSHR $16, V%d.S4, V%d.S4", k, 8+k)
		g.i("VAND V24.B16, V%d.B16, V29.B16", 8+k)
		g.i("VADD V%d.S4, V29.S4, V29.S4", k)
		g.i("VADD V25.S4, V29.S4, V29.S4")
		g.i("VUSHR $16, V29.S4, V%d.S4", 16+k)
		g.i("VAND V26.B16, V%d.B16, V29.B16", k)
		g.w(cmhi4s(29, 29, 27)) // |w| > Inf: NaN
		g.i("VORR V28.B16, V%d.B16, V30.B16", 8+k)
		g.i("VBIT V29.B16, V30.B16, V%d.B16", 16+k)
	}
	for k := 0; k < 8; k += 2 {
		g.i("VUZP1 V%d.H8, V%d.H8, V%d.H8", 17+k, 16+k, k/2)
	}
	g.i("VST1.P [V0.H8, V1.H8, V2.H8, V3.H8], 64(R0)")
	g.neonLoopTail("encbf16")

	g.fn("decodeF16NEON", "func(dst []float32, src []uint16)",
		"decodeF16NEON widens the first len(dst)&^31 binary16 values of src into dst (as F16ToF32).")
	g.neonLoopHead("dst")
	g.label("decf16")
	g.i("VLD1.P 64(R2), [V0.H8, V1.H8, V2.H8, V3.H8]")
	for k := 0; k < 4; k++ {
		g.w(fcvtl(4+2*k, k))
		g.w(fcvtl2(5+2*k, k))
	}
	g.i("VST1.P [V4.S4, V5.S4, V6.S4, V7.S4], 64(R0)")
	g.i("VST1.P [V8.S4, V9.S4, V10.S4, V11.S4], 64(R0)")
	g.neonLoopTail("decf16")

	g.fn("encodeF16NEON", "func(dst []uint16, src []float32)",
		"encodeF16NEON rounds the first len(src)&^31 values of src to binary16 (as F32ToF16).")
	g.neonLoopHead("src")
	g.label("encf16")
	g.i("VLD1.P 64(R2), [V0.S4, V1.S4, V2.S4, V3.S4]")
	g.i("VLD1.P 64(R2), [V4.S4, V5.S4, V6.S4, V7.S4]")
	for k := 0; k < 8; k += 2 {
		g.w(fcvtn(8+k/2, k))
		g.w(fcvtn2(8+k/2, k+1))
	}
	g.i("VST1.P [V8.H8, V9.H8, V10.H8, V11.H8], 64(R0)")
	g.neonLoopTail("encf16")
}

// neonLoopHead loads dst into R0, src into R2 and the block count
// len(count)/32 into R3, returning early when it is zero.
func (g *arm64Gen) neonLoopHead(count string) {
	g.i("MOVD dst_base+%d(FP), R0", g.cur.args["dst_base"])
	g.i("MOVD src_base+%d(FP), R2", g.cur.args["src_base"])
	g.i("MOVD %s", g.arg(count+"_len")+", R3")
	g.i("LSR $5, R3, R3")
	g.i("CBZ R3, done%d", len(g.funcs))
}

func (g *arm64Gen) neonLoopTail(loop string) {
	g.i("SUBS $1, R3, R3")
	g.i("BNE %s", loop)
	g.label(fmt.Sprintf("done%d", len(g.funcs)))
	g.i("RET")
}
