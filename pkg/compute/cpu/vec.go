package cpu

import "math"

// dotGeneric returns Σ a[i]·b[i] over len(a) elements, accumulated in eight
// interleaved f32 partial sums (the same association as the SIMD path).
func dotGeneric(a, b []float32) float32 {
	b = b[:len(a)]
	var s [8]float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		s[0] += a[i] * b[i]
		s[1] += a[i+1] * b[i+1]
		s[2] += a[i+2] * b[i+2]
		s[3] += a[i+3] * b[i+3]
		s[4] += a[i+4] * b[i+4]
		s[5] += a[i+5] * b[i+5]
		s[6] += a[i+6] * b[i+6]
		s[7] += a[i+7] * b[i+7]
	}
	for j := 0; i < len(a); i, j = i+1, j+1 {
		s[j] += a[i] * b[i]
	}
	return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))
}

// axpyGeneric computes y[i] += alpha·x[i] over len(y) elements.
func axpyGeneric(y, x []float32, alpha float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += alpha * x[i]
	}
}

// exp32 constants (Cephes expf): e^x = 2^n · e^r with n = round(x·log2 e)
// and r = x − n·ln 2 (ln 2 split in two for exactness), e^r by a degree-7
// polynomial. Relative error about 1 ulp on [expLo, expHi].
const (
	expLo    = -87.33654 // below: 0 (the result would be subnormal)
	expHi    = 88.0      // above: +Inf
	expLog2e = 1.44269504088896341
	expC1    = 0.693359375
	expC2    = -2.12194440e-4
	expP0    = 1.9875691500e-4
	expP1    = 1.3981999507e-3
	expP2    = 8.3334519073e-3
	expP3    = 4.1665795894e-2
	expP4    = 1.6666665459e-1
	expP5    = 5.0000001201e-1
)

// exp32 returns e^x in float32 arithmetic (the scalar twin of the SIMD path).
func exp32(x float32) float32 {
	switch {
	case x != x:
		return x
	case x < expLo:
		return 0
	case x > expHi:
		return float32(math.Inf(1))
	}
	n := float32(math.RoundToEven(float64(x * expLog2e)))
	r := x - n*expC1
	r -= n * expC2
	y := float32(expP0)
	y = y*r + expP1
	y = y*r + expP2
	y = y*r + expP3
	y = y*r + expP4
	y = y*r + expP5
	y = y*r*r + (r + 1)
	return y * math.Float32frombits(uint32(int32(n)+127)<<23)
}

// expsGeneric replaces every x[i] by e^x[i].
func expsGeneric(x []float32) {
	for i, v := range x {
		x[i] = exp32(v)
	}
}
