package gguf

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/lorakit/lorakit/internal/kernels/q8"
	"github.com/lorakit/lorakit/pkg/dtype"
)

// Block sizes of the block types implemented here.
const (
	// QK8_0 is the number of values per Q8_0 block.
	QK8_0 = 32
	// BlockBytesQ8_0 is the size of a Q8_0 block: f16 scale + 32 int8.
	BlockBytesQ8_0 = 34
	// QK4_0 is the number of values per Q4_0 block.
	QK4_0 = 32
	// BlockBytesQ4_0 is the size of a Q4_0 block: f16 scale + 16 bytes of nibbles.
	BlockBytesQ4_0 = 18
)

// CanQuantize reports whether Quantize can encode float32 values as t.
func CanQuantize(t Type) bool {
	switch t {
	case TypeF32, TypeF16, TypeBF16, TypeQ8_0, TypeQ4_0:
		return true
	}
	return false
}

// CanDequantize reports whether Dequantize can decode t to float32.
func CanDequantize(t Type) bool { return CanQuantize(t) }

func checkLengths(nElems, nBytes int, t Type) error {
	want, err := t.RowBytes(int64(nElems))
	if err != nil {
		return err
	}
	if int64(nBytes) != want {
		return fmt.Errorf("%w: %d %s values take %d bytes, got %d", ErrSize, nElems, t, want, nBytes)
	}
	return nil
}

// Quantize encodes src as type t into dst, which must be exactly t.RowBytes(len(src))
// long; len(src) must be a multiple of the block size. F16 rounds to nearest even
// (values of magnitude ≥ 65520 become ±Inf, see F16Overflows); BF16 follows ggml's
// ggml_compute_fp32_to_bf16 (round to nearest even, NaN made quiet with bit 0x40); Q8_0 and Q4_0 follow llama.cpp's reference quantizers (QuantizeQ8_0,
// QuantizeQ4_0). The output does not depend on how the caller splits a tensor into calls,
// as long as splits fall on block boundaries.
func Quantize(dst []byte, src []float32, t Type) error {
	if !CanQuantize(t) {
		return fmt.Errorf("%w: F32 to %s", ErrUnsupported, t)
	}
	if err := checkLengths(len(src), len(dst), t); err != nil {
		return err
	}
	switch t {
	case TypeF32:
		return dtype.FromF32(dst, src, dtype.F32)
	case TypeF16:
		return dtype.FromF32(dst, src, dtype.F16)
	case TypeBF16:
		return dtype.FromF32(dst, src, dtype.BF16)
	case TypeQ8_0:
		return QuantizeQ8_0(dst, src)
	case TypeQ4_0:
		return QuantizeQ4_0(dst, src)
	}
	return nil
}

// Dequantize decodes src of type t into dst (len(dst) values).
func Dequantize(dst []float32, src []byte, t Type) error {
	if !CanDequantize(t) {
		return fmt.Errorf("%w: %s to F32", ErrUnsupported, t)
	}
	if err := checkLengths(len(dst), len(src), t); err != nil {
		return err
	}
	switch t {
	case TypeF32:
		return dtype.ToF32(dst, src, dtype.F32)
	case TypeF16:
		return dtype.ToF32(dst, src, dtype.F16)
	case TypeBF16:
		return dtype.ToF32(dst, src, dtype.BF16)
	case TypeQ8_0:
		return DequantizeQ8_0(dst, src)
	case TypeQ4_0:
		return DequantizeQ4_0(dst, src)
	}
	return nil
}

// F16Overflows returns how many finite values of src become ±Inf in F16 (magnitude
// ≥ 65520, which rounds past the largest half, 65504).
func F16Overflows(src []float32) int {
	n := 0
	for _, v := range src {
		a := math.Abs(float64(v))
		if a >= 65520 && a <= math.MaxFloat32 {
			n++
		}
	}
	return n
}

const absMask = 0x7fffffff
const infBits = 0x7f800000

func nonFinite(src []float32, base int) error {
	for i, v := range src {
		if math.Float32bits(v)&absMask >= infBits {
			return fmt.Errorf("%w: element %d is %v", ErrNonFinite, base+i, v)
		}
	}
	return fmt.Errorf("%w", ErrNonFinite)
}

// QuantizeQ8_0 encodes src (a multiple of 32 values) as Q8_0 blocks into dst
// (len(src)/32·34 bytes), byte for byte as llama.cpp's quantize_row_q8_0_ref: per block
// amax = max|x|, d = amax/127, id = 1/d (0 if d = 0), q = roundf(x·id) (half away from
// zero, all in float32), and d stored as F16; the quants use the float32 d.
// NaN and Inf are refused (ErrNonFinite, naming the element); a block so small that 1/d
// overflows gets all-zero quants (what the reference yields on x86). The kernels are
// internal/kernels/q8's.
func QuantizeQ8_0(dst []byte, src []float32) error {
	if err := checkLengths(len(src), len(dst), TypeQ8_0); err != nil {
		return err
	}
	if bad := q8.Quantize(dst, src); bad >= 0 {
		return nonFinite(src[bad*QK8_0:bad*QK8_0+QK8_0], bad*QK8_0)
	}
	return nil
}

// DequantizeQ8_0 decodes Q8_0 blocks: value = d·q in float32 (dequantize_row_q8_0).
func DequantizeQ8_0(dst []float32, src []byte) error {
	if err := checkLengths(len(dst), len(src), TypeQ8_0); err != nil {
		return err
	}
	for i := 0; i < len(dst)/QK8_0; i++ {
		y := (*[QK8_0]float32)(dst[i*QK8_0:])
		x := (*[BlockBytesQ8_0]byte)(src[i*BlockBytesQ8_0:])
		d := dtype.F16ToF32(binary.LittleEndian.Uint16(x[:]))
		for j := range y {
			y[j] = float32(int8(x[2+j])) * d
		}
	}
	return nil
}

// QuantizeQ4_0 encodes src (a multiple of 32 values) as Q4_0 blocks into dst
// (len(src)/32·18 bytes) as llama.cpp's quantize_row_q4_0_ref: max = the value of
// largest magnitude (the first on ties), d = max/−8, id = 1/d (0 if d = 0), nibble =
// min(15, trunc(x·id + 8.5)) with the product and sum in float64 as gguf-py does to match
// the fused multiply-add of compiled llama.cpp; element j goes to the low nibble of byte j,
// element j+16 to the high nibble. NaN and Inf are refused (ErrNonFinite); a block so
// small that 1/d overflows gets all-zero nibbles (what the reference yields on x86).
func QuantizeQ4_0(dst []byte, src []float32) error {
	if err := checkLengths(len(src), len(dst), TypeQ4_0); err != nil {
		return err
	}
	if bad := quantizeQ4_0(dst, src); bad >= 0 {
		return nonFinite(src[bad*QK4_0:bad*QK4_0+QK4_0], bad*QK4_0)
	}
	return nil
}

// quantizeQ4_0 is the Q4_0 kernel; it returns the index of the first block holding a
// non-finite value, or -1.
func quantizeQ4_0(dst []byte, src []float32) int {
	nb := len(src) / QK4_0
	for i := 0; i < nb; i++ {
		x := (*[QK4_0]float32)(src[i*QK4_0:])
		y := (*[BlockBytesQ4_0]byte)(dst[i*BlockBytesQ4_0:])
		// first element of largest magnitude, comparing bit patterns of |x| (same order
		// as the values; NaN/Inf sort above every finite value)
		var mb uint32
		mi := 0
		for j, v := range x {
			if b := math.Float32bits(v) & absMask; b > mb {
				mb, mi = b, j
			}
		}
		if mb >= infBits {
			return i
		}
		d := x[mi] / -8
		if mb == 0 {
			d = float32(math.Copysign(0, -1)) // the reference's max stays +0: d = 0/−8 = −0
		}
		var id float32
		if d != 0 {
			id = 1 / d
		}
		binary.LittleEndian.PutUint16(y[:], dtype.F32ToF16(d))
		if math.IsInf(float64(id), 0) {
			clear(y[2:])
			continue
		}
		q := (*[QK4_0 / 2]byte)(y[2:])
		for j := range q {
			q[j] = q4Nibble(x[j], id) | q4Nibble(x[j+QK4_0/2], id)<<4
		}
	}
	return -1
}

// q4Nibble returns min(15, trunc(x·id + 8.5)) computed in float64 (x·id is exact there,
// so fused and unfused evaluation agree).
func q4Nibble(x, id float32) byte {
	v := float64(x)*float64(id) + 8.5
	return byte(min(15, int32(v)))
}

// DequantizeQ4_0 decodes Q4_0 blocks: value = (nibble − 8)·d in float32.
func DequantizeQ4_0(dst []float32, src []byte) error {
	if err := checkLengths(len(dst), len(src), TypeQ4_0); err != nil {
		return err
	}
	for i := 0; i < len(dst)/QK4_0; i++ {
		y := (*[QK4_0]float32)(dst[i*QK4_0:])
		x := (*[BlockBytesQ4_0]byte)(src[i*BlockBytesQ4_0:])
		d := dtype.F16ToF32(binary.LittleEndian.Uint16(x[:]))
		for j := 0; j < QK4_0/2; j++ {
			y[j] = float32(int32(x[2+j]&0x0f)-8) * d
			y[j+QK4_0/2] = float32(int32(x[2+j]>>4)-8) * d
		}
	}
	return nil
}
