package vec

import (
	"encoding/binary"
	"runtime"
	"unsafe"
)

// The reductions over raw little-endian file data (safetensors tensors):
// viewed in place where the host is little-endian and tolerates unaligned
// loads, read byte by byte elsewhere.

var inPlace = binary.NativeEndian.Uint16([]byte{1, 0}) == 1 &&
	(runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64" || runtime.GOARCH == "386")

// MaxAbs16LE is MaxAbs16 over the little-endian 16-bit values of b (a
// trailing odd byte is ignored).
func MaxAbs16LE(b []byte) uint16 {
	n := len(b) / 2
	if inPlace || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%2 == 0 && binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		if n == 0 {
			return 0
		}
		return MaxAbs16(unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(b))), n))
	}
	var m uint16
	for i := range n {
		m = max(m, binary.LittleEndian.Uint16(b[2*i:])&0x7fff)
	}
	return m
}

// MaxAbs32LE is MaxAbs32 over the little-endian 32-bit values of b (trailing
// bytes are ignored).
func MaxAbs32LE(b []byte) uint32 {
	n := len(b) / 4
	if inPlace || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%4 == 0 && binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		if n == 0 {
			return 0
		}
		return MaxAbs32(unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(b))), n))
	}
	var m uint32
	for i := range n {
		m = max(m, binary.LittleEndian.Uint32(b[4*i:])&0x7fffffff)
	}
	return m
}

// AnyF16InfLE is AnyF16Inf over the little-endian binary16 values of b.
func AnyF16InfLE(b []byte) bool {
	n := len(b) / 2
	if inPlace || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%2 == 0 && binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		if n == 0 {
			return false
		}
		return AnyF16Inf(unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(b))), n))
	}
	var acc uint64
	i := 0
	for ; i+32 <= len(b); i += 32 {
		q := b[i : i+32 : i+32]
		acc |= infLanes(binary.LittleEndian.Uint64(q[0:])) | infLanes(binary.LittleEndian.Uint64(q[8:])) |
			infLanes(binary.LittleEndian.Uint64(q[16:])) | infLanes(binary.LittleEndian.Uint64(q[24:]))
	}
	for ; i+2 <= len(b); i += 2 {
		if binary.LittleEndian.Uint16(b[i:])&0x7fff == 0x7c00 {
			return true
		}
	}
	return acc != 0
}
