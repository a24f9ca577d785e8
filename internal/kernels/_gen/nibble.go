package main

import (
	"fmt"

	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// The nibble family: 4-bit blockwise encoding and table decoding (see
// internal/kernels/nibble for the contract).

const (
	encodeSig     = "func(dst []byte, absmax, src []float32, bs int, thr *[16]float32, code *[16]uint32, minDiv float32)"
	decodeSig     = "func(out []float32, packed []byte, scales []float32, code *[16]float32, bs int)"
	decodeBF16Sig = "func(out []uint16, packed []byte, scales []float32, code *[16]float32, bs int)"
)

func nibbleAMD64(g *amd64Gen) {
	nibbleEncodeAMD64(g, "encodeAVX512", 16)
	nibbleEncodeAMD64(g, "encodeAVX2", 8)
	for _, bf := range []bool{false, true} {
		nibbleDecodeAMD64(g, 16, bf)
		nibbleDecodeAMD64(g, 8, bf)
	}
	nibbleErrSumsAMD64(g, 16)
	nibbleErrSumsAMD64(g, 8)
}

// hmaxU32 leaves in lane 0 of an XMM register the unsigned maximum of the
// 32-bit lanes of v.
func (g *amd64Gen) hmaxU32(v reg.VecVirtual, lanes int) reg.VecVirtual {
	y := v
	if lanes == 16 {
		y = g.YMM()
		g.VEXTRACTI64X4(operand.U8(1), v, y)
		g.VPMAXUD(v.AsY(), y, y)
	}
	x, t := g.XMM(), g.XMM()
	if lanes == 16 { // EVEX: any of the 32 registers
		g.VEXTRACTI32X4(operand.U8(1), y, x)
	} else {
		g.VEXTRACTI128(operand.U8(1), y, x)
	}
	g.VPMAXUD(y.AsX(), x, x)
	g.VPSHUFD(operand.U8(0x4e), x, t)
	g.VPMAXUD(t, x, x)
	g.VPSHUFD(operand.U8(0xb1), x, t)
	g.VPMAXUD(t, x, x)
	return x
}

func nibbleEncodeAMD64(g *amd64Gen, name string, lanes int) {
	g.fn(name, encodeSig,
		fmt.Sprintf("%s encodes len(absmax) blocks of bs values (bs a multiple of 32) as Encode does.", name))
	dst, am, src := g.ptr("dst"), g.ptr("absmax"), g.ptr("src")
	nb, bs := g.length("absmax"), g.GP64()
	g.Load(g.Param("bs"), bs)
	thrP, codeP := g.GP64(), g.GP64()
	g.Load(g.Param("thr"), thrP)
	g.Load(g.Param("code"), codeP)
	absMask := g.broadcast("absmask", 0x7fffffff, lanes)
	one := g.XMM()
	g.VMOVSS(g.u32("f32one", 0x3f800000), one)
	minDiv := g.XMM()
	g.VMOVSS(g.paramMem("minDiv"), minDiv)
	// Registers for the code search.
	var thr, code, c8, c4, c2, c1, c3, t7 reg.VecVirtual
	var codeLo, codeHi, seven reg.VecVirtual
	if lanes == 16 {
		thr, code = g.ZMM(), g.ZMM()
		g.VMOVUPS(mem(thrP, 0), thr)
		g.VMOVDQU32(mem(codeP, 0), code)
		c8, c4, c2, c1, c3 = g.broadcast("u32c8", 8, 16), g.broadcast("u32c4", 4, 16), g.broadcast("u32c2", 2, 16),
			g.broadcast("u32c1", 1, 16), g.broadcast("u32c3", 3, 16)
		t7 = g.ZMM()
		g.VBROADCASTSS(mem(thrP, 28), t7)
	} else {
		codeLo, codeHi = g.YMM(), g.YMM()
		g.VMOVDQU(mem(codeP, 0), codeLo)
		g.VMOVDQU(mem(codeP, 32), codeHi)
		seven = g.broadcast("u32c7", 7, 8)
	}
	g.TESTQ(nb, nb)
	g.JZ(operand.LabelRef(name + "_done"))
	xp, n, d := g.GP64(), g.GP64(), g.GP64()
	g.Label(name + "_block")
	// absmax: the largest bits of |x| over the block.
	acc := g.vec(lanes)
	if lanes == 16 {
		g.VPXORD(acc, acc, acc)
	} else {
		g.VPXOR(acc, acc, acc)
	}
	g.MOVQ(src, xp)
	g.MOVQ(bs, n)
	g.SHRQ(operand.U8(uint8(log2(lanes))), n)
	g.Label(name + "_max")
	t := g.vec(lanes)
	if lanes == 16 {
		g.VPANDD(mem(xp, 0), absMask, t)
	} else {
		g.VPAND(mem(xp, 0), absMask, t)
	}
	g.VPMAXUD(t, acc, acc)
	g.ADDQ(operand.U8(uint8(4*lanes)), xp)
	g.DECQ(n)
	g.JNZ(operand.LabelRef(name + "_max"))
	mx := g.hmaxU32(acc, lanes)
	m := g.GP32()
	g.VMOVD(mx, m)
	g.MOVL(m, mem(am, 0))
	g.CMPL(m, operand.U32(0x7f800000))
	g.JAE(operand.LabelRef(name + "_next")) // Inf or NaN: the caller's
	// inv = f32(1 / max(absmax, minDiv)), broadcast.
	div, invx := g.XMM(), g.XMM()
	g.VMAXSS(minDiv, mx, div)
	g.VDIVSS(div, one, invx)
	inv := g.vec(lanes)
	g.VBROADCASTSS(invx, inv)
	g.MOVQ(src, xp)
	g.MOVQ(dst, d)
	g.MOVQ(bs, n)
	g.SHRQ(operand.U8(5), n)
	g.Label(name + "_group")
	if lanes == 16 {
		for h := 0; h < 2; h++ {
			s, c := g.ZMM(), g.ZMM()
			g.VMULPS(mem(xp, 64*h), inv, s)
			k := g.K()
			g.VCMPPS(operand.U8(0x1e), t7, s, k) // s > t[7]
			g.VMOVDQA32_Z(c8, k, c)
			for _, lv := range []struct{ off, add reg.VecVirtual }{{c3, c4}, {c1, c2}, {nil, c1}} {
				idx, tv := g.ZMM(), g.ZMM()
				if lv.off != nil {
					g.VPADDD(lv.off, c, idx)
				} else {
					idx = c
				}
				g.VPERMPS(thr, idx, tv)
				g.VCMPPS(operand.U8(0x1e), tv, s, k)
				g.VPADDD(lv.add, c, k, c)
			}
			cd := g.ZMM()
			g.VPERMD(code, c, cd)
			// Pairs of codes as 64-bit lanes: (q<<4 | q>>32) has the byte
			// c_even<<4 | c_odd in its low 8 bits.
			a, b := g.ZMM(), g.ZMM()
			g.VPSLLQ(operand.U8(4), cd, a)
			g.VPSRLQ(operand.U8(32), cd, b)
			g.VPORQ(a, b, a)
			g.VPMOVQB(a, mem(d, 8*h))
		}
	} else {
		for h := 0; h < 4; h++ {
			s, c := g.YMM(), g.YMM()
			g.VMULPS(mem(xp, 32*h), inv, s)
			g.VPXOR(c, c, c)
			mk := g.YMM()
			for i := 0; i < 15; i++ {
				tv := g.YMM()
				g.VBROADCASTSS(mem(thrP, 4*i), tv)
				g.VCMPPS(operand.U8(0x1e), tv, s, mk) // s > t[i]: all ones
				g.VPSUBD(mk, c, c)
			}
			lo, hi := g.YMM(), g.YMM()
			g.VPERMD(codeLo, c, lo)
			g.VPERMD(codeHi, c, hi)
			g.VPCMPGTD(seven, c, mk)
			g.VPBLENDVB(mk, hi, lo, lo)
			a, b := g.YMM(), g.YMM()
			g.VPSLLQ(operand.U8(4), lo, a)
			g.VPSRLQ(operand.U8(32), lo, b)
			g.VPOR(a, b, a)
			// The four bytes at qword starts to bytes 0–1 of lane 0 and
			// 2–3 of lane 1, then together.
			g.VPSHUFB(g.table("nibpack", []uint32{0x80800800, 0x80808080, 0x80808080, 0x80808080,
				0x08008080, 0x80808080, 0x80808080, 0x80808080}), a, a)
			x := g.XMM()
			g.VEXTRACTI128(operand.U8(1), a, x)
			g.VPOR(a.AsX(), x, x)
			g.VMOVD(x, mem(d, 4*h))
		}
	}
	g.ADDQ(operand.U8(128), xp)
	g.ADDQ(operand.U8(16), d)
	g.DECQ(n)
	g.JNZ(operand.LabelRef(name + "_group"))
	g.Label(name + "_next")
	g.LEAQ(idx(src, bs, 4, 0), src)
	g.MOVQ(bs, n)
	g.SHRQ(operand.U8(1), n)
	g.ADDQ(n, dst)
	g.ADDQ(operand.U8(4), am)
	g.DECQ(nb)
	g.JNZ(operand.LabelRef(name + "_block"))
	g.Label(name + "_done")
	g.VZEROUPPER()
	g.RET()
}

// lookup16 returns the entries of a 16-entry table of 32-bit values at the
// indices idx (0–15): one register on AVX-512; on AVX2 two halves, the high
// one chosen where idx > 7 (seven holds 7 in every lane).
func (g *amd64Gen) lookup16(tabs []reg.VecVirtual, idx, seven reg.VecVirtual, lanes int) reg.VecVirtual {
	v := g.vec(lanes)
	if lanes == 16 {
		g.VPERMD(tabs[0], idx, v)
		return v
	}
	h, m := g.YMM(), g.YMM()
	g.VPERMD(tabs[0], idx, v)
	g.VPERMD(tabs[1], idx, h)
	g.VPCMPGTD(seven, idx, m)
	g.VPBLENDVB(m, h, v, v)
	return v
}

// nibbleDecodeAMD64: per block the table code·scale (rounded to bfloat16
// with bf), then 16 bytes (32 values) at a time: the high and low nibbles
// look the table up and interleave.
func nibbleDecodeAMD64(g *amd64Gen, lanes int, bf bool) {
	sfx := map[int]string{16: "AVX512", 8: "AVX2"}[lanes]
	name, sig := "decode"+sfx, decodeSig
	if bf {
		name, sig = "decodeBF16"+sfx, decodeBF16Sig
	}
	g.fn(name, sig, fmt.Sprintf("%s decodes len(out)/bs whole blocks (bs a multiple of 32) as %s does.", name,
		map[bool]string{false: "Decode", true: "DecodeBF16"}[bf]))
	out, pk, sc := g.ptr("out"), g.ptr("packed"), g.ptr("scales")
	nb, bs := g.length("scales"), g.GP64()
	g.Load(g.Param("bs"), bs)
	codeP := g.GP64()
	g.Load(g.Param("code"), codeP)
	low4 := g.broadcast("u32c15", 15, lanes)
	var code, codeHi, il0, il1, seven reg.VecVirtual
	var one, round, abs, inf, quiet reg.VecVirtual
	if lanes == 16 {
		code = g.ZMM()
		g.VMOVUPS(mem(codeP, 0), code)
		il0, il1 = g.ZMM(), g.ZMM()
		g.VMOVDQU32(g.table("il0", []uint32{0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23}), il0)
		g.VMOVDQU32(g.table("il1", []uint32{8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31}), il1)
	} else {
		code, codeHi = g.YMM(), g.YMM()
		g.VMOVUPS(mem(codeP, 0), code)
		g.VMOVUPS(mem(codeP, 32), codeHi)
		seven = g.broadcast("u32c7", 7, 8)
	}
	if bf {
		one, round = g.broadcast("bf16one", 1, lanes), g.broadcast("bf16round", 0x7fff, lanes)
		abs, inf = g.broadcast("absmask", 0x7fffffff, lanes), g.broadcast("f32inf", 0x7f800000, lanes)
		quiet = g.broadcast("bf16quietlo", 0x40, lanes)
	}
	g.TESTQ(nb, nb)
	g.JZ(operand.LabelRef(name + "_done"))
	n := g.GP64()
	g.Label(name + "_block")
	sv := g.vec(lanes)
	g.VBROADCASTSS(mem(sc, 0), sv)
	// The block's table: one vector (AVX-512) or two halves (AVX2).
	tabs := []reg.VecVirtual{g.vec(lanes)}
	g.VMULPS(code, sv, tabs[0])
	if lanes == 8 {
		tabs = append(tabs, g.YMM())
		g.VMULPS(codeHi, sv, tabs[1])
	}
	if bf { // round each entry to bfloat16 bits in the low half
		for _, tb := range tabs {
			hi, r, a := g.vec(lanes), g.vec(lanes), g.vec(lanes)
			g.VPSRLD(operand.U8(16), tb, hi)
			if lanes == 16 {
				g.VPANDD(one, hi, r)
				g.VPADDD(tb, r, r)
				g.VPADDD(round, r, r)
				g.VPSRLD(operand.U8(16), r, r)
				k := g.K()
				g.VPANDD(abs, tb, a)
				g.VPCMPUD(operand.U8(6), inf, a, k)
				g.VPORD(quiet, hi, k, r)
			} else {
				g.VPAND(one, hi, r)
				g.VPADDD(tb, r, r)
				g.VPADDD(round, r, r)
				g.VPSRLD(operand.U8(16), r, r)
				q := g.YMM()
				g.VPAND(abs, tb, a)
				g.VPCMPGTD(inf, a, a)
				g.VPOR(quiet, hi, q)
				g.VPBLENDVB(a, q, r, r)
			}
			if lanes == 16 { // the table now holds bf16 bits
				g.VMOVDQA32(r, tb)
			} else {
				g.VMOVDQA(r, tb)
			}
		}
	}
	look := func(idx reg.VecVirtual) reg.VecVirtual { return g.lookup16(tabs, idx, seven, lanes) }
	g.MOVQ(bs, n)
	g.SHRQ(operand.U8(5), n)
	g.Label(name + "_group")
	if lanes == 16 {
		b, hi, lo := g.ZMM(), g.ZMM(), g.ZMM()
		g.VPMOVZXBD(mem(pk, 0), b)
		g.VPSRLD(operand.U8(4), b, hi)
		g.VPANDD(low4, b, lo)
		e, o := look(hi), look(lo)
		if bf {
			g.VPSLLD(operand.U8(16), o, o)
			g.VPORD(o, e, e) // (even, odd) pairs of bfloat16 in element order
			g.VMOVDQU32(e, mem(out, 0))
		} else {
			r0, r1 := g.ZMM(), g.ZMM()
			g.VMOVDQA32(il0, r0)
			g.VPERMI2PS(o, e, r0)
			g.VMOVDQA32(il1, r1)
			g.VPERMI2PS(o, e, r1)
			g.VMOVUPS(r0, mem(out, 0))
			g.VMOVUPS(r1, mem(out, 64))
		}
	} else {
		for h := 0; h < 2; h++ {
			b, hi, lo := g.YMM(), g.YMM(), g.YMM()
			g.VPMOVZXBD(mem(pk, 8*h), b)
			g.VPSRLD(operand.U8(4), b, hi)
			g.VPAND(low4, b, lo)
			e, o := look(hi), look(lo)
			if bf {
				g.VPSLLD(operand.U8(16), o, o)
				g.VPOR(o, e, e)
				g.VMOVDQU(e, mem(out, 32*h))
				continue
			}
			u0, u1, r0, r1 := g.YMM(), g.YMM(), g.YMM(), g.YMM()
			g.VUNPCKLPS(o, e, u0) // e0 o0 e1 o1 | e4 o4 e5 o5
			g.VUNPCKHPS(o, e, u1) // e2 o2 e3 o3 | e6 o6 e7 o7
			g.VPERM2F128(operand.U8(0x20), u1, u0, r0)
			g.VPERM2F128(operand.U8(0x31), u1, u0, r1)
			g.VMOVUPS(r0, mem(out, 64*h))
			g.VMOVUPS(r1, mem(out, 64*h+32))
		}
	}
	g.ADDQ(operand.U8(16), pk)
	if bf {
		g.ADDQ(operand.U8(64), out)
	} else {
		g.ADDQ(operand.U8(128), out)
	}
	g.DECQ(n)
	g.JNZ(operand.LabelRef(name + "_group"))
	g.ADDQ(operand.U8(4), sc)
	g.DECQ(nb)
	g.JNZ(operand.LabelRef(name + "_block"))
	g.Label(name + "_done")
	g.VZEROUPPER()
	g.RET()
}

// NEON. Encode keeps the 15 thresholds in V16–V30 and the rank-to-code
// bytes in V31; counts thresholds below each scaled value by compare and
// subtract, narrows the counts to bytes, maps them with TBL and packs pairs.
func nibbleARM64(g *arm64Gen) {
	g.fn("encodeNEON", encodeSig, "encodeNEON encodes len(absmax) blocks of bs values (bs a multiple of 32) as Encode does.")
	g.i("MOVD %s, R0", g.arg("dst_base"))
	g.i("MOVD %s, R1", g.arg("absmax_base"))
	g.i("MOVD %s, R2", g.arg("src_base"))
	g.i("MOVD %s, R3", g.arg("absmax_len"))
	g.i("MOVD %s, R4", g.arg("bs"))
	g.i("MOVD %s, R5", g.arg("thr"))
	g.i("MOVD %s, R6", g.arg("code"))
	g.i("FMOVS %s, F14", g.arg("minDiv"))
	g.i("VLD1 (R5), [V0.S4, V1.S4, V2.S4, V3.S4]")
	for i := 0; i < 15; i++ {
		g.i("VDUP V%d.S[%d], V%d.S4", i/4, i%4, 16+i)
	}
	g.i("VLD1 (R6), [V0.S4, V1.S4, V2.S4, V3.S4]")
	g.i("VUZP1 V1.H8, V0.H8, V4.H8")
	g.i("VUZP1 V3.H8, V2.H8, V5.H8")
	g.i("VUZP1 V5.B16, V4.B16, V31.B16")
	g.dup32(0x7fffffff, "R7", 15)
	g.i("MOVW $0x7f800000, R9")
	g.i("CBZ R3, enc_done")
	g.label("enc_block")
	// absmax bits
	g.i("VEOR V8.B16, V8.B16, V8.B16")
	g.i("MOVD R2, R10")
	g.i("LSR $4, R4, R11")
	g.label("enc_max")
	g.i("VLD1.P 64(R10), [V0.S4, V1.S4, V2.S4, V3.S4]")
	for v := 0; v < 4; v++ {
		g.i("VAND V15.B16, V%d.B16, V%d.B16", v, v)
		g.i("VUMAX V%d.S4, V8.S4, V8.S4", v)
	}
	g.i("SUBS $1, R11, R11")
	g.i("BNE enc_max")
	g.w(umaxv4s(9, 8))
	g.i("FMOVS F9, R7")
	g.i("MOVW R7, (R1)")
	g.i("CMPW R9, R7")
	g.i("BHS enc_next") // Inf or NaN: the caller's
	g.i("FMAXS F14, F9, F9")
	g.i("FMOVS $1.0, F12")
	g.i("FDIVS F9, F12, F10")
	g.i("VDUP V10.S[0], V13.S4")
	g.i("MOVD R2, R10")
	g.i("LSR $5, R4, R11")
	g.label("enc_group")
	for half := 0; half < 2; half++ {
		g.i("VLD1.P 64(R10), [V0.S4, V1.S4, V2.S4, V3.S4]")
		for v := 0; v < 4; v++ {
			g.w(fmul4s(v, v, 13))
			g.i("VEOR V%d.B16, V%d.B16, V%d.B16", 4+v, 4+v, 4+v)
		}
		for t := 0; t < 15; t++ {
			for v := 0; v < 4; v++ {
				g.w(fcmgt4s(8, v, 16+t))
				g.i("VSUB V8.S4, V%d.S4, V%d.S4", 4+v, 4+v)
			}
		}
		g.i("VUZP1 V5.H8, V4.H8, V9.H8")
		g.i("VUZP1 V7.H8, V6.H8, V10.H8")
		g.i("VUZP1 V10.B16, V9.B16, V11.B16")
		g.i("VTBL V11.B16, [V31.B16], V%d.B16", 12-half) // codes of the halves: V12, V11
	}
	// even elements' codes in the high nibble
	g.i("VUZP1 V11.B16, V12.B16, V9.B16")
	g.i("VUZP2 V11.B16, V12.B16, V10.B16")
	g.i("VSHL $4, V9.B16, V9.B16")
	g.i("VORR V10.B16, V9.B16, V9.B16")
	g.i("VST1.P [V9.B16], 16(R0)")
	g.i("SUBS $1, R11, R11")
	g.i("BNE enc_group")
	g.i("B enc_adv")
	g.label("enc_next") // a skipped block: dst moves on by bs/2
	g.i("ADD R4>>1, R0, R0")
	g.label("enc_adv")
	g.i("ADD R4<<2, R2, R2")
	g.i("ADD $4, R1, R1")
	g.i("SUBS $1, R3, R3")
	g.i("BNE enc_block")
	g.label("enc_done")
	g.i("RET")

	nibbleDecodeARM64(g, false)
	nibbleDecodeARM64(g, true)
}

// nibbleDecodeARM64 looks values up with TBL: nibbles are split, zipped
// into element order, replicated over the bytes of a value and offset into
// the block's table (V24–V27: 16 floats; or V24–V25: 16 bfloat16).
func nibbleDecodeARM64(g *arm64Gen, bf bool) {
	name, sig, lab := "decodeNEON", decodeSig, "dec"
	if bf {
		name, sig, lab = "decodeBF16NEON", decodeBF16Sig, "decbf"
	}
	g.fn(name, sig, fmt.Sprintf("%s decodes len(out)/bs whole blocks (bs a multiple of 32) as %s does.", name,
		map[bool]string{false: "Decode", true: "DecodeBF16"}[bf]))
	g.i("MOVD %s, R0", g.arg("out_base"))
	g.i("MOVD %s, R1", g.arg("packed_base"))
	g.i("MOVD %s, R2", g.arg("scales_base"))
	g.i("MOVD %s, R3", g.arg("scales_len"))
	g.i("MOVD %s, R4", g.arg("bs"))
	g.i("MOVD %s, R5", g.arg("code"))
	g.i("VLD1 (R5), [V16.S4, V17.S4, V18.S4, V19.S4]")
	// V14: low-nibble mask; V15: byte offsets within a value; V28–V31:
	// the replication patterns of the four output vectors of 16 nibbles
	// (two for bfloat16).
	g.i("VMOVI $15, V14.B16")
	size := 4
	if bf {
		size = 2
	}
	var off, rep [4][4]uint32
	for q := 0; q < 4; q++ {
		for b := 0; b < 16; b++ {
			e := q*(16/size) + b/size // element of the 16-nibble vector
			rep[q][b/4] |= uint32(e) << (8 * (b % 4))
			off[0][b/4] |= uint32(b%size) << (8 * (b % 4))
		}
	}
	g.glob(lab+"off", off[0][:])
	g.i("MOVD $%soff<>(SB), R6", lab)
	g.i("VLD1 (R6), [V15.B16]")
	var reps []uint32
	for q := 0; q < 4; q++ {
		reps = append(reps, rep[q][:]...)
	}
	g.glob(lab+"rep", reps)
	g.i("MOVD $%srep<>(SB), R6", lab)
	g.i("VLD1 (R6), [V28.B16, V29.B16, V30.B16, V31.B16]")
	if bf {
		g.dup32(1, "R7", 20)
		g.dup32(0x7fff, "R7", 21)
		g.dup32(0x7fffffff, "R7", 22)
		g.dup32(0x7f800000, "R7", 23)
		g.dup32(0x40, "R7", 13)
	}
	g.i("CBZ R3, %s_done", lab)
	g.label(lab + "_block")
	g.i("FMOVS.P 4(R2), F12")
	for q := 0; q < 4; q++ {
		g.w(fmulElem4s(24+q, 16+q, 12, 0))
	}
	if bf { // round the table to bfloat16 and narrow it to V24–V25
		for q := 0; q < 4; q++ {
			t := 24 + q
			g.i("VUSHR $16, V%d.S4, V8.S4", t)
			g.i("VAND V20.B16, V8.B16, V9.B16")
			g.i("VADD V%d.S4, V9.S4, V9.S4", t)
			g.i("VADD V21.S4, V9.S4, V9.S4")
			g.i("VUSHR $16, V9.S4, V9.S4")
			g.i("VAND V22.B16, V%d.B16, V10.B16", t)
			g.w(cmhi4s(10, 10, 23))
			g.i("VORR V13.B16, V8.B16, V11.B16")
			g.i("VBIT V10.B16, V11.B16, V9.B16")
			g.i("VMOV V9.B16, V%d.B16", t)
		}
		g.i("VUZP1 V25.H8, V24.H8, V24.H8")
		g.i("VUZP1 V27.H8, V26.H8, V25.H8")
	}
	g.i("LSR $5, R4, R8")
	g.label(lab + "_group")
	g.i("VLD1.P 16(R1), [V0.B16]")
	g.i("VUSHR $4, V0.B16, V1.B16")
	g.i("VAND V14.B16, V0.B16, V2.B16")
	g.i("VZIP1 V2.B16, V1.B16, V3.B16") // nibbles 0–15 in element order
	g.i("VZIP2 V2.B16, V1.B16, V4.B16") // 16–31
	nout := 4
	shift := 2
	table := "[V24.B16, V25.B16, V26.B16, V27.B16]"
	if bf {
		nout, shift, table = 2, 1, "[V24.B16, V25.B16]"
	}
	for _, nv := range []int{3, 4} {
		for q := 0; q < nout; q++ {
			o := 5 + q
			g.i("VTBL V%d.B16, [V%d.B16], V%d.B16", 28+q, nv, o)
			g.i("VSHL $%d, V%d.B16, V%d.B16", shift, o, o)
			g.i("VADD V15.B16, V%d.B16, V%d.B16", o, o)
			g.i("VTBL V%d.B16, %s, V%d.B16", o, table, o)
		}
		g.i("VST1.P [%s], %d(R0)", regsFrom(5, nout), 16*nout)
	}
	g.i("SUBS $1, R8, R8")
	g.i("BNE %s_group", lab)
	g.i("SUBS $1, R3, R3")
	g.i("BNE %s_block", lab)
	g.label(lab + "_done")
	g.i("RET")
}

const errSumsSig = "func(x []float32, packed []byte, scales []float32, code *[16]float32, bs, round int, acc *[32]float64) uint32"

// roundTable rounds the table vectors in place: round 1 bfloat16 (integer
// rounding, NaN quieted), 2 binary16 (a conversion there and back).
func (g *amd64Gen) roundTable(name string, round reg.GPVirtual, tabs []reg.VecVirtual, lanes int) {
	g.CMPQ(round, operand.U8(1))
	g.JB(operand.LabelRef(name + "_rounded"))
	g.JA(operand.LabelRef(name + "_f16"))
	for _, tb := range tabs {
		hi, r, a := g.vec(lanes), g.vec(lanes), g.vec(lanes)
		one, rnd := g.broadcast("bf16one", 1, lanes), g.broadcast("bf16round", 0x7fff, lanes)
		abs, inf := g.broadcast("absmask", 0x7fffffff, lanes), g.broadcast("f32inf", 0x7f800000, lanes)
		quiet, lo := g.broadcast("bf16quiethi", 0x00400000, lanes), g.broadcast("lowhalf", 0xffff, lanes)
		g.VPSRLD(operand.U8(16), tb, hi)
		if lanes == 16 {
			g.VPANDD(one, hi, r)
			g.VPADDD(tb, r, r)
			g.VPADDD(rnd, r, r)
			k := g.K()
			g.VPANDD(abs, tb, a)
			g.VPCMPUD(operand.U8(6), inf, a, k)
			g.VPORD(quiet, tb, k, r) // NaN: the quiet bit instead of rounding
			g.VPANDND(r, lo, tb)     // clear the low half
		} else {
			q := g.YMM()
			g.VPAND(one, hi, r)
			g.VPADDD(tb, r, r)
			g.VPADDD(rnd, r, r)
			g.VPAND(abs, tb, a)
			g.VPCMPGTD(inf, a, a)
			g.VPOR(quiet, tb, q)
			g.VPBLENDVB(a, q, r, r)
			g.VPANDN(r, lo, tb)
		}
	}
	g.JMP(operand.LabelRef(name + "_rounded"))
	g.Label(name + "_f16")
	for _, tb := range tabs {
		var h reg.VecVirtual = g.XMM()
		if lanes == 16 {
			h = g.YMM()
		}
		g.VCVTPS2PH(operand.U8(0), tb, h)
		g.VCVTPH2PS(h, tb)
	}
	g.Label(name + "_rounded")
}

// nibbleErrSumsAMD64 sums the squared differences of whole groups of 32 in
// lanes as errSumsGo does: evens in lanes 0–15, odds in 16–31, the float32
// lane sums of each block added into float64 sums at acc.
func nibbleErrSumsAMD64(g *amd64Gen, lanes int) {
	name := "errSums" + map[int]string{16: "AVX512", 8: "AVX2"}[lanes]
	g.fn(name, errSumsSig,
		fmt.Sprintf("%s adds the error sums of len(x)/bs whole blocks (bs a multiple of 32) to acc as", name),
		"ErrSums does and returns the largest |difference| bits.")
	x, pk, sc := g.ptr("x"), g.ptr("packed"), g.ptr("scales")
	nb, bs, round := g.length("scales"), g.GP64(), g.GP64()
	g.Load(g.Param("bs"), bs)
	g.Load(g.Param("round"), round)
	codeP, accP := g.GP64(), g.GP64()
	g.Load(g.Param("code"), codeP)
	g.Load(g.Param("acc"), accP)
	absMask := g.broadcast("absmask", 0x7fffffff, lanes)
	low4 := g.broadcast("u32c15", 15, lanes)
	mx := g.vec(lanes)
	if lanes == 16 {
		g.VPXORD(mx, mx, mx)
	} else {
		g.VPXOR(mx, mx, mx)
	}
	var acc64 []reg.VecVirtual
	var evenIdx, oddIdx, seven reg.VecVirtual
	if lanes == 16 {
		for i := 0; i < 4; i++ {
			acc64 = append(acc64, g.ZMM())
			g.VMOVUPD(mem(accP, 64*i), acc64[i])
		}
		evenIdx, oddIdx = g.ZMM(), g.ZMM()
		var ev, od []uint32
		for i := uint32(0); i < 16; i++ {
			ev, od = append(ev, 2*i), append(od, 2*i+1)
		}
		g.VMOVDQU32(g.table("evenidx", ev), evenIdx)
		g.VMOVDQU32(g.table("oddidx", od), oddIdx)
	} else {
		seven = g.broadcast("u32c7", 7, 8)
	}
	g.TESTQ(nb, nb)
	g.JZ(operand.LabelRef(name + "_done"))
	n := g.GP64()
	g.Label(name + "_block")
	sv := g.vec(lanes)
	g.VBROADCASTSS(mem(sc, 0), sv)
	tabs := []reg.VecVirtual{g.vec(lanes)}
	g.VMULPS(mem(codeP, 0), sv, tabs[0])
	if lanes == 8 {
		tabs = append(tabs, g.YMM())
		g.VMULPS(mem(codeP, 32), sv, tabs[1])
	}
	g.roundTable(name, round, tabs, lanes)
	look := func(idx reg.VecVirtual) reg.VecVirtual { return g.lookup16(tabs, idx, seven, lanes) }
	// float32 lane sums: AVX-512 evens, odds; AVX2 evens 0–7, 8–15, odds
	// 0–7, 8–15.
	nacc := 32 / lanes
	sums := make([]reg.VecVirtual, nacc)
	for i := range sums {
		sums[i] = g.vec(lanes)
		g.VXORPS(sums[i], sums[i], sums[i])
	}
	accum := func(s reg.VecVirtual, xv, tv reg.VecVirtual) {
		d, a := g.vec(lanes), g.vec(lanes)
		g.VSUBPS(tv, xv, d)
		g.VMULPS(d, d, a) // rounded, then added: no fusion
		g.VADDPS(a, s, s)
		if lanes == 16 {
			g.VPANDD(absMask, d, d)
		} else {
			g.VPAND(absMask, d, d)
		}
		g.VPMAXUD(d, mx, mx)
	}
	g.MOVQ(bs, n)
	g.SHRQ(operand.U8(5), n)
	g.Label(name + "_group")
	if lanes == 16 {
		b, hi, lo := g.ZMM(), g.ZMM(), g.ZMM()
		g.VPMOVZXBD(mem(pk, 0), b)
		g.VPSRLD(operand.U8(4), b, hi)
		g.VPANDD(low4, b, lo)
		x0, ev, od := g.ZMM(), g.ZMM(), g.ZMM()
		g.VMOVUPS(mem(x, 0), x0)
		g.VMOVDQA32(evenIdx, ev)
		g.VPERMI2PS(mem(x, 64), x0, ev)
		g.VMOVDQA32(oddIdx, od)
		g.VPERMI2PS(mem(x, 64), x0, od)
		accum(sums[0], ev, look(hi))
		accum(sums[1], od, look(lo))
	} else {
		for h := 0; h < 2; h++ {
			b, hi, lo := g.YMM(), g.YMM(), g.YMM()
			g.VPMOVZXBD(mem(pk, 8*h), b)
			g.VPSRLD(operand.U8(4), b, hi)
			g.VPAND(low4, b, lo)
			x0, x1, ev, od := g.YMM(), g.YMM(), g.YMM(), g.YMM()
			g.VMOVUPS(mem(x, 64*h), x0)
			g.VMOVUPS(mem(x, 64*h+32), x1)
			g.VSHUFPS(operand.U8(0x88), x1, x0, ev)
			g.VPERMPD(operand.U8(0xd8), ev, ev)
			g.VSHUFPS(operand.U8(0xdd), x1, x0, od)
			g.VPERMPD(operand.U8(0xd8), od, od)
			accum(sums[h], ev, look(hi))
			accum(sums[2+h], od, look(lo))
		}
	}
	g.ADDQ(operand.U8(16), pk)
	g.ADDQ(operand.U8(128), x)
	g.DECQ(n)
	g.JNZ(operand.LabelRef(name + "_group"))
	// The block's lane sums into the float64 sums, in lane order.
	for i, s := range sums {
		for half := 0; half < 2; half++ {
			if lanes == 16 {
				var lo reg.Register = s.AsY()
				if half == 1 {
					y := g.YMM()
					g.VEXTRACTF64X4(operand.U8(1), s, y)
					lo = y
				}
				d := g.ZMM()
				g.VCVTPS2PD(lo, d)
				g.VADDPD(d, acc64[2*i+half], acc64[2*i+half])
				continue
			}
			var xl reg.Register = s.AsX()
			if half == 1 {
				x := g.XMM()
				g.VEXTRACTF128(operand.U8(1), s, x)
				xl = x
			}
			d := g.YMM()
			g.VCVTPS2PD(xl, d)
			g.VADDPD(mem(accP, 32*(2*i+half)), d, d)
			g.VMOVUPD(d, mem(accP, 32*(2*i+half)))
		}
	}
	g.ADDQ(operand.U8(4), sc)
	g.DECQ(nb)
	g.JNZ(operand.LabelRef(name + "_block"))
	g.Label(name + "_done")
	if lanes == 16 {
		for i := 0; i < 4; i++ {
			g.VMOVUPD(acc64[i], mem(accP, 64*i))
		}
	}
	m := g.hmaxU32(mx, lanes)
	r := g.GP32()
	g.VMOVD(m, r)
	g.Store(r, g.ReturnIndex(0))
	g.VZEROUPPER()
	g.RET()
}
