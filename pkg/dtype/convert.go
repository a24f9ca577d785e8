package dtype

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/lorakit/lorakit/internal/kernels/half"
)

// nativeLE reports whether the host is little-endian, so that a []float32 or
// []uint16 viewed as bytes is already in safetensors order.
var nativeLE = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// asBytes views s as its bytes (any alignment is fine for bytes).
func asBytes(s []float32) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), 4*len(s))
}

func checkLen(nDst, nSrc int, d DType) error {
	size := d.Size()
	if size == 0 {
		return fmt.Errorf("%w %q", ErrUnknown, string(d))
	}
	if nSrc != nDst*size {
		return fmt.Errorf("%w: %d bytes of %s for %d float32 values", ErrLength, nSrc, d, nDst)
	}
	return nil
}

// ToF32 decodes src, little-endian elements of type d, into dst; len(src) must
// be len(dst)*d.Size(). Every type is accepted: integers and BOOL (0 or 1)
// convert as Go's float32 conversion does (round to nearest even), F64 rounds
// to nearest even.
func ToF32(dst []float32, src []byte, d DType) error {
	if err := checkLen(len(dst), len(src), d); err != nil {
		return err
	}
	le := binary.LittleEndian
	switch d {
	case F32:
		if nativeLE {
			copy(asBytes(dst), src)
			return nil
		}
		for i := range dst {
			dst[i] = math.Float32frombits(le.Uint32(src[4*i:]))
		}
	case BF16:
		decodeLE(dst, src, half.DecodeBF16)
	case F16:
		decodeLE(dst, src, half.DecodeF16)
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(le.Uint64(src[8*i:])))
		}
	case F8E4M3:
		for i, b := range src {
			dst[i] = e4m3Table[b]
		}
	case F8E5M2:
		for i, b := range src {
			dst[i] = e5m2Table[b]
		}
	case I64:
		for i := range dst {
			dst[i] = float32(int64(le.Uint64(src[8*i:])))
		}
	case U64:
		for i := range dst {
			dst[i] = float32(le.Uint64(src[8*i:]))
		}
	case I32:
		for i := range dst {
			dst[i] = float32(int32(le.Uint32(src[4*i:])))
		}
	case U32:
		for i := range dst {
			dst[i] = float32(le.Uint32(src[4*i:]))
		}
	case I16:
		for i := range dst {
			dst[i] = float32(int16(le.Uint16(src[2*i:])))
		}
	case U16:
		for i := range dst {
			dst[i] = float32(le.Uint16(src[2*i:]))
		}
	case I8:
		for i, b := range src {
			dst[i] = float32(int8(b))
		}
	case U8:
		for i, b := range src {
			dst[i] = float32(b)
		}
	case BOOL:
		for i, b := range src {
			dst[i] = 0
			if b != 0 {
				dst[i] = 1
			}
		}
	}
	return nil
}

// FromF32 encodes src into dst as little-endian elements of type d; len(dst)
// must be len(src)*d.Size(). Float types round to nearest even (see
// F32ToBF16, F32ToF16, F32ToF8E4M3, F32ToF8E5M2); F64 is exact. Integer
// and BOOL targets give ErrUnsupported.
func FromF32(dst []byte, src []float32, d DType) error {
	if err := checkLen(len(src), len(dst), d); err != nil {
		return err
	}
	le := binary.LittleEndian
	switch d {
	case F32:
		if nativeLE {
			copy(dst, asBytes(src))
			return nil
		}
		for i, f := range src {
			le.PutUint32(dst[4*i:], math.Float32bits(f))
		}
	case BF16:
		encodeLE(dst, src, half.EncodeBF16)
	case F16:
		encodeLE(dst, src, half.EncodeF16)
	case F64:
		for i, f := range src {
			le.PutUint64(dst[8*i:], math.Float64bits(float64(f)))
		}
	case F8E4M3:
		for i, f := range src {
			dst[i] = F32ToF8E4M3(f)
		}
	case F8E5M2:
		for i, f := range src {
			dst[i] = F32ToF8E5M2(f)
		}
	default:
		return fmt.Errorf("%w: float32 to %s", ErrUnsupported, d)
	}
	return nil
}

// convertChunk is the number of elements Convert stages through float32 at a
// time (16 KiB on the stack).
const convertChunk = 4096

// Convert re-encodes src, elements of type sd, into dst as elements of type dd,
// through float32 (so F64 and 64-bit integers lose precision); it streams in
// small chunks and allocates nothing. Equal types copy the bytes unchanged.
// The element counts of src and dst must agree; dd follows FromF32's rules.
func Convert(dst []byte, dd DType, src []byte, sd DType) error {
	ss, ds := sd.Size(), dd.Size()
	if ss == 0 {
		return fmt.Errorf("%w %q", ErrUnknown, string(sd))
	}
	if ds == 0 {
		return fmt.Errorf("%w %q", ErrUnknown, string(dd))
	}
	if len(src)%ss != 0 || len(dst)%ds != 0 || len(src)/ss != len(dst)/ds {
		return fmt.Errorf("%w: %d bytes of %s into %d bytes of %s", ErrLength, len(src), sd, len(dst), dd)
	}
	if sd == dd {
		copy(dst, src)
		return nil
	}
	if !dd.IsFloat() {
		return fmt.Errorf("%w: %s to %s", ErrUnsupported, sd, dd)
	}
	var buf [convertChunk]float32
	for len(src) > 0 {
		n := min(len(src)/ss, convertChunk)
		if err := ToF32(buf[:n], src[:n*ss], sd); err != nil {
			return err
		}
		if err := FromF32(dst[:n*ds], buf[:n], dd); err != nil {
			return err
		}
		src, dst = src[n*ss:], dst[n*ds:]
	}
	return nil
}

// BF16sToF32 decodes the bfloat16 values src into dst (exact). It panics
// if the lengths differ.
func BF16sToF32(dst []float32, src []uint16) {
	if len(dst) != len(src) {
		panic("dtype: BF16sToF32: length mismatch")
	}
	half.DecodeBF16(dst, src)
}

// F32sToBF16 rounds src into dst as F32ToBF16 does. It panics if the lengths
// differ.
func F32sToBF16(dst []uint16, src []float32) {
	if len(dst) != len(src) {
		panic("dtype: F32sToBF16: length mismatch")
	}
	half.EncodeBF16(dst, src)
}

// F16sToF32 decodes the binary16 values src into dst as F16ToF32 does. It
// panics if the lengths differ.
func F16sToF32(dst []float32, src []uint16) {
	if len(dst) != len(src) {
		panic("dtype: F16sToF32: length mismatch")
	}
	half.DecodeF16(dst, src)
}

// F32sToF16 rounds src into dst as F32ToF16 does. It panics if the lengths
// differ.
func F32sToF16(dst []uint16, src []float32) {
	if len(dst) != len(src) {
		panic("dtype: F32sToF16: length mismatch")
	}
	half.EncodeF16(dst, src)
}

// decodeLE runs the kernel k over little-endian 16-bit src. On little-endian
// hosts the bytes are viewed in place (unaligned is fine: uint16 holds no
// pointers); elsewhere they are staged through a small buffer.
func decodeLE(dst []float32, src []byte, k func([]float32, []uint16)) {
	if nativeLE {
		k(dst, as16(src[:2*len(dst)]))
		return
	}
	decodeLEPortable(dst, src, k)
}

func decodeLEPortable(dst []float32, src []byte, k func([]float32, []uint16)) {
	var buf [512]uint16
	for len(dst) > 0 {
		n := min(len(dst), len(buf))
		for i := range n {
			buf[i] = binary.LittleEndian.Uint16(src[2*i:])
		}
		k(dst[:n], buf[:n])
		dst, src = dst[n:], src[2*n:]
	}
}

// encodeLE is decodeLE's inverse.
func encodeLE(dst []byte, src []float32, k func([]uint16, []float32)) {
	if nativeLE {
		k(as16(dst[:2*len(src)]), src)
		return
	}
	encodeLEPortable(dst, src, k)
}

func encodeLEPortable(dst []byte, src []float32, k func([]uint16, []float32)) {
	var buf [512]uint16
	for len(src) > 0 {
		n := min(len(src), len(buf))
		k(buf[:n], src[:n])
		for i := range n {
			binary.LittleEndian.PutUint16(dst[2*i:], buf[i])
		}
		dst, src = dst[2*n:], src[n:]
	}
}

// as16 views b (of even length) as uint16s in host order.
func as16(b []byte) []uint16 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/2)
}
