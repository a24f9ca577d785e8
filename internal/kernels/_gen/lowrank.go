package main

import (
	"fmt"

	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// The lowrank family: v[i,j] ← f32(v[i,j] + f32(acc·scale)) with acc the
// chain fma(L[i,k], R[k,j], acc) over k from 0. L comes transposed in
// panels of four rows (lt[p·rank·4 + k·4 + i] = L[4p+i, k], zero past the
// last row); R is rank×cols row-major. The kernels cover every row and the
// columns below cols rounded down to a whole vector; the Go side does the
// rest.

const lowRankSig = "func(v, lt, r []float32, rows, cols, rank int, scale float32)"

func lowRankAMD64(g *amd64Gen) {
	lowRankKernelAMD64(g, "addAVX512", zmms)
	lowRankKernelAMD64(g, "addAVX2", ymms)
}

func lowRankKernelAMD64(g *amd64Gen, name string, v []reg.VecPhysical) {
	lanes := 8
	if v[0].Size() == 64 {
		lanes = 16
	}
	g.fn(name, lowRankSig,
		fmt.Sprintf("%s adds the rank-r product to v over the columns below cols&^%d.", name, lanes-1))
	vp, lt, rp := g.ptr("v"), g.ptr("lt"), g.ptr("r")
	rows, cols, rank := g.GP64(), g.GP64(), g.GP64()
	g.Load(g.Param("rows"), rows)
	g.Load(g.Param("cols"), cols)
	g.Load(g.Param("rank"), rank)
	scale := v[len(v)-1]
	g.VBROADCASTSS(g.paramMem("scale"), scale)
	stride := g.GP64() // bytes per row of v and of R
	g.MOVQ(cols, stride)
	g.SHLQ(operand.U8(2), stride)
	cw := g.GP64() // bytes of whole vectors per row
	g.MOVQ(cols, cw)
	g.ANDQ(operand.U32(^uint32(lanes-1)), cw)
	g.SHLQ(operand.U8(2), cw)
	panelBytes := g.GP64() // bytes per lt panel: rank·16
	g.MOVQ(rank, panelBytes)
	g.SHLQ(operand.U8(4), panelBytes)

	acc := v[:8]
	rv := v[8:10]
	bc := v[10:14]
	j, k, rk, lk, vt := g.GP64(), g.GP64(), g.GP64(), g.GP64(), g.GP64()

	// tile emits one tile of mrows rows (lane offset lane0 of the panel) ×
	// nv vectors at column byte offset j, for the rows starting at vp.
	tile := func(label string, mrows, lane0, nv int) {
		for i := 0; i < mrows*nv; i++ {
			g.VXORPS(acc[i], acc[i], acc[i])
		}
		g.MOVQ(rp, rk)
		g.ADDQ(j, rk)
		g.MOVQ(lt, lk)
		g.MOVQ(rank, k)
		g.TESTQ(k, k)
		g.JZ(operand.LabelRef(label + "_upd"))
		g.Label(label + "_k")
		for q := 0; q < nv; q++ {
			g.VMOVUPS(mem(rk, 4*lanes*q), rv[q])
		}
		for i := 0; i < mrows; i++ {
			g.VBROADCASTSS(mem(lk, 4*(lane0+i)), bc[i])
			for q := 0; q < nv; q++ {
				g.VFMADD231PS(rv[q], bc[i], acc[i*nv+q])
			}
		}
		g.ADDQ(stride, rk)
		g.ADDQ(operand.U8(16), lk)
		g.DECQ(k)
		g.JNZ(operand.LabelRef(label + "_k"))
		g.Label(label + "_upd")
		g.MOVQ(vp, vt)
		g.ADDQ(j, vt)
		for i := 0; i < mrows; i++ {
			for q := 0; q < nv; q++ {
				a := acc[i*nv+q]
				g.VMULPS(scale, a, a) // f32(acc·scale)
				g.VADDPS(mem(vt, 4*lanes*q), a, a)
				g.VMOVUPS(a, mem(vt, 4*lanes*q))
			}
			if i+1 < mrows {
				g.ADDQ(stride, vt)
			}
		}
	}
	// columns: tiles of two vectors, then one.
	columns := func(label string, mrows, lane0 int) {
		g.XORQ(j, j)
		g.Label(label + "_c2")
		g.LEAQ(mem(j, 8*lanes), k)
		g.CMPQ(k, cw)
		g.JA(operand.LabelRef(label + "_c1"))
		tile(label+"_t2", mrows, lane0, 2)
		g.ADDQ(operand.U32(8*lanes), j)
		g.JMP(operand.LabelRef(label + "_c2"))
		g.Label(label + "_c1")
		g.CMPQ(j, cw)
		g.JAE(operand.LabelRef(label + "_cdone"))
		tile(label+"_t1", mrows, lane0, 1)
		g.Label(label + "_cdone")
	}
	// Rows: groups of four, then the last panel's rows one at a time.
	g.Label(name + "_rows4")
	g.CMPQ(rows, operand.U8(4))
	g.JB(operand.LabelRef(name + "_rows1"))
	columns(name+"_r4", 4, 0)
	g.LEAQ(idx(vp, stride, 4, 0), vp)
	g.ADDQ(panelBytes, lt)
	g.SUBQ(operand.U8(4), rows)
	g.JMP(operand.LabelRef(name + "_rows4"))
	g.Label(name + "_rows1")
	for lane := 0; lane < 3; lane++ {
		g.CMPQ(rows, operand.U8(uint8(lane)))
		g.JE(operand.LabelRef(name + "_done"))
		columns(fmt.Sprintf("%s_r1l%d", name, lane), 1, lane)
		g.ADDQ(stride, vp)
	}
	g.Label(name + "_done")
	g.VZEROUPPER()
	g.RET()
}

// lowRankARM64: the same with 4-lane vectors, tiles of four rows × 16
// columns (accumulators V0–V15, R in V16–V19, the panel's four L values in
// V20 used by lane, scale in V31).
func lowRankARM64(g *arm64Gen) {
	g.fn("addNEON", lowRankSig, "addNEON adds the rank-r product to v over the columns below cols&^3.")
	// R0 v, R1 lt, R2 r, R3 rows, R4 cols, R5 rank, R6 stride, R7 cw bytes,
	// R8 j, R9 k, R10 rk, R11 lk, R12 vt, R13 scratch.
	g.i("MOVD %s, R0", g.arg("v_base"))
	g.i("MOVD %s, R1", g.arg("lt_base"))
	g.i("MOVD %s, R2", g.arg("r_base"))
	g.i("MOVD %s, R3", g.arg("rows"))
	g.i("MOVD %s, R4", g.arg("cols"))
	g.i("MOVD %s, R5", g.arg("rank"))
	g.i("FMOVS %s, F31", g.arg("scale"))
	g.i("LSL $2, R4, R6")
	g.i("AND $~3, R4, R7")
	g.i("LSL $2, R7, R7")
	tile := func(label string, mrows, lane0, nv int) {
		for i := 0; i < mrows*nv; i++ {
			g.i("VEOR V%d.B16, V%d.B16, V%d.B16", i, i, i)
		}
		g.i("ADD R8, R2, R10")
		g.i("MOVD R1, R11")
		g.i("MOVD R5, R9")
		g.i("CBZ R9, %s_upd", label)
		g.label(label + "_k")
		regs := ""
		for q := 0; q < nv; q++ {
			if q > 0 {
				regs += ", "
			}
			regs += fmt.Sprintf("V%d.S4", 16+q)
		}
		g.i("VLD1 (R10), [%s]", regs)
		g.i("VLD1.P 16(R11), [V20.S4]")
		for i := 0; i < mrows; i++ {
			for q := 0; q < nv; q++ {
				g.w(fmlaElem4s(i*nv+q, 16+q, 20, lane0+i))
			}
		}
		g.i("ADD R6, R10, R10")
		g.i("SUBS $1, R9, R9")
		g.i("BNE %s_k", label)
		g.label(label + "_upd")
		g.i("ADD R8, R0, R12")
		for i := 0; i < mrows; i++ {
			g.i("VLD1 (R12), [%s]", regsFrom(21, nv))
			for q := 0; q < nv; q++ {
				a := i*nv + q
				g.w(fmulElem4s(a, a, 31, 0)) // f32(acc·scale)
				g.w(fadd4s(21+q, 21+q, a))
			}
			g.i("VST1 [%s], (R12)", regsFrom(21, nv))
			if i+1 < mrows {
				g.i("ADD R6, R12, R12")
			}
		}
	}
	columns := func(label string, mrows, lane0 int) {
		g.i("MOVD ZR, R8")
		g.label(label + "_c4")
		g.i("ADD $64, R8, R13")
		g.i("CMP R7, R13")
		g.i("BHI %s_c1", label)
		tile(label+"_t4", mrows, lane0, 4)
		g.i("ADD $64, R8, R8")
		g.i("B %s_c4", label)
		g.label(label + "_c1")
		g.i("CMP R7, R8")
		g.i("BHS %s_cdone", label)
		tile(label+"_t1", mrows, lane0, 1)
		g.i("ADD $16, R8, R8")
		g.i("B %s_c1", label)
		g.label(label + "_cdone")
	}
	g.label("rows4")
	g.i("CMP $4, R3")
	g.i("BLT rows1")
	columns("r4", 4, 0)
	g.i("ADD R6<<2, R0, R0")
	g.i("ADD R5<<4, R1, R1")
	g.i("SUB $4, R3, R3")
	g.i("B rows4")
	g.label("rows1")
	for lane := 0; lane < 3; lane++ {
		g.i("CMP $%d, R3", lane)
		g.i("BEQ done")
		columns(fmt.Sprintf("r1l%d", lane), 1, lane)
		g.i("ADD R6, R0, R0")
	}
	g.label("done")
	g.i("RET")
}

// regsFrom lists n consecutive vector registers from v as 4S lanes.
func regsFrom(v, n int) string {
	s := ""
	for q := 0; q < n; q++ {
		if q > 0 {
			s += ", "
		}
		s += fmt.Sprintf("V%d.S4", v+q)
	}
	return s
}
