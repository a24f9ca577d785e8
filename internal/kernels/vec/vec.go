// Package vec holds vector primitives: the float32 dot product, axpy and
// exp of the CPU compute backend, and the 16- and 32-bit reductions of the
// format code (largest magnitude, of a whole vector or per block, binary16
// infinity check).
//
// Contracts. Dot sums in 16 partial sums (lane l takes the elements
// i ≡ l mod 16, in order) folded by a fixed tree; Axpy is y + alpha·x per
// element; Exps is Cephes expf (relative error below 3e-7 on
// [-87.3, 88]; 0 below, +Inf above, NaN kept). In the FMA tiers (avx2,
// avx512) each multiply-add is fused and the results are bit-identical to
// each other and to the references DotFMA, AxpyFMA and ExpFMA; the generic
// tier rounds products and sums separately where the Go compiler does not
// fuse them, a difference of a few ulp. The reductions are exact in every
// tier.
package vec

import (
	"fmt"
	"math"

	"github.com/lorakit/lorakit/internal/kernels/fma"
)

// Dot returns Σ a[i]·b[i] over len(a) elements. It panics if b is shorter.
func Dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s [16]float32
	n := 0
	if useFMA {
		n = len(a) &^ 15
		if n > 0 {
			dotK(a[:n], b[:n], &s)
		}
		for i := n; i < len(a); i++ {
			s[i-n] = fma.F32(a[i], b[i], s[i-n])
		}
		return fold16(&s)
	}
	for ; n+16 <= len(a); n += 16 {
		x, y := (*[16]float32)(a[n:n+16]), (*[16]float32)(b[n:n+16])
		for l := range s {
			s[l] += x[l] * y[l]
		}
	}
	for i := n; i < len(a); i++ {
		s[i-n] += a[i] * b[i]
	}
	return fold16(&s)
}

// fold16 adds the partial sums pairwise, halving: the order of the vector
// reductions.
func fold16(s *[16]float32) float32 {
	for w := 8; w >= 1; w /= 2 {
		for l := range w {
			s[l] += s[l+w]
		}
	}
	return s[0]
}

// DotFMA is Dot with every multiply-add fused: the FMA tiers' definition.
func DotFMA(a, b []float32) float32 {
	var s [16]float32
	for i := range a {
		s[i%16] = fma.F32(a[i], b[i], s[i%16])
	}
	return fold16(&s)
}

// Axpy sets y[i] += alpha·x[i]. It panics if x is shorter than y.
func Axpy(y, x []float32, alpha float32) {
	x = x[:len(y)]
	n := 0
	if useFMA {
		n = len(y) &^ (lanes - 1)
		if n > 0 {
			axpyK(y[:n], x[:n], alpha)
		}
		AxpyFMA(y[n:], x[n:], alpha)
		return
	}
	for i := range y {
		y[i] += alpha * x[i]
	}
}

// AxpyFMA sets y[i] = fma(alpha, x[i], y[i]): the FMA tiers' definition.
func AxpyFMA(y, x []float32, alpha float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] = fma.F32(alpha, x[i], y[i])
	}
}

// exp constants (Cephes expf): e^x = 2^n · e^r with n = round(x·log2 e) and
// r = x − n·ln 2 (ln 2 split in two for exactness), e^r by a degree-7
// polynomial. The assembly embeds the same values.
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

// Exp returns e^x in float32 arithmetic (the generic tier's).
func Exp(x float32) float32 {
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

// ExpFMA is Exp with the multiply-adds fused: the FMA tiers' definition.
func ExpFMA(x float32) float32 {
	switch {
	case x != x:
		return x
	case x < expLo:
		return 0
	case x > expHi:
		return float32(math.Inf(1))
	}
	n := float32(math.RoundToEven(float64(x * expLog2e)))
	r := fma.F32(n, -expC1, x)
	r = fma.F32(n, -expC2, r)
	y := fma.F32(expP0, r, expP1)
	y = fma.F32(y, r, expP2)
	y = fma.F32(y, r, expP3)
	y = fma.F32(y, r, expP4)
	y = fma.F32(y, r, expP5)
	y = fma.F32(float32(y*r), r, float32(r+1))
	return y * math.Float32frombits(uint32(int32(n)+127)<<23)
}

// Exps replaces every x[i] by e^x[i].
func Exps(x []float32) {
	n := 0
	if useFMA {
		n = len(x) &^ (lanes - 1)
		if n > 0 {
			expsK(x[:n])
		}
		for i := n; i < len(x); i++ {
			x[i] = ExpFMA(x[i])
		}
		return
	}
	for i, v := range x {
		x[i] = Exp(v)
	}
}

// MaxAbs16 returns the largest h&0x7fff: for bfloat16 and binary16 values
// the bits of the largest magnitude (NaNs order above Inf).
func MaxAbs16(h []uint16) uint16 {
	var out [32]uint16
	n := 0
	if useFMA {
		n = len(h) &^ (2*lanes - 1)
		if n > 0 {
			maxAbs16K(h[:n], &out)
		}
	}
	m := maxAbsGo(h[n:], 0x7fff)
	for _, v := range out {
		m = max(m, v)
	}
	return m
}

// MaxAbs32 returns the largest u&0x7fffffff: for float32 values the bits of
// the largest magnitude (NaNs order above Inf).
func MaxAbs32(u []uint32) uint32 {
	var out [16]uint32
	n := 0
	if useFMA {
		n = len(u) &^ (lanes - 1)
		if n > 0 {
			maxAbs32K(u[:n], &out)
		}
	}
	m := maxAbsGo(u[n:], 0x7fffffff)
	for _, v := range out {
		m = max(m, v)
	}
	return m
}

// maxAbsGo returns the largest x&mask, in four running maxima: the
// generic tier, and the tails of the others.
func maxAbsGo[T uint16 | uint32](x []T, mask T) T {
	var m0, m1, m2, m3 T
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := (*[4]T)(x[i : i+4])
		m0, m1, m2, m3 = max(m0, v[0]&mask), max(m1, v[1]&mask), max(m2, v[2]&mask), max(m3, v[3]&mask)
	}
	for ; i < len(x); i++ {
		m0 = max(m0, x[i]&mask)
	}
	return max(m0, m1, m2, m3)
}

// MaxAbs16Blocks sets dst[i] = MaxAbs16(h[i·block : min((i+1)·block, len(h))])
// for every block of h, the last of which may be partial: one call for a
// run of blocks (the per-block absmax of NF4). len(dst) must be the number
// of blocks, ceil(len(h)/block), and block positive; it panics otherwise.
// The assembly tiers take blocks of a multiple of 32 values.
func MaxAbs16Blocks(dst, h []uint16, block int) {
	full := fullBlocks(len(dst), len(h), block)
	if useFMA && block%32 == 0 && full > 0 {
		maxAbs16BlocksK(dst[:full], h[:full*block], block)
	} else {
		full = 0
	}
	maxAbsBlocksGo(dst[full:], h[full*block:], block, 0x7fff)
}

// MaxAbs32Blocks is MaxAbs16Blocks for 32-bit values: dst[i] =
// MaxAbs32(u[i·block : min((i+1)·block, len(u))]).
func MaxAbs32Blocks(dst, u []uint32, block int) {
	full := fullBlocks(len(dst), len(u), block)
	if useFMA && block%32 == 0 && full > 0 {
		maxAbs32BlocksK(dst[:full], u[:full*block], block)
	} else {
		full = 0
	}
	maxAbsBlocksGo(dst[full:], u[full*block:], block, 0x7fffffff)
}

// fullBlocks checks the arguments of the Blocks reductions and returns the
// number of whole blocks in n values.
func fullBlocks(nDst, n, block int) int {
	if block <= 0 || nDst != (n+block-1)/block {
		panic(fmt.Sprintf("vec: %d block maxima of %d values in blocks of %d", nDst, n, block))
	}
	return n / block
}

// maxAbsBlocksGo is the generic tier of the Blocks reductions.
func maxAbsBlocksGo[T uint16 | uint32](dst, x []T, block int, mask T) {
	for i := range dst {
		dst[i] = maxAbsGo(x[i*block:min((i+1)*block, len(x))], mask)
	}
}

// AnyF16Inf reports whether some binary16 value of h is ±Inf.
func AnyF16Inf(h []uint16) bool {
	n := 0
	if useFMA {
		n = len(h) &^ (2*lanes - 1)
		if n > 0 {
			out := [32]uint16{}
			for i := range out {
				out[i] = 0xffff
			}
			minInf16K(h[:n], &out)
			for _, v := range out {
				if v == 0 {
					return true
				}
			}
		}
	}
	return anyF16InfGo(h[n:])
}

// infLanes sets the high bit of each 16-bit lane of w that holds ±Inf: a
// lane of y = (w & 0x7fff…) ^ 0x7c00… is zero exactly when it held ±Inf;
// lanes are below 0x8000, so (y − 1…) &^ y sets a lane's high bit only for a
// zero lane.
func infLanes(w uint64) uint64 {
	y := w&0x7fff7fff7fff7fff ^ 0x7c007c007c007c00
	return (y - 0x0001000100010001) &^ y & 0x8000800080008000
}

// anyF16InfGo looks at eight values per step, without branches: overflows
// are rare.
func anyF16InfGo(h []uint16) bool {
	lane := infLanes
	var acc uint64
	i := 0
	for ; i+8 <= len(h); i += 8 {
		q := (*[8]uint16)(h[i : i+8])
		acc |= lane(uint64(q[0])|uint64(q[1])<<16|uint64(q[2])<<32|uint64(q[3])<<48) |
			lane(uint64(q[4])|uint64(q[5])<<16|uint64(q[6])<<32|uint64(q[7])<<48)
	}
	for ; i < len(h); i++ {
		if h[i]&0x7fff == 0x7c00 {
			return true
		}
	}
	return acc != 0
}

// DotN sets out[j] = Dot(q, k[j·ld : j·ld+len(q)]) for j < len(out).
func DotN(q, k []float32, ld int, out []float32) {
	if len(out) == 0 {
		return
	}
	_ = k[(len(out)-1)*ld+len(q)-1]
	if useFMA && len(q)%16 == 0 && len(q) > 0 && ld >= len(q) {
		dotNK(q, k, ld, out)
		return
	}
	for j := range out {
		out[j] = Dot(q, k[j*ld:j*ld+len(q)])
	}
}

// AxpyN does Axpy(y[j·ld : j·ld+len(x)], x, alpha[j]) for j < len(alpha).
func AxpyN(y []float32, ld int, x, alpha []float32) {
	if len(alpha) == 0 {
		return
	}
	_ = y[(len(alpha)-1)*ld+len(x)-1]
	if useFMA && len(x)%lanes == 0 && len(x) > 0 && ld >= len(x) {
		axpyNK(y, ld, x, alpha)
		return
	}
	for j, a := range alpha {
		Axpy(y[j*ld:j*ld+len(x)], x, a)
	}
}

// AxpyAcc does Axpy(y, x[j·ld : j·ld+len(y)], alpha[j]) for j = 0, 1, …
// in order: y accumulates the rows of x weighted by alpha.
func AxpyAcc(y, x []float32, ld int, alpha []float32) {
	if len(alpha) == 0 {
		return
	}
	_ = x[(len(alpha)-1)*ld+len(y)-1]
	if useFMA && len(y)%(4*lanes) == 0 && len(y) > 0 {
		axpyAccK(y, x, ld, alpha)
		return
	}
	for j, a := range alpha {
		Axpy(y, x[j*ld:j*ld+len(y)], a)
	}
}

// Impl names the implementation in use ("generic", "avx2", "avx512").
func Impl() string { return implName }
