// Package fma computes the IEEE float32 fused multiply-add in plain Go: the
// reference for every kernel whose contract is "the hardware's FMA chain"
// (the GEMM micro-kernels, the rank-r merge update), and the arithmetic of
// their plain-Go tiers where results must match those kernels bit for bit.
package fma

import "math"

// F32 returns a·b + c rounded once to float32 (an IEEE float32 fused
// multiply-add). The product of two float32 values is exact in float64, so
// s = a·b + c in float64 has one rounding, and float32(s) is the correctly
// rounded result unless s lies exactly on a float32 rounding midpoint while
// the exact value does not (the double rounding of the plain
// float32(math.FMA(a, b, c))), or s is in the float32 subnormal range: there
// it rounds to odd first (slow).
func F32(a, b, c float32) float32 {
	if s, ok := Fast(a, b, c); ok {
		return float32(s)
	}
	return slow(a, b, c)
}

// Fast returns s = a·b + c rounded once to float64, and whether float32(s)
// is F32(a, b, c): false when s has the midpoint pattern in the bits float32
// drops or lies below the float32 normal range (and for some Inf and NaN
// results). It is small enough to be inlined into loops that call F32 only
// when ok is false.
func Fast(a, b, c float32) (s float64, ok bool) {
	s = float64(float64(a)*float64(b)) + float64(c)
	bits := math.Float64bits(s)
	return s, bits&(1<<29-1) != 1<<28 && bits<<1 >= (1023-126)<<53
}

// slow rounds a·b + c to float64 with round-to-odd (from the exact TwoSum
// error), then to float32: a round-to-odd result with at least two more bits
// than the target rounds to nearest as a single rounding would (Boldo and
// Melquiond, "Emulation of FMA and correctly rounded sums", 2008).
func slow(a, b, c float32) float32 {
	p := float64(a) * float64(b) // exact: 24+24 significant bits
	cc := float64(c)
	s := float64(p + cc)
	// TwoSum: p + cc == s + e exactly.
	bb := float64(s - p)
	e := float64(float64(p-float64(s-bb)) + float64(cc-bb))
	if e != 0 && s-s == 0 && e == e { // inexact, finite
		bits := math.Float64bits(s)
		if bits&1 == 0 { // make the last bit odd, towards the exact value
			if (e > 0) == (s > 0) {
				bits++
			} else {
				bits--
			}
			s = math.Float64frombits(bits)
		}
	}
	return float32(s)
}
