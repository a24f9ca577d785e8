package main

import (
	"fmt"
	"math"

	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// The vec family: float32 dot product, axpy and exp, and the 16/32-bit
// reductions of the format code (largest magnitude, binary16 infinity
// check). The kernels cover whole vectors; the Go side does the tail with
// the same arithmetic (see internal/kernels/vec).

func vecAMD64(g *amd64Gen) {
	for _, w := range []struct {
		sfx   string
		lanes int
	}{{"AVX512", 16}, {"AVX2", 8}} {
		vecDot(g, w.sfx, w.lanes)
		vecAxpy(g, w.sfx, w.lanes)
		vecExp(g, w.sfx, w.lanes)
		vecReduce(g, "maxAbs16"+w.sfx, 2, w.lanes, "the largest h&0x7fff", 0x7fff, 0, true)
		vecReduce(g, "minInf16"+w.sfx, 2, w.lanes, "the smallest (h&0x7fff)^0x7c00 (0 where h is ±Inf)", 0x7fff, 0x7c00, false)
		vecReduce(g, "maxAbs32"+w.sfx, 4, w.lanes, "the largest u&0x7fffffff", 0x7fffffff, 0, true)
		vecBlocks(g, "maxAbs16Blocks"+w.sfx, 2, w.lanes)
		vecBlocks(g, "maxAbs32Blocks"+w.sfx, 4, w.lanes)
		vecRowsAMD64(g, w.sfx, w.lanes)
	}
}

// vecDot: 16 partial sums, lane l taking the elements i ≡ l (mod 16) by
// fused multiply-adds: one register on AVX-512, two on AVX2.
func vecDot(g *amd64Gen, sfx string, lanes int) {
	name := "dot" + sfx
	g.fn(name, "func(a, b []float32, s *[16]float32)",
		fmt.Sprintf("%s adds a[i]·b[i] to s[i%%16] for i < len(a)&^15, by fused multiply-adds in order.", name))
	a, b, n := g.ptr("a"), g.ptr("b"), g.length("a")
	s := g.GP64()
	g.Load(g.Param("s"), s)
	nv := 16 / lanes
	acc := make([]reg.VecVirtual, nv)
	for j := range acc {
		acc[j] = g.vec(lanes)
		g.VMOVUPS(mem(s, 4*lanes*j), acc[j])
	}
	g.SHRQ(operand.U8(4), n)
	g.JZ(operand.LabelRef(name + "_done"))
	g.Label(name + "_loop")
	for j := range acc {
		x := g.vec(lanes)
		g.VMOVUPS(mem(a, 4*lanes*j), x)
		g.VFMADD231PS(mem(b, 4*lanes*j), x, acc[j])
	}
	g.ADDQ(operand.U8(64), a)
	g.ADDQ(operand.U8(64), b)
	g.DECQ(n)
	g.JNZ(operand.LabelRef(name + "_loop"))
	g.Label(name + "_done")
	for j := range acc {
		g.VMOVUPS(acc[j], mem(s, 4*lanes*j))
	}
	g.VZEROUPPER()
	g.RET()
}

// vecAxpy: y[i] = fma(alpha, x[i], y[i]).
func vecAxpy(g *amd64Gen, sfx string, lanes int) {
	name := "axpy" + sfx
	g.fn(name, "func(y, x []float32, alpha float32)",
		fmt.Sprintf("%s sets y[i] = fma(alpha, x[i], y[i]) for i < len(y)&^%d.", name, lanes-1))
	y, x, n := g.ptr("y"), g.ptr("x"), g.length("y")
	al := g.vec(lanes)
	g.VBROADCASTSS(g.paramMem("alpha"), al)
	g.SHRQ(operand.U8(uint8(log2(lanes))), n)
	g.JZ(operand.LabelRef(name + "_done"))
	g.Label(name + "_loop")
	v := g.vec(lanes)
	g.VMOVUPS(mem(y, 0), v)
	g.VFMADD231PS(mem(x, 0), al, v)
	g.VMOVUPS(v, mem(y, 0))
	g.ADDQ(operand.U8(uint8(4*lanes)), y)
	g.ADDQ(operand.U8(uint8(4*lanes)), x)
	g.DECQ(n)
	g.JNZ(operand.LabelRef(name + "_loop"))
	g.Label(name + "_done")
	g.VZEROUPPER()
	g.RET()
}

// The exp constants (Cephes expf; see internal/kernels/vec).
var expConsts = []struct {
	name string
	v    float32
}{
	{"explo", -87.33654}, {"exphi", 88.0}, {"explog2e", 1.44269504088896341},
	{"expnc1", -0.693359375}, {"expnc2", 2.12194440e-4},
	{"expp0", 1.9875691500e-4}, {"expp1", 1.3981999507e-3}, {"expp2", 8.3334519073e-3},
	{"expp3", 4.1665795894e-2}, {"expp4", 1.6666665459e-1}, {"expp5", 5.0000001201e-1},
	{"expone", 1}, {"expinf", float32(math.Inf(1))},
}

// vecExp replaces x[i] by e^x[i] for whole vectors: n = round(x·log2e),
// r = x − n·ln2 (two fused steps), a degree-7 polynomial by fused
// multiply-adds, times 2ⁿ; 0 below the range, +Inf above, NaN kept.
func vecExp(g *amd64Gen, sfx string, lanes int) {
	name := "exps" + sfx
	g.fn(name, "func(x []float32)",
		fmt.Sprintf("%s replaces x[i] by e^x[i] for i < len(x)&^%d (as expFMA).", name, lanes-1))
	x, n := g.ptr("x"), g.length("x")
	// AVX-512 keeps the constants in registers; AVX2 has too few and reads
	// them from memory (32-byte vectors).
	c := map[string]operand.Op{}
	for _, k := range expConsts {
		if lanes == 16 {
			r := g.vec(lanes)
			g.VBROADCASTSS(g.u32(k.name, math.Float32bits(k.v)), r)
			c[k.name] = r
		} else {
			c[k.name] = g.vconst(k.name+"v", math.Float32bits(k.v))
		}
	}
	var bias operand.Op = g.vconst("expbiasv", 127)
	if lanes == 16 {
		bias = g.broadcast("expbias", 127, lanes)
	}
	g.SHRQ(operand.U8(uint8(log2(lanes))), n)
	g.JZ(operand.LabelRef(name + "_done"))
	g.Label(name + "_loop")
	v, cl, nn, r, y, t := g.vec(lanes), g.vec(lanes), g.vec(lanes), g.vec(lanes), g.vec(lanes), g.vec(lanes)
	g.VMOVUPS(mem(x, 0), v)
	g.VMAXPS(c["explo"], v, cl) // NaN lanes are fixed below
	g.VMINPS(c["exphi"], cl, cl)
	g.VMULPS(c["explog2e"], cl, nn)
	if lanes == 16 {
		g.VRNDSCALEPS(operand.U8(0), nn, nn) // to nearest even
	} else {
		g.VROUNDPS(operand.U8(0), nn, nn)
	}
	g.VMOVAPS(cl, r)
	g.VFMADD231PS(c["expnc1"], nn, r) // r = fma(n, −c1, x)
	g.VFMADD231PS(c["expnc2"], nn, r) // r = fma(n, −c2, r)
	g.VMOVUPS(c["expp0"], y)
	for _, p := range []string{"expp1", "expp2", "expp3", "expp4", "expp5"} {
		g.VFMADD213PS(c[p], r, y) // y = fma(y, r, p)
	}
	g.VMULPS(r, y, y)           // y·r
	g.VADDPS(c["expone"], r, t) // r + 1
	g.VFMADD213PS(t, r, y)      // fma(y·r, r, r+1)
	g.VCVTPS2DQ(nn, nn)         // n is integral: exact
	g.VPADDD(bias, nn, nn)
	g.VPSLLD(operand.U8(23), nn, nn)
	g.VMULPS(nn, y, y) // · 2ⁿ
	if lanes == 16 {
		k := g.K()
		g.VCMPPS(operand.U8(0x1d), c["explo"], v, k) // v ≥ lo (false for NaN)
		g.VMOVAPS_Z(y, k, y)                         // 0 below the range
		g.VCMPPS(operand.U8(0x1e), c["exphi"], v, k) // v > hi
		g.VMOVAPS(c["expinf"], k, y)
		g.VCMPPS(operand.U8(0x03), v, v, k) // NaN
		g.VMOVAPS(v, k, y)
	} else {
		m := g.vec(lanes)
		g.VCMPPS(operand.U8(0x1d), c["explo"], v, m)
		g.VANDPS(m, y, y)
		g.VCMPPS(operand.U8(0x1e), c["exphi"], v, m)
		g.VBLENDVPS(m, c["expinf"], y, y)
		g.VCMPPS(operand.U8(0x03), v, v, m)
		g.VBLENDVPS(m, v, y, y)
	}
	g.VMOVUPS(y, mem(x, 0))
	g.ADDQ(operand.U8(uint8(4*lanes)), x)
	g.DECQ(n)
	g.JNZ(operand.LabelRef(name + "_loop"))
	g.Label(name + "_done")
	g.VZEROUPPER()
	g.RET()
}

// vecReduce folds (x & and) ^ xor over whole vectors of size-byte unsigned
// elements with max (or min) into the vector at out, which holds the
// running value (64 bytes; AVX2 uses the first 32).
func vecReduce(g *amd64Gen, name string, size, lanes int, what string, and, xor uint32, isMax bool) {
	typ := map[int]string{2: "uint16", 4: "uint32"}[size]
	outLanes := 64 / size
	g.fn(name, fmt.Sprintf("func(x []%s, out *[%d]%s)", typ, outLanes, typ),
		fmt.Sprintf("%s folds %s over x[:len(x)&^%d] into out.", name, what, 4*lanes/size-1))
	x, n := g.ptr("x"), g.length("x")
	out := g.GP64()
	g.Load(g.Param("out"), out)
	acc := g.vec(lanes)
	g.VMOVDQU32orULoad(mem(out, 0), acc, lanes)
	var m reg.VecVirtual
	if size == 2 {
		m = g.vec(lanes)
		g.VPBROADCASTW(g.u16(fmt.Sprintf("mask16_%x", and), uint16(and)), m)
	} else {
		m = g.broadcast(fmt.Sprintf("mask32_%x", and), and, lanes)
	}
	var xv reg.VecVirtual
	if xor != 0 {
		xv = g.vec(lanes)
		g.VPBROADCASTW(g.u16(fmt.Sprintf("xor16_%x", xor), uint16(xor)), xv)
	}
	perVec := 4 * lanes / size // elements per vector
	g.SHRQ(operand.U8(uint8(log2(perVec))), n)
	g.JZ(operand.LabelRef(name + "_done"))
	g.Label(name + "_loop")
	v := g.vec(lanes)
	if lanes == 16 {
		g.VPANDD(mem(x, 0), m, v)
		if xor != 0 {
			g.VPXORD(xv, v, v)
		}
	} else {
		g.VPAND(mem(x, 0), m, v)
		if xor != 0 {
			g.VPXOR(xv, v, v)
		}
	}
	switch {
	case size == 2 && isMax:
		g.VPMAXUW(v, acc, acc)
	case size == 2:
		g.VPMINUW(v, acc, acc)
	default:
		g.VPMAXUD(v, acc, acc)
	}
	g.ADDQ(operand.U8(uint8(4*lanes)), x)
	g.DECQ(n)
	g.JNZ(operand.LabelRef(name + "_loop"))
	g.Label(name + "_done")
	g.VMOVDQU32orU(acc, mem(out, 0), lanes)
	g.VZEROUPPER()
	g.RET()
}

// vecBlocks stores one largest magnitude per block: dst[i] is the largest
// x&0x7fff… over elements [i·block, (i+1)·block) of x, for i < len(dst);
// block is a positive multiple of the elements per vector. The block's
// vectors fold into one register; its lanes then fold by halves to one
// XMM register, and to the value by VPHMINPOSUW on 0x7fff−v (16-bit) or by
// two shuffles (32-bit).
func vecBlocks(g *amd64Gen, name string, size, lanes int) {
	typ := map[int]string{2: "uint16", 4: "uint32"}[size]
	perVec := 4 * lanes / size
	g.fn(name, fmt.Sprintf("func(dst, x []%s, block int)", typ),
		fmt.Sprintf("%s sets dst[i] to the largest x&0x%x over x[i·block:(i+1)·block] for i < len(dst); block is a multiple of %d.",
			name, uint32(1)<<(8*size-1)-1, perVec))
	dst, x, nb := g.ptr("dst"), g.ptr("x"), g.length("dst")
	nv := g.GP64()
	g.Load(g.Param("block"), nv)
	g.SHRQ(operand.U8(uint8(log2(perVec))), nv) // vectors per block
	var m reg.VecVirtual
	if size == 2 {
		m = g.vec(lanes)
		g.VPBROADCASTW(g.u16("mask16_7fff", 0x7fff), m)
	} else {
		m = g.broadcast("mask32_7fffffff", 0x7fffffff, lanes)
	}
	and := func(src operand.Mem, dst reg.VecVirtual) {
		if lanes == 16 {
			g.VPANDD(src, m, dst)
		} else {
			g.VPAND(src, m, dst)
		}
	}
	vmax := func(a, b, dst operand.Op) {
		if size == 2 {
			g.VPMAXUW(a, b, dst)
		} else {
			g.VPMAXUD(a, b, dst)
		}
	}
	g.TESTQ(nb, nb)
	g.JZ(operand.LabelRef(name + "_done"))
	j := g.GP64()
	g.Label(name + "_block")
	acc := g.vec(lanes)
	and(mem(x, 0), acc)
	g.ADDQ(operand.U8(uint8(4*lanes)), x)
	g.MOVQ(nv, j)
	g.DECQ(j)
	g.JZ(operand.LabelRef(name + "_fold"))
	g.Label(name + "_vec")
	v := g.vec(lanes)
	and(mem(x, 0), v)
	vmax(v, acc, acc)
	g.ADDQ(operand.U8(uint8(4*lanes)), x)
	g.DECQ(j)
	g.JNZ(operand.LabelRef(name + "_vec"))
	g.Label(name + "_fold")
	h := g.XMM()
	if lanes == 16 {
		y := g.YMM()
		g.VEXTRACTI64X4(operand.U8(1), acc, y)
		vmax(acc.AsY(), y, y)
		g.VEXTRACTI128(operand.U8(1), y, h)
		vmax(y.AsX(), h, h)
	} else {
		g.VEXTRACTI128(operand.U8(1), acc, h)
		vmax(acc.AsX(), h, h)
	}
	if size == 2 {
		// Lanes are at most 0x7fff: the largest is 0x7fff − min(0x7fff − v).
		g.VPXOR(m.AsX(), h, h)
		g.VPHMINPOSUW(h, h)
		r := g.GP32()
		g.VMOVD(h, r)
		g.XORL(operand.U32(0x7fff), r)
		g.MOVW(r.As16(), mem(dst, 0))
	} else {
		t := g.XMM()
		g.VPSHUFD(operand.U8(0x4e), h, t)
		vmax(t, h, h)
		g.VPSHUFD(operand.U8(0xb1), h, t)
		vmax(t, h, h)
		g.VMOVD(h, mem(dst, 0))
	}
	g.ADDQ(operand.U8(uint8(size)), dst)
	g.DECQ(nb)
	g.JNZ(operand.LabelRef(name + "_block"))
	g.Label(name + "_done")
	g.VZEROUPPER()
	g.RET()
}

// VMOVDQU32orULoad loads with VMOVDQU32 (AVX-512) or VMOVDQU (AVX2).
func (g *amd64Gen) VMOVDQU32orULoad(m operand.Mem, v reg.VecVirtual, lanes int) {
	if lanes == 16 {
		g.VMOVDQU32(m, v)
		return
	}
	g.VMOVDQU(m, v)
}

// The attention primitives: many dot products or axpys over rows of a
// matrix (row stride ld), each the same arithmetic as one Dot or Axpy call,
// for lengths that are a multiple of 16.

func vecRowsAMD64(g *amd64Gen, sfx string, lanes int) {
	vecDotN(g, "dotN"+sfx, lanes)
	vecAxpyN(g, "axpyN"+sfx, lanes)
	vecAxpyAcc(g, "axpyAcc"+sfx, lanes)
}

// fold16 reduces the 16 partial sums in acc (one register on AVX-512, two
// on AVX2) to lane 0 of the returned XMM register, in the order of
// vec.fold16: halves, then quarters, then pairs.
func (g *amd64Gen) fold16(acc []reg.VecVirtual) reg.VecVirtual {
	y := g.YMM()
	if len(acc) == 1 {
		g.VEXTRACTF64X4(operand.U8(1), acc[0], y)
		g.VADDPS(acc[0].AsY(), y, y)
	} else {
		g.VADDPS(acc[1], acc[0], y)
	}
	x, t := g.XMM(), g.XMM()
	g.VEXTRACTF128(operand.U8(1), y, x)
	g.VADDPS(y.AsX(), x, x)
	g.VMOVHLPS(x, x, t)
	g.VADDPS(t, x, x)
	g.VMOVSHDUP(x, t)
	g.VADDSS(t, x, x)
	return x
}

func vecDotN(g *amd64Gen, name string, lanes int) {
	g.fn(name, "func(q, k []float32, ld int, out []float32)",
		fmt.Sprintf("%s sets out[j] = Dot(q, k[j·ld:]) for j < len(out); len(q) is a multiple of 16.", name))
	q, k, out, n, d := g.ptr("q"), g.ptr("k"), g.ptr("out"), g.length("out"), g.length("q")
	ld := g.GP64()
	g.Load(g.Param("ld"), ld)
	g.SHLQ(operand.U8(2), ld)
	g.SHLQ(operand.U8(2), d) // bytes
	nv := 16 / lanes
	kr, e := g.GP64(), g.GP64()
	g.TESTQ(n, n)
	g.JZ(operand.LabelRef(name + "_done"))
	g.Label(name + "_row")
	acc := make([]reg.VecVirtual, nv)
	for j := range acc {
		acc[j] = g.vec(lanes)
		g.VXORPS(acc[j], acc[j], acc[j])
	}
	g.MOVQ(k, kr)
	g.XORQ(e, e)
	g.Label(name + "_elem")
	for j := range acc {
		x := g.vec(lanes)
		g.VMOVUPS(idx(q, e, 1, 4*lanes*j), x)
		g.VFMADD231PS(idx(kr, e, 1, 4*lanes*j), x, acc[j])
	}
	g.ADDQ(operand.U8(64), e)
	g.CMPQ(e, d)
	g.JB(operand.LabelRef(name + "_elem"))
	s := g.fold16(acc)
	g.VMOVSS(s, mem(out, 0))
	g.ADDQ(operand.U8(4), out)
	g.ADDQ(ld, k)
	g.DECQ(n)
	g.JNZ(operand.LabelRef(name + "_row"))
	g.Label(name + "_done")
	g.VZEROUPPER()
	g.RET()
}

func vecAxpyN(g *amd64Gen, name string, lanes int) {
	g.fn(name, "func(y []float32, ld int, x, alpha []float32)",
		fmt.Sprintf("%s does Axpy(y[j·ld:j·ld+len(x)], x, alpha[j]) for j < len(alpha); len(x) is a multiple of %d.", name, lanes))
	y, x, a, n, d := g.ptr("y"), g.ptr("x"), g.ptr("alpha"), g.length("alpha"), g.length("x")
	ld := g.GP64()
	g.Load(g.Param("ld"), ld)
	g.SHLQ(operand.U8(2), ld)
	g.SHLQ(operand.U8(2), d)
	e := g.GP64()
	g.TESTQ(n, n)
	g.JZ(operand.LabelRef(name + "_done"))
	g.Label(name + "_row")
	al := g.vec(lanes)
	g.VBROADCASTSS(mem(a, 0), al)
	g.XORQ(e, e)
	g.Label(name + "_elem")
	v := g.vec(lanes)
	g.VMOVUPS(idx(y, e, 1, 0), v)
	g.VFMADD231PS(idx(x, e, 1, 0), al, v)
	g.VMOVUPS(v, idx(y, e, 1, 0))
	g.ADDQ(operand.U8(uint8(4*lanes)), e)
	g.CMPQ(e, d)
	g.JB(operand.LabelRef(name + "_elem"))
	g.ADDQ(operand.U8(4), a)
	g.ADDQ(ld, y)
	g.DECQ(n)
	g.JNZ(operand.LabelRef(name + "_row"))
	g.Label(name + "_done")
	g.VZEROUPPER()
	g.RET()
}

// vecAxpyAcc keeps up to four vectors of y in registers while the rows of
// x stream past.
func vecAxpyAcc(g *amd64Gen, name string, lanes int) {
	g.fn(name, "func(y, x []float32, ld int, alpha []float32)",
		fmt.Sprintf("%s does Axpy(y, x[j·ld:j·ld+len(y)], alpha[j]) for j = 0, 1, … < len(alpha) in order; len(y) is a multiple of %d.", name, 4*lanes))
	y, x, a, n, d := g.ptr("y"), g.ptr("x"), g.ptr("alpha"), g.length("alpha"), g.length("y")
	ld := g.GP64()
	g.Load(g.Param("ld"), ld)
	g.SHLQ(operand.U8(2), ld)
	g.SHRQ(operand.U8(uint8(log2(4*lanes))), d) // groups of four vectors
	g.TESTQ(n, n)
	g.JZ(operand.LabelRef(name + "_done"))
	g.TESTQ(d, d)
	g.JZ(operand.LabelRef(name + "_done"))
	xr, ar, j := g.GP64(), g.GP64(), g.GP64()
	g.Label(name + "_group")
	acc := make([]reg.VecVirtual, 4)
	for q := range acc {
		acc[q] = g.vec(lanes)
		g.VMOVUPS(mem(y, 4*lanes*q), acc[q])
	}
	g.MOVQ(x, xr)
	g.MOVQ(a, ar)
	g.MOVQ(n, j)
	g.Label(name + "_row")
	al := g.vec(lanes)
	g.VBROADCASTSS(mem(ar, 0), al)
	for q := range acc {
		g.VFMADD231PS(mem(xr, 4*lanes*q), al, acc[q])
	}
	g.ADDQ(operand.U8(4), ar)
	g.ADDQ(ld, xr)
	g.DECQ(j)
	g.JNZ(operand.LabelRef(name + "_row"))
	for q := range acc {
		g.VMOVUPS(acc[q], mem(y, 4*lanes*q))
	}
	g.ADDQ(operand.U32(16*lanes), y)
	g.ADDQ(operand.U32(16*lanes), x)
	g.DECQ(d)
	g.JNZ(operand.LabelRef(name + "_group"))
	g.Label(name + "_done")
	g.VZEROUPPER()
	g.RET()
}
