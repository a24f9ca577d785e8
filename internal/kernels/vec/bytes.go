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

// view returns the n little-endian T values at the start of b in place, or
// false where the host cannot read them so (big-endian, or an unaligned b on
// a host that needs alignment).
func view[T uint16 | uint32](b []byte, n int) ([]T, bool) {
	size := uintptr(unsafe.Sizeof(T(0)))
	if !inPlace && (uintptr(unsafe.Pointer(unsafe.SliceData(b)))%size != 0 || binary.NativeEndian.Uint16([]byte{1, 0}) != 1) {
		return nil, false
	}
	if n == 0 {
		return nil, true
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n), true
}

// MaxAbs16LE is MaxAbs16 over the little-endian 16-bit values of b (a
// trailing odd byte is ignored).
func MaxAbs16LE(b []byte) uint16 {
	n := len(b) / 2
	if h, ok := view[uint16](b, n); ok {
		return MaxAbs16(h)
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
	if u, ok := view[uint32](b, n); ok {
		return MaxAbs32(u)
	}
	var m uint32
	for i := range n {
		m = max(m, binary.LittleEndian.Uint32(b[4*i:])&0x7fffffff)
	}
	return m
}

// MaxAbs16BlocksLE is MaxAbs16Blocks over the little-endian 16-bit values
// of b (a trailing odd byte is ignored): dst[i] = MaxAbs16LE of block i.
func MaxAbs16BlocksLE(dst []uint16, b []byte, block int) {
	if h, ok := view[uint16](b, len(b)/2); ok {
		MaxAbs16Blocks(dst, h, block)
		return
	}
	blocksLE(dst, b, block, MaxAbs16LE)
}

// MaxAbs32BlocksLE is MaxAbs32Blocks over the little-endian 32-bit values
// of b (trailing bytes are ignored): dst[i] = MaxAbs32LE of block i.
func MaxAbs32BlocksLE(dst []uint32, b []byte, block int) {
	if u, ok := view[uint32](b, len(b)/4); ok {
		MaxAbs32Blocks(dst, u, block)
		return
	}
	blocksLE(dst, b, block, MaxAbs32LE)
}

// blocksLE is the byte-by-byte form of the Blocks reductions: maxAbs over
// the bytes of each block.
func blocksLE[T uint16 | uint32](dst []T, b []byte, block int, maxAbs func([]byte) T) {
	size := int(unsafe.Sizeof(T(0)))
	n := len(b) / size
	fullBlocks(len(dst), n, block)
	for i := range dst {
		dst[i] = maxAbs(b[size*i*block : size*min((i+1)*block, n)])
	}
}

// AnyF16InfLE is AnyF16Inf over the little-endian binary16 values of b.
func AnyF16InfLE(b []byte) bool {
	n := len(b) / 2
	if h, ok := view[uint16](b, n); ok {
		return AnyF16Inf(h)
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
