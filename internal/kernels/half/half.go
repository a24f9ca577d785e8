// Package half converts between float32 and the 16-bit float formats
// bfloat16 and IEEE binary16: single values, and whole slices with a kernel
// for each CPU tier (see internal/kernels/tier).
//
// Contract: every tier gives results bit-identical to the scalar functions
// of this package, for every input (NaN payloads, subnormals, ±0 and ±Inf
// included). Widening is exact; narrowing rounds to nearest with ties to
// even; a NaN stays a NaN with its quiet bit set.
package half

import "math"

// BF16ToF32 returns the float32 whose upper half is the bfloat16 h (exact).
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 rounds f to bfloat16, to nearest with ties to even, as PyTorch
// does. A NaN stays a NaN (sign and upper payload kept, quiet bit set); it
// never rounds to infinity.
func F32ToBF16(f float32) uint16 { return bf16Bits(math.Float32bits(f)) }

func bf16Bits(u uint32) uint16 {
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x0040
	}
	return uint16((u + 0x7fff + (u>>16)&1) >> 16)
}

// F16ToF32 returns the IEEE binary16 h as a float32 (exact; a NaN gets its
// quiet bit set). It is bit-identical to github.com/x448/float16.
func F16ToF32(h uint16) float32 {
	se := h >> 10
	return math.Float32frombits(f16Mant[uint32(f16Off[se])+uint32(h&0x3ff)] + f16Exp[se])
}

// F32ToF16 rounds f to IEEE binary16, to nearest with ties to even, including
// subnormal results; overflow gives ±Inf, a NaN stays a NaN (quiet bit set,
// upper payload kept). It is bit-identical to github.com/x448/float16.
func F32ToF16(f float32) uint16 { return f16Bits(math.Float32bits(f)) }

// f16Bits rounds with the float unit (after Maratyszcza's FP16 library):
// |f|·2¹¹²·2⁻¹¹⁰ is |f| with what overflows binary16 turned into Inf, and
// adding the power of two whose float32 ULP is the binary16 ULP of the result
// (never below 2⁻²⁴) makes the hardware round to nearest even; the sum's bits
// then hold the binary16 exponent and mantissa.
func f16Bits(w uint32) uint16 {
	a := w & 0x7fffffff
	base := float32(float32(math.Float32frombits(a)*0x1p112) * 0x1p-110) // no FMA
	bias := max(a&0x7f800000, 0x38800000) + 0x07800000
	bits := math.Float32bits(math.Float32frombits(bias) + base)
	r := uint16((bits>>13)&0x7c00 + bits&0x0fff)
	if a > 0x7f800000 { // NaN: quiet, upper payload kept
		r = 0x7e00 | uint16(w>>13)&0x03ff
	}
	return r | uint16(w>>16)&0x8000
}

// f16Mant, f16Exp and f16Off decode a binary16 with three lookups (van der
// Zijp, "Fast Half Float Conversions"): bits = f16Mant[f16Off[h>>10] +
// h&0x3ff] + f16Exp[h>>10]. Rows: 0 zero/subnormal, 1024 normal, 2048 Inf/NaN
// (quiet bit set on NaN).
var f16Mant, f16Exp, f16Off = f16Tables()

func f16Tables() (mant [3072]uint32, exp [64]uint32, off [64]uint16) {
	for m := range uint32(1024) {
		mant[m] = math.Float32bits(float32(m) * 0x1p-24)
		mant[1024+m] = 112<<23 + m<<13
		mant[2048+m] = 112<<23 + m<<13
		if m != 0 {
			mant[2048+m] |= 0x00400000
		}
	}
	for se := range uint32(64) {
		e, sign := se&31, se>>5<<31
		switch e {
		case 0:
			exp[se], off[se] = sign, 0
		case 31:
			exp[se], off[se] = sign|143<<23, 2048
		default:
			exp[se], off[se] = sign|e<<23, 1024
		}
	}
	return
}

// DecodeBF16 widens the bfloat16 values src[:len(dst)] into dst. It panics
// if src is shorter than dst.
func DecodeBF16(dst []float32, src []uint16) {
	src = src[:len(dst)]
	n := len(dst) &^ (impl.block - 1)
	if n > 0 {
		impl.decodeBF16(dst[:n], src[:n])
	}
	decodeBF16Go(dst[n:], src[n:])
}

// EncodeBF16 rounds src[:len(dst)] to bfloat16 into dst, as F32ToBF16. It
// panics if src is shorter than dst.
func EncodeBF16(dst []uint16, src []float32) {
	src = src[:len(dst)]
	n := len(dst) &^ (impl.block - 1)
	if n > 0 {
		impl.encodeBF16(dst[:n], src[:n])
	}
	encodeBF16Go(dst[n:], src[n:])
}

// DecodeF16 widens the binary16 values src[:len(dst)] into dst, as
// F16ToF32. It panics if src is shorter than dst.
func DecodeF16(dst []float32, src []uint16) {
	src = src[:len(dst)]
	n := len(dst) &^ (impl.block - 1)
	if n > 0 {
		impl.decodeF16(dst[:n], src[:n])
	}
	decodeF16Go(dst[n:], src[n:])
}

// EncodeF16 rounds src[:len(dst)] to binary16 into dst, as F32ToF16. It
// panics if src is shorter than dst.
func EncodeF16(dst []uint16, src []float32) {
	src = src[:len(dst)]
	n := len(dst) &^ (impl.block - 1)
	if n > 0 {
		impl.encodeF16(dst[:n], src[:n])
	}
	encodeF16Go(dst[n:], src[n:])
}

// Impl names the implementation in use ("generic", "avx2", "avx512",
// "neon").
func Impl() string { return impl.name }

// kernels is one tier's implementation: each function converts a multiple
// of block elements.
type kernels struct {
	name                  string
	block                 int
	decodeBF16, decodeF16 func(dst []float32, src []uint16)
	encodeBF16, encodeF16 func(dst []uint16, src []float32)
}

var generic = kernels{"generic", 1, decodeBF16Go, decodeF16Go, encodeBF16Go, encodeF16Go}

// The plain-Go kernels: the reference for the others, and the Generic tier.
// Both slices have the same length.

func decodeBF16Go(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = math.Float32frombits(uint32(h) << 16)
	}
}

func encodeBF16Go(dst []uint16, src []float32) {
	src = src[:len(dst)]
	for i, f := range src {
		// bf16Bits without a branch: the NaN case is a conditional move.
		u := math.Float32bits(f)
		r := (u + 0x7fff + (u>>16)&1) >> 16
		if u&0x7fffffff > 0x7f800000 {
			r = u>>16 | 0x40
		}
		dst[i] = uint16(r)
	}
}

func decodeF16Go(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = F16ToF32(h)
	}
}

func encodeF16Go(dst []uint16, src []float32) {
	src = src[:len(dst)]
	for i, f := range src {
		dst[i] = f16Bits(math.Float32bits(f))
	}
}
