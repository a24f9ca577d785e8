//go:build goexperiment.simd && amd64

package quantize

import (
	"simd/archsimd"
	"unsafe"

	"github.com/lorakit/lorakit/pkg/dtype"
)

// simdKernels reports whether the SIMD kernels are built in.
const simdKernels = true

var hasAVX512 = archsimd.X86.AVX512()

var (
	evenIdx = [16]uint32{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}
	oddIdx  = [16]uint32{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31}
)

// maxBits16 is maxBits16Generic with AVX-512 for 2-byte-aligned data.
func maxBits16(b []byte) uint16 {
	if !hasAVX512 || len(b) < 64 || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%2 != 0 {
		return maxBits16Generic(b)
	}
	u := unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/2)
	mask := archsimd.BroadcastUint16x32(0x7fff)
	m := archsimd.LoadUint16x32Slice(u[:32]).And(mask)
	i := 32
	for ; i+32 <= len(u); i += 32 {
		m = m.Max(archsimd.LoadUint16x32Slice(u[i : i+32]).And(mask))
	}
	m16 := m.GetLo().Max(m.GetHi())
	m8 := m16.GetLo().Max(m16.GetHi())
	r := maxBits16Generic(b[2*i:])
	for k := range uint8(8) {
		r = max(r, m8.GetElem(k))
	}
	return r
}

// maxBits32 is maxBits32Generic with AVX-512 for 4-byte-aligned data.
func maxBits32(b []byte) uint32 {
	if !hasAVX512 || len(b) < 64 || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%4 != 0 {
		return maxBits32Generic(b)
	}
	u := unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/4)
	mask := archsimd.BroadcastUint32x16(0x7fffffff)
	m := archsimd.LoadUint32x16Slice(u[:16]).And(mask)
	i := 16
	for ; i+16 <= len(u); i += 16 {
		m = m.Max(archsimd.LoadUint32x16Slice(u[i : i+16]).And(mask))
	}
	m8 := m.GetLo().Max(m.GetHi())
	m4 := m8.GetLo().Max(m8.GetHi())
	r := maxBits32Generic(b[4*i:])
	for k := range uint8(4) {
		r = max(r, m4.GetElem(k))
	}
	return r
}

// errBlocks is errBlocksGeneric with the groups of 32 elements in AVX-512:
// the block's table is computed in one register (bf16 rounding with integer
// operations; f16 tables in plain Go), the codes of a group widen to 32-bit
// lanes and Permute looks the dequantized values up; the even and odd
// elements are the same lanes as in the generic code, so the float32 sums
// are bit-identical.
func errBlocks(code *[16]float32, scales []float32, dt dtype.DType, x []float32, packed []byte, bs int) (acc [32]float64, mx uint32) {
	if !hasAVX512 {
		return errBlocksGeneric(code, scales, dt, x, packed, bs)
	}
	cv := archsimd.LoadFloat32x16(code)
	ev := archsimd.LoadUint32x16(&evenIdx)
	ov := archsimd.LoadUint32x16(&oddIdx)
	mask := archsimd.BroadcastUint32x16(0x7fffffff)
	inf := archsimd.BroadcastUint32x16(0x7f800000)
	quiet := archsimd.BroadcastUint32x16(0x00400000)
	round := archsimd.BroadcastUint32x16(0x7fff)
	lowHalf := archsimd.BroadcastUint32x16(0xffff)
	one := archsimd.BroadcastUint32x16(1)
	low := archsimd.BroadcastUint32x16(15)
	var acc64 [4]archsimd.Float64x8
	m := archsimd.BroadcastUint32x16(0)
	for b, scale := range scales {
		var tv archsimd.Float32x16
		switch dt {
		case dtype.F16:
			t := blockTable(code, scale, dt)
			tv = archsimd.LoadFloat32x16(&t)
		case dtype.BF16:
			u := cv.Mul(archsimd.BroadcastFloat32x16(scale)).AsUint32x16()
			rne := u.Add(round).Add(u.ShiftAllRight(16).And(one)).AndNot(lowHalf)
			qnan := u.Or(quiet).AndNot(lowHalf)
			tv = qnan.Merge(rne, u.And(mask).Greater(inf)).AsFloat32x16()
		default:
			tv = cv.Mul(archsimd.BroadcastFloat32x16(scale))
		}
		xb := x[b*bs : min((b+1)*bs, len(x))]
		pb := packed[b*bs/2:]
		var ae, ao archsimd.Float32x16
		full := len(xb) &^ 31
		for g := 0; g < full; g += 32 {
			c := archsimd.LoadUint8x16Slice(pb[g/2 : g/2+16]).ExtendToUint32()
			x0 := archsimd.LoadFloat32x16Slice(xb[g : g+16])
			x1 := archsimd.LoadFloat32x16Slice(xb[g+16 : g+32])
			de := x0.ConcatPermute(x1, ev).Sub(tv.Permute(c.ShiftAllRight(4)))
			do := x0.ConcatPermute(x1, ov).Sub(tv.Permute(c.And(low)))
			ae = ae.Add(de.Mul(de))
			ao = ao.Add(do.Mul(do))
			m = m.Max(de.AsUint32x16().And(mask)).Max(do.AsUint32x16().And(mask))
		}
		if full < len(xb) {
			var a [32]float32
			var t [16]float32
			ae.StoreSlice(a[:16])
			ao.StoreSlice(a[16:])
			tv.StoreSlice(t[:])
			mx = errTail(&t, xb[full:], pb[full/2:], &a, mx)
			ae = archsimd.LoadFloat32x16Slice(a[:16])
			ao = archsimd.LoadFloat32x16Slice(a[16:])
		}
		acc64[0] = acc64[0].Add(ae.GetLo().ConvertToFloat64())
		acc64[1] = acc64[1].Add(ae.GetHi().ConvertToFloat64())
		acc64[2] = acc64[2].Add(ao.GetLo().ConvertToFloat64())
		acc64[3] = acc64[3].Add(ao.GetHi().ConvertToFloat64())
	}
	for i := range acc64 {
		acc64[i].StoreSlice(acc[8*i : 8*i+8])
	}
	m8 := m.GetLo().Max(m.GetHi())
	m4 := m8.GetLo().Max(m8.GetHi())
	for k := range uint8(4) {
		mx = max(mx, m4.GetElem(k))
	}
	return acc, mx
}
