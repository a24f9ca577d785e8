// Package nibble holds the 4-bit blockwise quantization kernels of the
// bitsandbytes NF4 and FP4 formats: encoding full blocks (block absmax,
// scaling, nearest code, two codes per byte) and decoding codes through a
// per-block table. It knows thresholds and tables, not the formats: pkg/nf4
// supplies them (and handles partial blocks and blocks holding Inf or NaN).
//
// Contract: every tier gives the bytes and values of the plain-Go code,
// bit for bit, for every input, with one freedom: where both factors of a
// product (a code and a scale, or a value and a table entry) are NaN, the
// result is a NaN whose payload may be either's (the hardware keeps the
// first operand's, and Go does not fix the order of a commutative
// multiply).
package nibble

import (
	"fmt"
	"math"
)

// Codebook is a 4-bit code as the encoder sees it: a value scaled into
// [−1, 1] that lies above exactly r of the 15 ascending thresholds Thr[0:15]
// (ties go to the lower rank, as torch.bucketize(right=False)) gets the
// code Code[r]. Build one with NewCodebook.
type Codebook struct {
	Thr  [16]float32 // Thr[15] = +Inf
	Code [16]uint32
	lut  []lutEntry // the plain-Go search (see lut); nil: binary search
}

// NewCodebook returns the codebook with thresholds thr (15 values,
// strictly increasing) and rank-to-code map code.
func NewCodebook(thr [15]float32, code [16]uint8) *Codebook {
	cb := &Codebook{}
	copy(cb.Thr[:], thr[:])
	cb.Thr[15] = float32(math.Inf(1))
	for i, c := range code {
		cb.Code[i] = uint32(c)
	}
	cb.lut = buildLUT(thr[:], code)
	return cb
}

// Nibble returns the code of a non-NaN scaled value s.
func (cb *Codebook) Nibble(s float32) uint8 {
	if cb.lut == nil {
		r := 0
		for step := 8; step > 0; step /= 2 {
			if s > cb.Thr[r+step-1] {
				r += step
			}
		}
		return uint8(cb.Code[r])
	}
	k := OrderedKey(math.Float32bits(s))
	e := &cb.lut[k>>lutShift]
	m := uint8(0) - uint8((uint64(e.thr)-uint64(k))>>63) // all ones when k > thr
	return e.le ^ (e.le^e.gt)&m
}

// Encode quantizes len(absmax) full blocks of bs values of src (bs a
// multiple of 32) into dst (bs/2 bytes per block, the even element in the
// high nibble). For each block it stores in absmax the largest |x| as the
// float32 whose bits are the largest of the bits of |x| (a NaN or an Inf
// when the block holds one). Finite blocks are scaled by
// inv = f32(1/max(absmax, minDiv)) and coded by cb; the bytes of a block
// holding Inf or NaN are left for the caller.
func Encode(dst []byte, absmax, src []float32, bs int, cb *Codebook, minDiv float32) {
	nb := len(absmax)
	if bs <= 0 || bs%32 != 0 || len(src) < nb*bs || len(dst) < nb*bs/2 {
		panic(fmt.Sprintf("nibble: encode %d blocks of %d with src %d, dst %d", nb, bs, len(src), len(dst)))
	}
	if nb == 0 {
		return
	}
	if impl.encode != nil {
		impl.encode(dst[:nb*bs/2], absmax, src[:nb*bs], bs, cb, minDiv)
		return
	}
	encodeGo(dst, absmax, src, bs, cb, minDiv)
}

func encodeGo(dst []byte, absmax, src []float32, bs int, cb *Codebook, minDiv float32) {
	for b := range absmax {
		x := src[b*bs : (b+1)*bs]
		m := maxAbsBits(x)
		absmax[b] = math.Float32frombits(m)
		if m >= 0x7f800000 {
			continue
		}
		div := math.Float32frombits(m)
		if div < minDiv {
			div = minDiv
		}
		inv := 1 / div
		d := dst[b*bs/2 : (b+1)*bs/2]
		for k := 0; k+4 <= len(d); k += 4 {
			v := (*[8]float32)(x[2*k : 2*k+8])
			o := (*[4]byte)(d[k : k+4])
			o[0] = cb.Nibble(v[0]*inv)<<4 | cb.Nibble(v[1]*inv)
			o[1] = cb.Nibble(v[2]*inv)<<4 | cb.Nibble(v[3]*inv)
			o[2] = cb.Nibble(v[4]*inv)<<4 | cb.Nibble(v[5]*inv)
			o[3] = cb.Nibble(v[6]*inv)<<4 | cb.Nibble(v[7]*inv)
		}
	}
}

// maxAbsBits returns the largest float32 bits of |x| compared as unsigned
// integers: the absmax of a finite block, ≥ 0x7f800000 when it holds Inf or
// NaN (NaN bits order above Inf).
func maxAbsBits(x []float32) uint32 {
	var m0, m1, m2, m3 uint32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := (*[4]float32)(x[i : i+4])
		m0 = max(m0, math.Float32bits(v[0])&0x7fffffff)
		m1 = max(m1, math.Float32bits(v[1])&0x7fffffff)
		m2 = max(m2, math.Float32bits(v[2])&0x7fffffff)
		m3 = max(m3, math.Float32bits(v[3])&0x7fffffff)
	}
	for ; i < len(x); i++ {
		m0 = max(m0, math.Float32bits(x[i])&0x7fffffff)
	}
	return max(m0, m1, m2, m3)
}

// Decode sets out[k] = f32(code[nibble k] · scales[k/bs]) for k < len(out):
// nibble k is the high nibble of packed[k/2] for even k, the low one for
// odd k. len(packed) must be at least (len(out)+1)/2 and len(scales) at
// least ceil(len(out)/bs).
func Decode(out []float32, packed []byte, scales []float32, code *[16]float32, bs int) {
	decode(out, packed, scales, code, bs, impl.decode, func(f float32) float32 { return f })
}

// DecodeBF16 is Decode with every value rounded to bfloat16 (to nearest
// even; a NaN stays a NaN with its quiet bit set).
func DecodeBF16(out []uint16, packed []byte, scales []float32, code *[16]float32, bs int) {
	decode(out, packed, scales, code, bs, impl.decodeBF16, bf16)
}

// decode runs the kernel k (nil: none) on the whole blocks and the plain-Go
// lookups on the rest, entry turning a product into an output value.
func decode[T float32 | uint16](out []T, packed []byte, scales []float32, code *[16]float32, bs int,
	k func([]T, []byte, []float32, *[16]float32, int), entry func(float32) T) {
	n := len(out)
	if bs <= 0 || bs%2 != 0 || len(packed) < (n+1)/2 || len(scales) < (n+bs-1)/bs {
		panic(fmt.Sprintf("nibble: decode %d values in blocks of %d with packed %d, scales %d", n, bs, len(packed), len(scales)))
	}
	full := 0
	if k != nil && bs%32 == 0 {
		full = n / bs
		if full > 0 {
			k(out[:full*bs], packed[:full*bs/2], scales[:full], code, bs)
		}
	}
	var t [16]T
	for b := full; b*bs < n; b++ {
		for i := range t {
			t[i] = entry(code[i] * scales[b])
		}
		lo, hi := b*bs, min((b+1)*bs, n)
		DecodeTable(out[lo:hi], packed[lo/2:(hi+1)/2], &t)
	}
}

// bf16 rounds f to bfloat16 bits, to nearest even; a NaN keeps its sign and
// upper payload and gets the quiet bit.
func bf16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x40
	}
	return uint16((u + 0x7fff + (u>>16)&1) >> 16)
}

// DecodeTable writes out[k] = t[nibble k of in] (one block's lookups).
func DecodeTable[T any](out []T, in []byte, t *[16]T) {
	k := 0
	for ; k+1 < len(out); k += 2 {
		p := in[k/2]
		out[k] = t[p>>4]
		out[k+1] = t[p&15]
	}
	if k < len(out) {
		out[k] = t[in[k/2]>>4]
	}
}

// Impl names the implementation in use ("generic", "avx2", "avx512",
// "neon").
func Impl() string { return impl.name }

type kernels struct {
	name       string
	encode     func(dst []byte, absmax, src []float32, bs int, cb *Codebook, minDiv float32)
	decode     func(out []float32, packed []byte, scales []float32, code *[16]float32, bs int)
	decodeBF16 func(out []uint16, packed []byte, scales []float32, code *[16]float32, bs int)
	errSums    func(x []float32, packed []byte, scales []float32, code *[16]float32, bs, round int, acc *[32]float64) uint32
}

var generic = kernels{name: "generic"}

// encoder adapts an assembly encoder to Encode's arguments.
func encoder(k func(dst []byte, absmax, src []float32, bs int, thr *[16]float32, code *[16]uint32, minDiv float32)) func([]byte, []float32, []float32, int, *Codebook, float32) {
	return func(dst []byte, absmax, src []float32, bs int, cb *Codebook, minDiv float32) {
		k(dst, absmax, src, bs, &cb.Thr, &cb.Code, minDiv)
	}
}
