package dtype

import (
	"math"

	"github.com/lorakit/lorakit/internal/kernels/half"
)

// BF16ToF32 returns the float32 whose upper half is the bfloat16 h (exact).
func BF16ToF32(h uint16) float32 { return half.BF16ToF32(h) }

// F32ToBF16 rounds f to bfloat16, to nearest with ties to even, as PyTorch
// does. A NaN stays a NaN (sign and upper payload kept, quiet bit set); it
// never rounds to infinity.
func F32ToBF16(f float32) uint16 { return half.F32ToBF16(f) }

// F16ToF32 returns the IEEE binary16 h as a float32 (exact; a NaN gets its
// quiet bit set). It is bit-identical to github.com/x448/float16.
func F16ToF32(h uint16) float32 { return half.F16ToF32(h) }

// F32ToF16 rounds f to IEEE binary16, to nearest with ties to even, including
// subnormal results; overflow gives ±Inf, a NaN stays a NaN (quiet bit set,
// upper payload kept). It is bit-identical to github.com/x448/float16.
func F32ToF16(f float32) uint16 { return half.F32ToF16(f) }

var e4m3Table, e5m2Table = f8Tables()

func f8Tables() (e4m3, e5m2 [256]float32) {
	for i := range 256 {
		e4m3[i] = e4m3Decode(uint8(i))
		e5m2[i] = F16ToF32(uint16(i) << 8) // e5m2 is the upper byte of a binary16
	}
	return
}

func e4m3Decode(b uint8) float32 {
	e, m := int(b>>3&0x0f), float64(b&7)
	var v float64
	switch {
	case b&0x7f == 0x7f:
		v = math.NaN()
	case e == 0:
		v = math.Ldexp(m, -9)
	default:
		v = math.Ldexp(8+m, e-10)
	}
	f := float32(v)
	if b&0x80 != 0 {
		f = -f
	}
	return f
}

// F8E4M3ToF32 decodes a float8 e4m3fn value (exact; 0x7f and 0xff are NaN).
func F8E4M3ToF32(b uint8) float32 { return e4m3Table[b] }

// F8E5M2ToF32 decodes a float8 e5m2 value (exact).
func F8E5M2ToF32(b uint8) float32 { return e5m2Table[b] }

// F32ToF8E4M3 rounds f to float8 e4m3fn, to nearest with ties to even, as
// PyTorch does (non-saturating): a value that rounds beyond ±448, an infinity
// or a NaN gives NaN (0x7f, with f's sign bit).
func F32ToF8E4M3(f float32) uint8 {
	u := math.Float32bits(f)
	sign := uint8(u>>24) & 0x80
	u &= 0x7fffffff
	// Both roundings are computed and one selected (no unpredictable branch):
	// below 2⁻⁶ adding 2¹⁴ makes the float unit round at the 2⁻⁹ subnormal
	// step; above, rebias the exponent and round the mantissa to 3 bits.
	const magic = 141 << 23
	nrm := (u + 0x7ffff + (u>>20)&1 - (127-7)<<23) >> 20
	sub := math.Float32bits(math.Float32frombits(u)+math.Float32frombits(magic)) - magic
	m := uint32(int32(u-121<<23) >> 31) // all ones below 2⁻⁶
	r := uint8(nrm&^m | sub&m)
	if u >= 0x43f00000 { // |f| ≥ 480, Inf, NaN
		r = 0x7f
	}
	return r | sign
}

// F32ToF8E5M2 rounds f to float8 e5m2, to nearest with ties to even, as
// PyTorch does: overflow gives ±Inf, a NaN gives 0x7f with f's sign bit.
func F32ToF8E5M2(f float32) uint8 {
	u := math.Float32bits(f)
	sign := uint8(u>>24) & 0x80
	u &= 0x7fffffff
	// As F32ToF8E4M3: subnormals below 2⁻¹⁴ round at 2⁻¹⁶ via 2⁷.
	const magic = 134 << 23
	nrm := (u + 0xfffff + (u>>21)&1 - (127-15)<<23) >> 21
	sub := math.Float32bits(math.Float32frombits(u)+math.Float32frombits(magic)) - magic
	m := uint32(int32(u-113<<23) >> 31) // all ones below 2⁻¹⁴
	r := uint8(nrm&^m | sub&m)
	if u >= 143<<23 { // |f| ≥ 65536, Inf
		r = 0x7c
	}
	if u > 0x7f800000 {
		r = 0x7f
	}
	return r | sign
}
