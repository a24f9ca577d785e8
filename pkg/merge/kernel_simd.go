//go:build goexperiment.simd && amd64

package merge

import "simd/archsimd"

// The SIMD kernels use the CPU's float32 FMA (one rounding, the same value as
// fma32) and compute every element with the same chain as the generic kernel,
// so their results are bit-identical to it. Tiles of 4 rows share each load
// of R; the accumulators stay in registers for the whole chain over k.
var (
	hasAVX512 = archsimd.X86.AVX512()
	hasFMA    = archsimd.X86.AVX2() && archsimd.X86.FMA()
)

func kernelName() string {
	switch {
	case hasAVX512:
		return "avx512"
	case hasFMA:
		return "avx2+fma"
	}
	return "generic"
}

func lowRankAdd(v []float32, rows, cols int, l, rm []float32, r int, scale float32, acc []float32) {
	switch {
	case hasAVX512:
		lowRankAdd512(v, rows, cols, l, rm, r, scale)
	case hasFMA:
		lowRankAdd256(v, rows, cols, l, rm, r, scale)
	default:
		lowRankAddGeneric(v, rows, cols, l, rm, r, scale, acc)
	}
}

func lowRankAdd512(v []float32, rows, cols int, l, rm []float32, r int, scale float32) {
	// Go keeps about 15 vectors in registers: 4 rows × 2 vectors of
	// accumulators, the two R vectors and a broadcast fit.
	sc := archsimd.BroadcastFloat32x16(scale)
	c32 := cols &^ 31
	c16 := cols &^ 15
	i := 0
	for ; i+4 <= rows; i += 4 {
		l0, l1, l2, l3 := l[i*r:i*r+r], l[(i+1)*r:(i+1)*r+r], l[(i+2)*r:(i+2)*r+r], l[(i+3)*r:(i+3)*r+r]
		for j := 0; j < c32; j += 32 {
			var a00, a01, a10, a11, a20, a21, a30, a31 archsimd.Float32x16
			for k := 0; k < r; k++ {
				rk := rm[k*cols+j : k*cols+j+32]
				x0 := archsimd.LoadFloat32x16Slice(rk[0:])
				x1 := archsimd.LoadFloat32x16Slice(rk[16:])
				b := archsimd.BroadcastFloat32x16(l0[k])
				a00, a01 = x0.MulAdd(b, a00), x1.MulAdd(b, a01)
				b = archsimd.BroadcastFloat32x16(l1[k])
				a10, a11 = x0.MulAdd(b, a10), x1.MulAdd(b, a11)
				b = archsimd.BroadcastFloat32x16(l2[k])
				a20, a21 = x0.MulAdd(b, a20), x1.MulAdd(b, a21)
				b = archsimd.BroadcastFloat32x16(l3[k])
				a30, a31 = x0.MulAdd(b, a30), x1.MulAdd(b, a31)
			}
			o := i*cols + j
			add512(v[o:], sc, a00)
			add512(v[o+16:], sc, a01)
			o += cols
			add512(v[o:], sc, a10)
			add512(v[o+16:], sc, a11)
			o += cols
			add512(v[o:], sc, a20)
			add512(v[o+16:], sc, a21)
			o += cols
			add512(v[o:], sc, a30)
			add512(v[o+16:], sc, a31)
		}
		for j := c32; j < c16; j += 16 {
			var a0, a1, a2, a3 archsimd.Float32x16
			for k := 0; k < r; k++ {
				x := archsimd.LoadFloat32x16Slice(rm[k*cols+j:])
				a0 = x.MulAdd(archsimd.BroadcastFloat32x16(l0[k]), a0)
				a1 = x.MulAdd(archsimd.BroadcastFloat32x16(l1[k]), a1)
				a2 = x.MulAdd(archsimd.BroadcastFloat32x16(l2[k]), a2)
				a3 = x.MulAdd(archsimd.BroadcastFloat32x16(l3[k]), a3)
			}
			add512(v[i*cols+j:], sc, a0)
			add512(v[(i+1)*cols+j:], sc, a1)
			add512(v[(i+2)*cols+j:], sc, a2)
			add512(v[(i+3)*cols+j:], sc, a3)
		}
	}
	for ; i < rows; i++ {
		li := l[i*r : i*r+r]
		for j := 0; j < c16; j += 16 {
			var a archsimd.Float32x16
			for k, lk := range li {
				a = archsimd.LoadFloat32x16Slice(rm[k*cols+j:]).MulAdd(archsimd.BroadcastFloat32x16(lk), a)
			}
			add512(v[i*cols+j:], sc, a)
		}
	}
	if c16 < cols {
		lowRankTailGeneric(v, rows, cols, c16, l, rm, r, scale)
	}
}

// add512 does v = f32(v + f32(a·scale)) on 16 lanes.
func add512(v []float32, sc, a archsimd.Float32x16) {
	archsimd.LoadFloat32x16Slice(v).Add(a.Mul(sc)).StoreSlice(v)
}

func lowRankAdd256(v []float32, rows, cols int, l, rm []float32, r int, scale float32) {
	sc := archsimd.BroadcastFloat32x8(scale)
	c16 := cols &^ 15
	c8 := cols &^ 7
	i := 0
	for ; i+4 <= rows; i += 4 {
		l0, l1, l2, l3 := l[i*r:i*r+r], l[(i+1)*r:(i+1)*r+r], l[(i+2)*r:(i+2)*r+r], l[(i+3)*r:(i+3)*r+r]
		for j := 0; j < c16; j += 16 {
			var a00, a01, a10, a11, a20, a21, a30, a31 archsimd.Float32x8
			for k := 0; k < r; k++ {
				rk := rm[k*cols+j : k*cols+j+16]
				x0 := archsimd.LoadFloat32x8Slice(rk[0:])
				x1 := archsimd.LoadFloat32x8Slice(rk[8:])
				b := archsimd.BroadcastFloat32x8(l0[k])
				a00, a01 = b.MulAdd(x0, a00), b.MulAdd(x1, a01)
				b = archsimd.BroadcastFloat32x8(l1[k])
				a10, a11 = b.MulAdd(x0, a10), b.MulAdd(x1, a11)
				b = archsimd.BroadcastFloat32x8(l2[k])
				a20, a21 = b.MulAdd(x0, a20), b.MulAdd(x1, a21)
				b = archsimd.BroadcastFloat32x8(l3[k])
				a30, a31 = b.MulAdd(x0, a30), b.MulAdd(x1, a31)
			}
			add256(v[i*cols+j:], sc, a00)
			add256(v[i*cols+j+8:], sc, a01)
			add256(v[(i+1)*cols+j:], sc, a10)
			add256(v[(i+1)*cols+j+8:], sc, a11)
			add256(v[(i+2)*cols+j:], sc, a20)
			add256(v[(i+2)*cols+j+8:], sc, a21)
			add256(v[(i+3)*cols+j:], sc, a30)
			add256(v[(i+3)*cols+j+8:], sc, a31)
		}
		for j := c16; j < c8; j += 8 {
			var a0, a1, a2, a3 archsimd.Float32x8
			for k := 0; k < r; k++ {
				x := archsimd.LoadFloat32x8Slice(rm[k*cols+j:])
				a0 = archsimd.BroadcastFloat32x8(l0[k]).MulAdd(x, a0)
				a1 = archsimd.BroadcastFloat32x8(l1[k]).MulAdd(x, a1)
				a2 = archsimd.BroadcastFloat32x8(l2[k]).MulAdd(x, a2)
				a3 = archsimd.BroadcastFloat32x8(l3[k]).MulAdd(x, a3)
			}
			add256(v[i*cols+j:], sc, a0)
			add256(v[(i+1)*cols+j:], sc, a1)
			add256(v[(i+2)*cols+j:], sc, a2)
			add256(v[(i+3)*cols+j:], sc, a3)
		}
	}
	for ; i < rows; i++ {
		li := l[i*r : i*r+r]
		for j := 0; j < c8; j += 8 {
			var a archsimd.Float32x8
			for k, lk := range li {
				a = archsimd.BroadcastFloat32x8(lk).MulAdd(archsimd.LoadFloat32x8Slice(rm[k*cols+j:]), a)
			}
			add256(v[i*cols+j:], sc, a)
		}
	}
	if c8 < cols {
		lowRankTailGeneric(v, rows, cols, c8, l, rm, r, scale)
	}
}

// add256 does v = f32(v + f32(a·scale)) on 8 lanes.
func add256(v []float32, sc, a archsimd.Float32x8) {
	archsimd.LoadFloat32x8Slice(v).Add(a.Mul(sc)).StoreSlice(v)
}
