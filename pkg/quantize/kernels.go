package quantize

import (
	"encoding/binary"
	"math"

	"github.com/lorakit/lorakit/pkg/dtype"
)

// The hot loops of both passes, in plain Go. kernels_simd_amd64.go has
// AVX-512 twins that give bit-identical results; kernels_test.go compares
// them.

// maxBits16Generic returns the largest magnitude bits (u & 0x7fff) over the
// little-endian 16-bit elements of b: for bf16 and f16 the bits of max |x|,
// NaN ordering above Inf.
func maxBits16Generic(b []byte) uint16 {
	const mask = 0x7fff
	var m0, m1, m2, m3 uint16
	i := 0
	for ; i+8 <= len(b); i += 8 {
		m0 = max(m0, binary.LittleEndian.Uint16(b[i:])&mask)
		m1 = max(m1, binary.LittleEndian.Uint16(b[i+2:])&mask)
		m2 = max(m2, binary.LittleEndian.Uint16(b[i+4:])&mask)
		m3 = max(m3, binary.LittleEndian.Uint16(b[i+6:])&mask)
	}
	for ; i+2 <= len(b); i += 2 {
		m0 = max(m0, binary.LittleEndian.Uint16(b[i:])&mask)
	}
	return max(m0, m1, m2, m3)
}

// maxBits32Generic returns the bits of the largest float32 magnitude in b
// (little-endian), NaN ordering above Inf.
func maxBits32Generic(b []byte) uint32 {
	const mask = 0x7fffffff
	var m0, m1, m2, m3 uint32
	i := 0
	for ; i+16 <= len(b); i += 16 {
		m0 = max(m0, binary.LittleEndian.Uint32(b[i:])&mask)
		m1 = max(m1, binary.LittleEndian.Uint32(b[i+4:])&mask)
		m2 = max(m2, binary.LittleEndian.Uint32(b[i+8:])&mask)
		m3 = max(m3, binary.LittleEndian.Uint32(b[i+12:])&mask)
	}
	for ; i+4 <= len(b); i += 4 {
		m0 = max(m0, binary.LittleEndian.Uint32(b[i:])&mask)
	}
	return max(m0, m1, m2, m3)
}

// errBlocksGeneric measures x against its dequantized values, block by
// block: block b holds x[b·bs : (b+1)·bs] (the last may be partial), its
// codes start at packed[b·bs/2], and code c dequantizes to
// blockTable(code, scales[b], dt)[c]. The squared differences are summed in
// float32 in 32 lanes per block — lane l < 16 takes element 2l of every
// group of 32, lane 16+l element 2l+1 — then added lane by lane into float64
// sums. It returns those sums and the largest |difference| as float32 bits
// (NaN above Inf).
func errBlocksGeneric(code *[16]float32, scales []float32, dt dtype.DType, x []float32, packed []byte, bs int) (acc [32]float64, mx uint32) {
	for b, scale := range scales {
		t := blockTable(code, scale, dt)
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
		mx = errTail(&t, xb[full:], pb[full/2:], &a, mx)
		for l := range a {
			acc[l] += float64(a[l])
		}
	}
	return acc, mx
}

// blockTable returns the dequantized value of every code of a block:
// f32(code · scale) rounded to dt (bf16 and f16 to nearest even; a bf16 NaN
// keeps its top bits and gets the quiet bit, as dtype.F32ToBF16 does).
func blockTable(code *[16]float32, scale float32, dt dtype.DType) (t [16]float32) {
	for i := range t {
		t[i] = float32(code[i] * scale)
	}
	switch dt {
	case dtype.BF16:
		for i, v := range t {
			u := math.Float32bits(v)
			if u&0x7fffffff > 0x7f800000 {
				u |= 0x00400000
			} else {
				u += 0x7fff + u>>16&1
			}
			t[i] = math.Float32frombits(u &^ 0xffff)
		}
	case dtype.F16:
		for i, v := range t {
			t[i] = dtype.F16ToF32(dtype.F32ToF16(v))
		}
	}
	return t
}

// errTail handles the last len(x) < 32 elements of a partial block (x
// starts at an even element; lanes as in errBlocksGeneric).
func errTail(t *[16]float32, x []float32, packed []byte, a *[32]float32, mx uint32) uint32 {
	for k, v := range x {
		p := packed[k/2]
		c := p >> 4
		if k%2 == 1 {
			c = p & 15
		}
		d := v - t[c]
		a[(k%2)*16+k/2] += float32(d * d)
		mx = max(mx, math.Float32bits(d)&0x7fffffff)
	}
	return mx
}
