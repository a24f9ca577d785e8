package merge

import "math"

// The rank-r update kernel. Every element of a LoRA product L·R (L is
// rows×r, R is r×cols, both float32) is the chain of float32 fused
// multiply-adds acc ← fma(L[i,k], R[k,j], acc) for k = 0 … r−1 starting
// from acc = 0 (spec peft.md §7.6: PEFT's f32 CPU product, reproduced bit for
// bit), then d = f32(acc·scale) and v[i,j] = f32(v[i,j] + d).
//
// The SIMD kernels use the hardware's float32 FMA. The generic kernel
// computes the same correctly rounded float32 FMA in software (fma32), so
// every build gives the same bytes.

// fma32 returns a·b + c rounded once to float32 (an IEEE float32 fused
// multiply-add). The product of two float32 values is exact in float64, so
// s = a·b + c in float64 has one rounding, and float32(s) is the correctly
// rounded result unless s lies exactly on a float32 rounding midpoint while
// the exact value does not (the double rounding of the plain
// float32(math.FMA(a, b, c))), or s is in the float32 subnormal range. There
// fma32Slow rounds to odd first.
func fma32(a, b, c float32) float32 {
	s := float64(float64(a)*float64(b)) + float64(c)
	bits := math.Float64bits(s)
	exp := bits >> 52 & 0x7ff
	if bits&(1<<29-1) != 1<<28 && exp >= 1023-126 || exp == 0x7ff {
		return float32(s)
	}
	return fma32Slow(a, b, c)
}

// fma32Slow rounds a·b + c to float64 with round-to-odd (from the exact
// TwoSum error), then to float32: a round-to-odd result with at least two
// more bits than the target rounds to nearest as a single rounding would
// (Boldo and Melquiond, "Emulation of FMA and correctly rounded sums", 2008).
func fma32Slow(a, b, c float32) float32 {
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

// lowRankAddGeneric adds f32(f32(L·R)·scale) to the rows×cols block v, with
// L rows×r and R r×cols, all row-major. acc is scratch of at least cols
// values.
func lowRankAddGeneric(v []float32, rows, cols int, l, rm []float32, r int, scale float32, acc []float32) {
	acc = acc[:cols]
	for i := 0; i < rows; i++ {
		clear(acc)
		li := l[i*r : i*r+r]
		for k, lk := range li {
			rk := rm[k*cols : k*cols+cols]
			for j, x := range rk {
				acc[j] = fma32(lk, x, acc[j])
			}
		}
		vi := v[i*cols : i*cols+cols]
		for j, a := range acc {
			vi[j] = float32(vi[j] + float32(a*scale))
		}
	}
}

// lowRankTailGeneric is lowRankAddGeneric over the columns [c0, cols) only,
// for the SIMD kernels' remainders.
func lowRankTailGeneric(v []float32, rows, cols, c0 int, l, rm []float32, r int, scale float32) {
	for i := 0; i < rows; i++ {
		li := l[i*r : i*r+r]
		for j := c0; j < cols; j++ {
			var acc float32
			for k, lk := range li {
				acc = fma32(lk, rm[k*cols+j], acc)
			}
			v[i*cols+j] = float32(v[i*cols+j] + float32(acc*scale))
		}
	}
}
