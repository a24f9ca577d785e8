package main

import (
	"fmt"

	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// The gemm family: register-blocked float32 micro-kernels. Each computes,
// for an mr×nr block of C (row stride ldc), every element as the chain
// acc ← fma(a[k·mr+i], b[k·nr+j], acc) over k from acc = 0, then
// C ← fma(acc, alpha, C): the same arithmetic in every tier, whatever the
// block shape, so that the FMA tiers agree bit for bit.

var zmms = []reg.VecPhysical{reg.Z0, reg.Z1, reg.Z2, reg.Z3, reg.Z4, reg.Z5, reg.Z6, reg.Z7, reg.Z8, reg.Z9,
	reg.Z10, reg.Z11, reg.Z12, reg.Z13, reg.Z14, reg.Z15, reg.Z16, reg.Z17, reg.Z18, reg.Z19, reg.Z20, reg.Z21,
	reg.Z22, reg.Z23, reg.Z24, reg.Z25, reg.Z26, reg.Z27, reg.Z28, reg.Z29, reg.Z30, reg.Z31}

var ymms = []reg.VecPhysical{reg.Y0, reg.Y1, reg.Y2, reg.Y3, reg.Y4, reg.Y5, reg.Y6, reg.Y7, reg.Y8, reg.Y9,
	reg.Y10, reg.Y11, reg.Y12, reg.Y13, reg.Y14, reg.Y15}

const gemmSig = "func(kc int, a, b, c []float32, lda, ldc int, alpha float32, overwrite bool)"

func gemmAMD64(g *amd64Gen) {
	gemmKernelAMD64(g, "kernel8x32AVX512", 8, 2, zmms)
	gemmKernelAMD64(g, "kernel6x16AVX2", 6, 2, ymms)
	gemmPeakAMD64(g, "peakAVX512", zmms)
	gemmPeakAMD64(g, "peakAVX2", ymms)
	gemmPacks(g, "AVX512", 16)
	gemmPacks(g, "AVX2", 8)
}

// gemmKernelAMD64 writes an mr × (nv vectors) micro-kernel: accumulators
// in registers 0 … mr·nv−1, the B vectors after them, then one broadcast
// register per row (two on AVX2, for lack of registers).
func gemmKernelAMD64(g *amd64Gen, name string, mr, nv int, v []reg.VecPhysical) {
	lanes := 8
	if v[0].Size() == 64 {
		lanes = 16
	}
	nr := nv * lanes
	g.fn(name, gemmSig,
		fmt.Sprintf("%s is the %d×%d micro-kernel: C[i·ldc+j] = fma(Σₖ A[i,k]·b[k·%d+j], alpha, C[i·ldc+j])", name, mr, nr, nr),
		"with the sum a chain of fused multiply-adds from 0; A[i,k] is a[k·"+fmt.Sprint(mr)+"+i] (lda = 0, a packed",
		"panel) or a[i·lda+k]; with overwrite C's old values are taken as +0 and not read.")
	kc, a, b, c := g.GP64(), g.ptr("a"), g.ptr("b"), g.ptr("c")
	g.Load(g.Param("kc"), kc)
	acc := v[:mr*nv]
	bv := v[mr*nv : mr*nv+nv]
	bc := v[mr*nv+nv:]
	for _, r := range acc {
		g.VXORPS(r, r, r)
	}
	// step emits k step k: the B vectors, then per row a broadcast of A
	// (from aOp(k, i)) and its fused multiply-adds.
	step := func(k int, aOp func(k, i int) operand.Mem) {
		for j := range bv {
			g.VMOVUPS(mem(b, 4*(k*nr+j*lanes)), bv[j])
		}
		for i := 0; i < mr; i++ {
			x := bc[i%len(bc)]
			g.VBROADCASTSS(aOp(k, i), x)
			for j := range bv {
				g.VFMADD231PS(bv[j], x, acc[i*nv+j])
			}
		}
	}
	// loop emits the k loop, unrolled four times, then one step at a time;
	// advance(n) moves the A pointers n steps on.
	loop := func(label string, aOp func(k, i int) operand.Mem, advance func(n int)) {
		n4 := g.GP64()
		g.MOVQ(kc, n4)
		g.SHRQ(operand.U8(2), n4)
		g.JZ(operand.LabelRef(label + "_one"))
		g.Label(label + "_four")
		for k := 0; k < 4; k++ {
			step(k, aOp)
		}
		advance(4)
		g.ADDQ(operand.U32(4*4*nr), b)
		g.DECQ(n4)
		g.JNZ(operand.LabelRef(label + "_four"))
		g.Label(label + "_one")
		g.ANDQ(operand.U8(3), kc)
		g.JZ(operand.LabelRef(name + "_store"))
		g.Label(label + "_oneloop")
		step(0, aOp)
		advance(1)
		g.ADDQ(operand.U32(4*nr), b)
		g.DECQ(kc)
		g.JNZ(operand.LabelRef(label + "_oneloop"))
	}
	lda := g.GP64()
	g.Load(g.Param("lda"), lda)
	g.TESTQ(lda, lda)
	g.JNZ(operand.LabelRef(name + "_strided"))
	loop(name+"_packed", func(k, i int) operand.Mem { return mem(a, 4*(k*mr+i)) },
		func(n int) { g.ADDQ(operand.U32(4*n*mr), a) })
	g.JMP(operand.LabelRef(name + "_store"))
	// Rows of A at a[i·lda:]: from a, a3 = a + 3·lda and the scaled strides
	// lda and lda3 = 3·lda (rows 0–7).
	g.Label(name + "_strided")
	g.SHLQ(operand.U8(2), lda)
	a3, lda3 := g.GP64(), g.GP64()
	g.LEAQ(idx(lda, lda, 2, 0), lda3)
	g.LEAQ(idx(a, lda3, 1, 0), a3)
	rows := []func(d int) operand.Mem{
		func(d int) operand.Mem { return mem(a, d) },
		func(d int) operand.Mem { return idx(a, lda, 1, d) },
		func(d int) operand.Mem { return idx(a, lda, 2, d) },
		func(d int) operand.Mem { return mem(a3, d) },
		func(d int) operand.Mem { return idx(a, lda, 4, d) },
		func(d int) operand.Mem { return idx(a3, lda, 2, d) },
		func(d int) operand.Mem { return idx(a3, lda3, 1, d) },
		func(d int) operand.Mem { return idx(a3, lda, 4, d) },
	}
	loop(name+"_strided", func(k, i int) operand.Mem { return rows[i](4 * k) },
		func(n int) {
			g.ADDQ(operand.U8(uint8(4*n)), a)
			g.ADDQ(operand.U8(uint8(4*n)), a3)
		})

	g.Label(name + "_store")
	// C = fma(acc, alpha, C), row by row; with overwrite C = fma(acc,
	// alpha, +0), which is what a cleared C would give.
	ldc := g.GP64()
	g.Load(g.Param("ldc"), ldc)
	g.SHLQ(operand.U8(2), ldc)
	alpha, zero := bv[0], bc[0]
	g.VBROADCASTSS(g.paramMem("alpha"), alpha)
	ow := g.GP8()
	g.Load(g.Param("overwrite"), ow)
	g.TESTB(ow, ow)
	g.JNZ(operand.LabelRef(name + "_overwrite"))
	for i := 0; i < mr; i++ {
		for j := 0; j < nv; j++ {
			g.VFMADD213PS(mem(c, 4*j*lanes), alpha, acc[i*nv+j])
			g.VMOVUPS(acc[i*nv+j], mem(c, 4*j*lanes))
		}
		if i+1 < mr {
			g.ADDQ(ldc, c)
		}
	}
	g.VZEROUPPER()
	g.RET()
	g.Label(name + "_overwrite")
	g.VXORPS(zero, zero, zero)
	for i := 0; i < mr; i++ {
		for j := 0; j < nv; j++ {
			g.VFMADD213PS(zero, alpha, acc[i*nv+j])
			g.VMOVUPS(acc[i*nv+j], mem(c, 4*j*lanes))
		}
		if i+1 < mr {
			g.ADDQ(ldc, c)
		}
	}
	g.VZEROUPPER()
	g.RET()
}

// gemmPeakAMD64 writes a loop of n iterations of 24 (AVX-512) or 12 (AVX2)
// independent register FMAs: the core's FMA throughput, for the benchmarks'
// "% of peak".
func gemmPeakAMD64(g *amd64Gen, name string, v []reg.VecPhysical) {
	chains := 24
	if len(v) == 16 {
		chains = 12
	}
	g.fn(name, "func(n int)", fmt.Sprintf("%s runs n iterations of %d independent vector FMAs.", name, chains))
	n := g.GP64()
	g.Load(g.Param("n"), n)
	for _, r := range v[:chains+2] {
		g.VXORPS(r, r, r)
	}
	g.TESTQ(n, n)
	g.JZ(operand.LabelRef(name + "_done"))
	g.Label(name + "_loop")
	for i := 0; i < chains; i++ {
		g.VFMADD231PS(v[chains], v[chains+1], v[i])
	}
	g.DECQ(n)
	g.JNZ(operand.LabelRef(name + "_loop"))
	g.Label(name + "_done")
	g.VZEROUPPER()
	g.RET()
}

// gemmARM64 writes the 8×12 NEON micro-kernel: accumulators V0–V23 (row i in
// V3i … V3i+2), A in V24–V25 (eight values, used by lane), B in V26–V28.
func gemmARM64(g *arm64Gen) {
	g.fn("kernel8x12NEON", gemmSig,
		"kernel8x12NEON is the 8×12 micro-kernel: C[i·ldc+j] = fma(Σₖ a[k·8+i]·b[k·12+j], alpha, C[i·ldc+j])",
		"with the sum a chain of fused multiply-adds from 0 (a packed: lda is ignored); with overwrite C's",
		"old values are taken as +0 and not read.")
	g.i("MOVD %s, R0", g.arg("kc"))
	g.i("MOVD %s, R1", g.arg("a_base"))
	g.i("MOVD %s, R2", g.arg("b_base"))
	g.i("MOVD %s, R3", g.arg("c_base"))
	g.i("MOVD %s, R4", g.arg("ldc"))
	g.i("MOVBU %s, R5", g.arg("overwrite"))
	for r := 0; r < 24; r++ {
		g.i("VEOR V%d.B16, V%d.B16, V%d.B16", r, r, r)
	}
	g.i("CBZ R0, gemm_store")
	g.label("gemm_loop")
	g.i("VLD1.P 32(R1), [V24.S4, V25.S4]")
	g.i("VLD1.P 48(R2), [V26.S4, V27.S4, V28.S4]")
	for i := 0; i < 8; i++ {
		for j := 0; j < 3; j++ {
			g.w(fmlaElem4s(3*i+j, 26+j, 24+i/4, i%4))
		}
	}
	g.i("SUBS $1, R0, R0")
	g.i("BNE gemm_loop")
	g.label("gemm_store")
	g.i("FMOVS %s, F29", g.arg("alpha"))
	g.i("LSL $2, R4, R4")
	// C = fma(acc, alpha, C); with overwrite fma(acc, alpha, +0).
	for _, ow := range []bool{false, true} {
		if ow {
			g.label("gemm_overwrite")
		} else {
			g.i("CBNZ R5, gemm_overwrite")
		}
		for i := 0; i < 8; i++ {
			if ow {
				for j := 0; j < 3; j++ {
					g.i("VEOR V%d.B16, V%d.B16, V%d.B16", 24+j, 24+j, 24+j)
				}
			} else {
				g.i("VLD1 (R3), [V24.S4, V25.S4, V26.S4]")
			}
			for j := 0; j < 3; j++ {
				g.w(fmlaElem4s(24+j, 3*i+j, 29, 0))
			}
			g.i("VST1 [V24.S4, V25.S4, V26.S4], (R3)")
			if i < 7 {
				g.i("ADD R4, R3, R3")
			}
		}
		g.i("RET")
	}

	g.fn("peakNEON", "func(n int)", "peakNEON runs n iterations of 24 independent vector FMAs.")
	g.i("MOVD %s, R0", g.arg("n"))
	for r := 0; r < 26; r++ {
		g.i("VEOR V%d.B16, V%d.B16, V%d.B16", r, r, r)
	}
	g.i("CBZ R0, peak_done")
	g.label("peak_loop")
	for r := 0; r < 24; r++ {
		g.i("VFMLA V24.S4, V25.S4, V%d.S4", r)
	}
	g.i("SUBS $1, R0, R0")
	g.i("BNE peak_loop")
	g.label("peak_done")
	g.i("RET")
}

// gemmPacks writes the packing kernels of the B side (panels of nr = 2
// vectors): packT transposes a panel of rows that are contiguous along k
// (X·Wᵀ: the rows of W), in square blocks of lanes×lanes; packN copies a
// panel whose rows are contiguous along the panel (dY·W: W itself). Both
// cover k below kb rounded down to a multiple of lanes (packN: all of kb);
// the Go side packs the rest and every partial panel.
func gemmPacks(g *amd64Gen, sfx string, lanes int) {
	for _, bf16 := range []bool{false, true} {
		gemmPackT(g, sfx, lanes, bf16)
		gemmPackN(g, sfx, lanes, bf16)
	}
}

func packSrc(bf16 bool) (typ, what string, size int) {
	if bf16 {
		return "[]uint16", "bfloat16", 2
	}
	return "[]float32", "float32", 4
}

// loadRow loads lanes values of a row (widening bfloat16) into v.
func (g *amd64Gen) loadRow(m operand.Mem, v reg.VecVirtual, bf16 bool) {
	if bf16 {
		g.VPMOVZXWD(m, v)
		g.VPSLLD(operand.U8(16), v, v)
		return
	}
	g.VMOVUPS(m, v)
}

func gemmPackT(g *amd64Gen, sfx string, lanes int, bf16 bool) {
	typ, what, size := packSrc(bf16)
	w := 2 * lanes
	name := "packT" + sfx
	if bf16 {
		name = "packTBF16" + sfx
	}
	g.fn(name, fmt.Sprintf("func(dst []float32, src %s, ld, kb int)", typ),
		fmt.Sprintf("%s sets dst[k·%d+i] = src[i·ld+k] (%s) for i < %d and k < kb&^%d.", name, w, what, w, lanes-1))
	dst, src := g.ptr("dst"), g.ptr("src")
	ld, kb := g.GP64(), g.GP64()
	g.Load(g.Param("ld"), ld)
	g.Load(g.Param("kb"), kb)
	if size == 4 {
		g.SHLQ(operand.U8(2), ld)
	} else {
		g.SHLQ(operand.U8(1), ld)
	}
	g.SHRQ(operand.U8(uint8(log2(lanes))), kb)
	g.JZ(operand.LabelRef(name + "_done"))
	p, half := g.GP64(), g.GP64()
	g.Label(name + "_kblock")
	g.MOVQ(src, half)
	for h := 0; h < 2; h++ {
		// lanes rows starting at half, lanes values each.
		g.MOVQ(half, p)
		r := make([]reg.VecVirtual, lanes)
		for i := range r {
			r[i] = g.vec(lanes)
			g.loadRow(mem(p, 0), r[i], bf16)
			if i+1 < lanes {
				g.ADDQ(ld, p)
			}
		}
		if h == 0 {
			g.LEAQ(mem(p, 0), half)
			g.ADDQ(ld, half)
		}
		out := g.transpose(r)
		for j, v := range out {
			g.VMOVUPS(v, mem(dst, 4*(j*w+h*lanes)))
		}
	}
	g.ADDQ(operand.U32(lanes*size), src)
	g.ADDQ(operand.U32(4*lanes*w), dst)
	g.DECQ(kb)
	g.JNZ(operand.LabelRef(name + "_kblock"))
	g.Label(name + "_done")
	g.VZEROUPPER()
	g.RET()
}

// transpose returns the columns of the square block whose rows are r (8
// YMM or 16 ZMM registers): unpack pairs of rows, then pairs of pairs, then
// move 128-bit lanes.
func (g *amd64Gen) transpose(r []reg.VecVirtual) []reg.VecVirtual {
	n := len(r)
	lanes := n
	t := make([]reg.VecVirtual, n)
	for p := 0; p < n/2; p++ {
		t[2*p], t[2*p+1] = g.vec(lanes), g.vec(lanes)
		g.VUNPCKLPS(r[2*p+1], r[2*p], t[2*p])
		g.VUNPCKHPS(r[2*p+1], r[2*p], t[2*p+1])
	}
	// wq[c]: in 128-bit lane L, rows 4q … 4q+3 of column 4L+c.
	groups := n / 4
	wq := make([][4]reg.VecVirtual, groups)
	for q := range wq {
		lo01, hi01, lo23, hi23 := t[4*q], t[4*q+1], t[4*q+2], t[4*q+3]
		for c := range wq[q] {
			wq[q][c] = g.vec(lanes)
		}
		g.VUNPCKLPD(lo23, lo01, wq[q][0])
		g.VUNPCKHPD(lo23, lo01, wq[q][1])
		g.VUNPCKLPD(hi23, hi01, wq[q][2])
		g.VUNPCKHPD(hi23, hi01, wq[q][3])
	}
	out := make([]reg.VecVirtual, n)
	for c := 0; c < 4; c++ {
		if groups == 2 { // AVX2: two 128-bit lanes
			out[c], out[4+c] = g.vec(lanes), g.vec(lanes)
			g.VPERM2F128(operand.U8(0x20), wq[1][c], wq[0][c], out[c])
			g.VPERM2F128(operand.U8(0x31), wq[1][c], wq[0][c], out[4+c])
			continue
		}
		a, b, cc, d := wq[0][c], wq[1][c], wq[2][c], wq[3][c]
		s0, s1, s2, s3 := g.vec(lanes), g.vec(lanes), g.vec(lanes), g.vec(lanes)
		g.VSHUFF32X4(operand.U8(0x44), b, a, s0)
		g.VSHUFF32X4(operand.U8(0xee), b, a, s1)
		g.VSHUFF32X4(operand.U8(0x44), d, cc, s2)
		g.VSHUFF32X4(operand.U8(0xee), d, cc, s3)
		for L, sel := range []struct {
			imm    uint8
			lo, hi reg.VecVirtual
		}{{0x88, s0, s2}, {0xdd, s0, s2}, {0x88, s1, s3}, {0xdd, s1, s3}} {
			out[4*L+c] = g.vec(lanes)
			g.VSHUFF32X4(operand.U8(sel.imm), sel.hi, sel.lo, out[4*L+c])
		}
	}
	return out
}

func gemmPackN(g *amd64Gen, sfx string, lanes int, bf16 bool) {
	typ, what, size := packSrc(bf16)
	w := 2 * lanes
	name := "packN" + sfx
	if bf16 {
		name = "packNBF16" + sfx
	}
	g.fn(name, fmt.Sprintf("func(dst []float32, src %s, ld, kb int)", typ),
		fmt.Sprintf("%s sets dst[k·%d+i] = src[k·ld+i] (%s) for i < %d and k < kb.", name, w, what, w))
	dst, src := g.ptr("dst"), g.ptr("src")
	ld, kb := g.GP64(), g.GP64()
	g.Load(g.Param("ld"), ld)
	g.Load(g.Param("kb"), kb)
	if size == 4 {
		g.SHLQ(operand.U8(2), ld)
	} else {
		g.SHLQ(operand.U8(1), ld)
	}
	g.TESTQ(kb, kb)
	g.JZ(operand.LabelRef(name + "_done"))
	g.Label(name + "_k")
	for j := 0; j < 2; j++ {
		v := g.vec(lanes)
		g.loadRow(mem(src, j*lanes*size), v, bf16)
		g.VMOVUPS(v, mem(dst, 4*j*lanes))
	}
	g.ADDQ(ld, src)
	g.ADDQ(operand.U32(4*w), dst)
	g.DECQ(kb)
	g.JNZ(operand.LabelRef(name + "_k"))
	g.Label(name + "_done")
	g.VZEROUPPER()
	g.RET()
}
