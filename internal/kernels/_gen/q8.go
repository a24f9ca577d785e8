package main

import (
	"fmt"

	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// The q8 family: llama.cpp's Q8_0 blocks (32 values: an F16 scale and 32
// int8), as internal/kernels/q8 defines them.

func q8AMD64(g *amd64Gen) {
	q8QuantizeAMD64(g, 16)
	q8QuantizeAMD64(g, 8)
}

func q8QuantizeAMD64(g *amd64Gen, lanes int) {
	name := "quantize" + map[int]string{16: "AVX512", 8: "AVX2"}[lanes]
	g.fn(name, "func(dst []byte, src []float32) int",
		fmt.Sprintf("%s encodes the len(src)/32 blocks of src as Quantize does; it returns the index of", name),
		"the first block holding Inf or NaN, or -1.")
	dst, src, nb := g.ptr("dst"), g.ptr("src"), g.length("src")
	g.SHRQ(operand.U8(5), nb)
	nv := 32 / lanes
	absMask := g.broadcast("absmask", 0x7fffffff, lanes)
	signMask := g.broadcast("signmask", 0x80000000, lanes)
	half := g.broadcast("f32half", 0x3f000000, lanes)
	one := g.broadcast("f32onev", 0x3f800000, lanes)
	c127, onex := g.XMM(), g.XMM()
	g.VMOVSS(g.u32("f32c127", 0x42fe0000), c127)
	g.VMOVSS(g.u32("f32one", 0x3f800000), onex)
	i := g.GP64()
	g.XORQ(i, i)
	ret := g.GP64()
	g.Label(name + "_block")
	g.CMPQ(i, nb)
	g.JAE(operand.LabelRef(name + "_ok"))
	x := make([]reg.VecVirtual, nv)
	acc := g.vec(lanes)
	for k := range x {
		x[k] = g.vec(lanes)
		g.VMOVUPS(mem(src, 4*lanes*k), x[k])
		t := g.vec(lanes)
		if lanes == 16 {
			g.VPANDD(absMask, x[k], t)
		} else {
			g.VPAND(absMask, x[k], t)
		}
		if k == 0 {
			acc = t
		} else {
			g.VPMAXUD(t, acc, acc)
		}
	}
	mx := g.hmaxU32(acc, lanes)
	m := g.GP32()
	g.VMOVD(mx, m)
	g.CMPL(m, operand.U32(0x7f800000))
	g.JAE(operand.LabelRef(name + "_bad"))
	// d = amax/127, stored as F16; id = 1/d (0 when d = 0).
	d, id := g.XMM(), g.XMM()
	g.VDIVSS(c127, mx, d)
	h, hw := g.XMM(), g.GP32()
	g.VCVTPS2PH(operand.U8(0), d, h)
	g.VMOVD(h, hw)
	g.MOVW(hw.As16(), mem(dst, 0))
	g.VXORPS(id, id, id)
	dz := g.GP32()
	g.VMOVD(d, dz)
	g.TESTL(dz, dz)
	g.JZ(operand.LabelRef(name + "_scaled"))
	g.VDIVSS(d, onex, id)
	g.Label(name + "_scaled")
	idb := g.GP32()
	g.VMOVD(id, idb)
	g.CMPL(idb, operand.U32(0x7f800000)) // 1/d overflowed: all-zero quants
	g.JAE(operand.LabelRef(name + "_zero"))
	iv := g.vec(lanes)
	g.VBROADCASTSS(id, iv)
	q := make([]reg.VecVirtual, nv)
	for k := range x {
		p, a, t, s := g.vec(lanes), g.vec(lanes), g.vec(lanes), g.vec(lanes)
		g.VMULPS(iv, x[k], p)
		// roundf: trunc(|p|) + (|p| − trunc(|p|) ≥ ½), with p's sign.
		if lanes == 16 {
			g.VPANDD(absMask, p, a)
			g.VRNDSCALEPS(operand.U8(3), a, t)
			g.VSUBPS(t, a, a)
			k1 := g.K()
			g.VCMPPS(operand.U8(0x1d), half, a, k1)
			g.VADDPS(one, t, k1, t)
			g.VPANDD(signMask, p, s)
			g.VPORD(s, t, t)
		} else {
			g.VPAND(absMask, p, a)
			g.VROUNDPS(operand.U8(3), a, t)
			g.VSUBPS(t, a, a)
			g.VCMPPS(operand.U8(0x1d), half, a, a)
			g.VANDPS(one, a, a)
			g.VADDPS(a, t, t)
			g.VPAND(signMask, p, s)
			g.VPOR(s, t, t)
		}
		q[k] = g.vec(lanes)
		g.VCVTTPS2DQ(t, q[k])
	}
	if lanes == 16 {
		g.VPMOVDB(q[0], mem(dst, 2))
		g.VPMOVDB(q[1], mem(dst, 18))
	} else {
		// int32 → int16 → int8 (no saturation: |q| ≤ 127), then undo the
		// 128-bit lane interleaving.
		g.VPACKSSDW(q[1], q[0], q[0])
		g.VPACKSSDW(q[3], q[2], q[2])
		g.VPACKSSWB(q[2], q[0], q[0])
		g.VPERMD(q[0], g.vload(g.table("q8perm", []uint32{0, 4, 1, 5, 2, 6, 3, 7})), q[0])
		g.VMOVDQU(q[0], mem(dst, 2))
	}
	g.JMP(operand.LabelRef(name + "_next"))
	g.Label(name + "_zero")
	z := g.YMM()
	g.VPXOR(z, z, z)
	g.VMOVDQU(z, mem(dst, 2))
	g.Label(name + "_next")
	g.ADDQ(operand.U8(34), dst)
	g.ADDQ(operand.U8(128), src)
	g.INCQ(i)
	g.JMP(operand.LabelRef(name + "_block"))
	g.Label(name + "_bad")
	g.MOVQ(i, ret)
	g.JMP(operand.LabelRef(name + "_ret"))
	g.Label(name + "_ok")
	g.MOVQ(operand.I32(-1), ret)
	g.Label(name + "_ret")
	g.Store(ret, g.ReturnIndex(0))
	g.VZEROUPPER()
	g.RET()
}

// vload loads a 32-byte table into a new YMM register.
func (g *amd64Gen) vload(m operand.Mem) reg.VecVirtual {
	v := g.YMM()
	g.VMOVDQU(m, v)
	return v
}
