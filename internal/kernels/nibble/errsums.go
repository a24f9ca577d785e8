package nibble

import (
	"fmt"
	"math"

	"github.com/lorakit/lorakit/internal/kernels/half"
)

// Rounding is how ErrSums rounds the dequantized values: to the original
// dtype of the weight, as bitsandbytes' dequantize_4bit returns them.
type Rounding uint8

// The roundings: none (float32), bfloat16 and binary16 (both to nearest
// even; a bfloat16 NaN keeps its top bits and gets the quiet bit).
const (
	RoundF32 Rounding = iota
	RoundBF16
	RoundF16
)

// ErrSums measures x against its 4-bit codes: block b holds
// x[b·bs : (b+1)·bs] (the last may be partial), its codes start at
// packed[b·bs/2], and code c dequantizes to round(f32(code[c]·scales[b])).
// The squared differences are summed in float32 in 32 lanes per block —
// lane l < 16 takes element 2l of every group of 32, lane 16+l element
// 2l+1 — then added lane by lane into float64 sums. It returns those sums
// and the largest |difference| as float32 bits (NaN above Inf).
func ErrSums(code *[16]float32, scales []float32, r Rounding, x []float32, packed []byte, bs int) (acc [32]float64, maxBits uint32) {
	nb := len(scales)
	if bs <= 0 || bs%2 != 0 || len(x) > nb*bs || len(x) <= (nb-1)*bs && nb > 0 || len(packed) < (len(x)+1)/2 {
		panic(fmt.Sprintf("nibble: error sums of %d values in %d blocks of %d, packed %d", len(x), nb, bs, len(packed)))
	}
	full := 0
	if impl.errSums != nil && bs%32 == 0 {
		full = len(x) / bs
		if full > 0 {
			maxBits = impl.errSums(x[:full*bs], packed[:full*bs/2], scales[:full], code, bs, int(r), &acc)
		}
	}
	a, m := errSumsGo(code, scales[full:], r, x[full*bs:], packed[full*bs/2:], bs)
	for l := range acc {
		acc[l] += a[l]
	}
	return acc, max(maxBits, m)
}

func errSumsGo(code *[16]float32, scales []float32, r Rounding, x []float32, packed []byte, bs int) (acc [32]float64, mx uint32) {
	for b, scale := range scales {
		t := blockTable(code, scale, r)
		xb := x[b*bs : min((b+1)*bs, len(x))]
		pb := packed[b*bs/2:]
		var a [32]float32
		full := len(xb) &^ 31
		for g := 0; g < full; g += 32 {
			for l := range 16 {
				p := pb[g/2+l]
				de := xb[g+2*l] - t[p>>4]
				do := xb[g+2*l+1] - t[p&15]
				a[l] += float32(de * de)
				a[16+l] += float32(do * do)
				mx = max(mx, math.Float32bits(de)&0x7fffffff, math.Float32bits(do)&0x7fffffff)
			}
		}
		for k, v := range xb[full:] { // a partial group: the same lanes
			p := pb[(full+k)/2]
			c := p >> 4
			if k%2 == 1 {
				c = p & 15
			}
			d := v - t[c]
			a[(k%2)*16+k/2] += float32(d * d)
			mx = max(mx, math.Float32bits(d)&0x7fffffff)
		}
		for l := range a {
			acc[l] += float64(a[l])
		}
	}
	return acc, mx
}

// blockTable returns the dequantized value of every code of a block.
func blockTable(code *[16]float32, scale float32, r Rounding) (t [16]float32) {
	for i := range t {
		t[i] = float32(code[i] * scale)
	}
	switch r {
	case RoundBF16:
		for i, v := range t {
			t[i] = half.BF16ToF32(half.F32ToBF16(v))
		}
	case RoundF16:
		for i, v := range t {
			t[i] = half.F16ToF32(half.F32ToF16(v))
		}
	}
	return t
}
