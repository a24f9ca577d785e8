//go:build goexperiment.simd && amd64

package export

import (
	"simd/archsimd"
	"unsafe"
)

var (
	hasAVX512 = archsimd.X86.AVX512()
	hasAVX2   = archsimd.X86.AVX2()
)

// hasF16Inf is hasF16InfGeneric with AVX-512 or AVX2: the minimum over all lanes of
// (h & 0x7fff) ^ 0x7c00 is zero exactly when some value is ±Inf.
func hasF16Inf(b []byte) bool {
	if len(b) < 64 || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%2 != 0 || !hasAVX2 {
		return hasF16InfGeneric(b)
	}
	h := unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/2)
	var n int
	var zero bool
	if hasAVX512 {
		n = len(h) &^ 31
		abs, inf := archsimd.BroadcastUint16x32(0x7fff), archsimd.BroadcastUint16x32(0x7c00)
		acc := archsimd.BroadcastUint16x32(0xffff)
		for i := 0; i < n; i += 32 {
			acc = acc.Min(archsimd.LoadUint16x32Slice(h[i:]).And(abs).Xor(inf))
		}
		zero = acc.Equal(archsimd.BroadcastUint16x32(0)).ToBits() != 0
	} else {
		n = len(h) &^ 15
		abs, inf := archsimd.BroadcastUint16x16(0x7fff), archsimd.BroadcastUint16x16(0x7c00)
		acc := archsimd.BroadcastUint16x16(0xffff)
		for i := 0; i < n; i += 16 {
			acc = acc.Min(archsimd.LoadUint16x16Slice(h[i:]).And(abs).Xor(inf))
		}
		zero = acc.Equal(archsimd.BroadcastUint16x16(0)).ToBits() != 0
	}
	return zero || hasF16InfGeneric(b[2*n:])
}
