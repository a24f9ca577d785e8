package nf4

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// minDivisor is f32(1e-38) (bits minDivisorBits, a subnormal): the
// pure-PyTorch path scales by 1/max(absmax, 1e-38), so all-zero blocks give
// s = 0 (spec 2.5).
const (
	minDivisor     float32 = 1e-38
	minDivisorBits         = 0x006ce3ee
)

// Quantize quantizes src blockwise to 4-bit codes exactly as bitsandbytes'
// pure-PyTorch quantize_4bit: per block of blocksize elements (the last block
// may be partial) absmax = max|x| in float32; full blocks are scaled by
// s = x·f32(1/max(absmax, 1e-38)), the partial last block by
// s = x/max(absmax, 1e-38); s is clamped to [-1, 1] and mapped to the nearest
// code (NF4: number of table midpoints strictly below s; FP4: the CUDA
// dQuantizeFP4 tree). Codes are packed two per byte, the even (first) element
// in the high nibble; for odd len(src) the final low nibble is the code of 0.
//
// dst must hold PackedLen(len(src)) bytes and absmax NumBlocks(len(src),
// blocksize) values. absmax receives the block absmax; for a partial last
// block it receives the clamped divisor max(absmax, 1e-38), as bitsandbytes
// stores it. Inf and NaN inputs give the same codes as PyTorch. The work is
// spread over GOMAXPROCS goroutines; the result does not depend on it.
func Quantize(dst []byte, absmax []float32, src []float32, blocksize int, typ Type) error {
	if err := CheckBlocksize(blocksize); err != nil {
		return err
	}
	if !typ.valid() {
		return fmt.Errorf("%w: %d", ErrType, typ)
	}
	n := len(src)
	if len(dst) != PackedLen(n) || len(absmax) != NumBlocks(n, blocksize) {
		return fmt.Errorf("%w: quantize %d values: packed %d (want %d), absmax %d (want %d)",
			ErrLength, n, len(dst), PackedLen(n), len(absmax), NumBlocks(n, blocksize))
	}
	parallelBlocks(len(absmax), blocksize, func(b0, b1 int) {
		quantizeBlocks(dst, absmax, src, blocksize, typ, b0, b1)
	})
	return nil
}

// quantizeBlocks quantizes blocks [b0, b1): the full ones with the
// quantizeFull kernel, a partial last block with quantizeBlock.
func quantizeBlocks(dst []byte, absmax []float32, src []float32, bs int, typ Type, b0, b1 int) {
	n := len(src)
	full := min(b1, n/bs)
	if full > b0 {
		quantizeFull(dst[b0*bs/2:full*bs/2], absmax[b0:full], src[b0*bs:full*bs], bs, typ)
	}
	for b := max(b0, full); b < b1; b++ {
		lo := b * bs
		hi := min(lo+bs, n)
		absmax[b] = quantizeBlock(dst[lo/2:PackedLen(hi)], src[lo:hi], hi-lo < bs, typ)
	}
}

// quantizeFullGeneric quantizes len(absmax) full blocks of bs elements.
func quantizeFullGeneric(dst []byte, absmax []float32, src []float32, bs int, typ Type) {
	for b := range absmax {
		absmax[b] = quantizeBlock(dst[b*bs/2:(b+1)*bs/2], src[b*bs:(b+1)*bs], false, typ)
	}
}

// quantizeBlock quantizes one block and returns the absmax value to store.
func quantizeBlock(dst []byte, x []float32, partial bool, typ Type) float32 {
	m := absmaxBitsGeneric(x)
	if m >= 0x7f800000 { // Inf or NaN in the block: the literal reference path
		return quantizeBlockRef(dst, x, partial, typ)
	}
	div := math.Float32frombits(m)
	stored := div
	if m < minDivisorBits {
		div = minDivisor
		if partial {
			stored = div
		}
	}
	if !partial {
		encodeMulGeneric(dst, x, 1/div, typ)
		return stored
	}
	scaleEncodeDiv(dst, x, div, typ)
	return stored
}

// absmaxBitsGeneric returns the maximum over the block of the float32 bits
// of |x| compared as unsigned integers: the float absmax for finite blocks,
// >= 0x7f800000 when an Inf or NaN is present (NaN bits order above Inf).
func absmaxBitsGeneric(x []float32) uint32 {
	var m0, m1, m2, m3 uint32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		m0 = max(m0, math.Float32bits(x[i])&0x7fffffff)
		m1 = max(m1, math.Float32bits(x[i+1])&0x7fffffff)
		m2 = max(m2, math.Float32bits(x[i+2])&0x7fffffff)
		m3 = max(m3, math.Float32bits(x[i+3])&0x7fffffff)
	}
	for ; i < len(x); i++ {
		m0 = max(m0, math.Float32bits(x[i])&0x7fffffff)
	}
	return max(m0, m1, m2, m3)
}

// encodeMulGeneric is the plain-Go kernel for full blocks: s = x·inv, two
// codes per byte. len(x) must be at least 2·len(dst).
func encodeMulGeneric(dst []byte, x []float32, inv float32, typ Type) {
	if typ == NF4 { // direct calls let the compiler inline the lookups
		k := 0
		for ; k+4 <= len(dst); k += 4 {
			v := (*[8]float32)(x[2*k : 2*k+8])
			d := (*[4]byte)(dst[k : k+4])
			d[0] = nf4Nibble(v[0]*inv)<<4 | nf4Nibble(v[1]*inv)
			d[1] = nf4Nibble(v[2]*inv)<<4 | nf4Nibble(v[3]*inv)
			d[2] = nf4Nibble(v[4]*inv)<<4 | nf4Nibble(v[5]*inv)
			d[3] = nf4Nibble(v[6]*inv)<<4 | nf4Nibble(v[7]*inv)
		}
		for ; k < len(dst); k++ {
			dst[k] = nf4Nibble(x[2*k]*inv)<<4 | nf4Nibble(x[2*k+1]*inv)
		}
		return
	}
	k := 0
	for ; k+4 <= len(dst); k += 4 {
		v := (*[8]float32)(x[2*k : 2*k+8])
		d := (*[4]byte)(dst[k : k+4])
		d[0] = fp4Nibble(v[0]*inv)<<4 | fp4Nibble(v[1]*inv)
		d[1] = fp4Nibble(v[2]*inv)<<4 | fp4Nibble(v[3]*inv)
		d[2] = fp4Nibble(v[4]*inv)<<4 | fp4Nibble(v[5]*inv)
		d[3] = fp4Nibble(v[6]*inv)<<4 | fp4Nibble(v[7]*inv)
	}
	for ; k < len(dst); k++ {
		dst[k] = fp4Nibble(x[2*k]*inv)<<4 | fp4Nibble(x[2*k+1]*inv)
	}
}

// scaleEncodeDiv encodes a finite partial block with s = x/div; an odd tail is
// padded with the code of 0.
func scaleEncodeDiv(dst []byte, x []float32, div float32, typ Type) {
	nib := nf4Nibble
	if typ == FP4 {
		nib = fp4Nibble
	}
	for k := range dst {
		hi := nib(x[2*k] / div)
		lo := nib(0)
		if 2*k+1 < len(x) {
			lo = nib(x[2*k+1] / div)
		}
		dst[k] = hi<<4 | lo
	}
}

// quantizeBlockRef is the literal transcription of the reference for one
// block, element by element with PyTorch's NaN semantics: max propagates NaN,
// clamp keeps NaN, bucketize puts NaN after every threshold (NF4 code 15);
// for FP4 every comparison with NaN is false (code 0). It is used for blocks
// holding Inf or NaN and by the tests as the twin of the fast path.
func quantizeBlockRef(dst []byte, x []float32, partial bool, typ Type) float32 {
	var am float32
	for _, v := range x {
		a := float32(math.Abs(float64(v)))
		if a != a || am != am {
			am = float32(math.NaN())
		} else if a > am {
			am = a
		}
	}
	div := am
	if div < minDivisor { // NaN stays NaN
		div = minDivisor
	}
	stored := am
	if partial {
		stored = div
	}
	inv := 1 / div
	code := func(v float32) uint8 {
		var s float32
		if partial {
			s = v / div
		} else {
			s = v * inv
		}
		if s < -1 {
			s = -1
		} else if s > 1 {
			s = 1
		}
		if typ == FP4 {
			return fp4Tree(s)
		}
		return bucketize(s, nf4Thresholds[:])
	}
	pad := bucketize(0, nf4Thresholds[:]) // the padding element is a scaled 0.0
	if typ == FP4 {
		pad = fp4Tree(0)
	}
	for k := range dst {
		hi, lo := code(x[2*k]), pad
		if 2*k+1 < len(x) {
			lo = code(x[2*k+1])
		}
		dst[k] = hi<<4 | lo
	}
	return stored
}

// bucketize is torch.bucketize(s, t, right=False) (lower_bound with the
// comparison !(t[mid] >= s), so NaN lands after every boundary).
func bucketize(s float32, t []float32) uint8 {
	lo, hi := 0, len(t)
	for lo < hi {
		mid := lo + (hi-lo)/2
		if !(t[mid] >= s) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return uint8(lo)
}

// fp4Tree is CUDA's dQuantizeFP4, literally.
func fp4Tree(x float32) uint8 {
	var sign uint8
	if x < 0 {
		sign = 0b1000
	}
	x = float32(math.Abs(float64(x)))
	var c uint8
	if x > 0.29166667 {
		if x > 0.583333 {
			if x > 0.8333333 {
				c = 0b011
			} else {
				c = 0b010
			}
		} else if x > 0.4166667 {
			c = 0b101
		} else {
			c = 0b100
		}
	} else if x > 0.0859375 {
		if x > 0.20833333 {
			c = 0b111
		} else {
			c = 0b110
		}
	} else if x > 0.00260417 {
		c = 0b001
	} else {
		c = 0b000
	}
	return c | sign
}

// Dequantize decodes packed 4-bit codes: dst[k] = f32(code[nibble(k)] ·
// absmax[k/blocksize]) for k < len(dst) (spec 4; one float32 multiply, no
// FMA). Cast the result to the original dtype with round-to-nearest-even.
// code is the file's quant_map; absmax the per-block scales (see
// [QuantState.BlockAbsmax] for double-quantized states).
func Dequantize(dst []float32, packed []byte, absmax []float32, blocksize int, code *[16]float32) error {
	if blocksize <= 0 || blocksize%2 != 0 {
		return fmt.Errorf("%w: %d", ErrBlocksize, blocksize)
	}
	n := len(dst)
	if len(packed) != PackedLen(n) || len(absmax) != NumBlocks(n, blocksize) {
		return fmt.Errorf("%w: dequantize %d values: packed %d (want %d), absmax %d (want %d)",
			ErrLength, n, len(packed), PackedLen(n), len(absmax), NumBlocks(n, blocksize))
	}
	parallelBlocks(len(absmax), blocksize, func(b0, b1 int) {
		var t [16]float32
		for b := b0; b < b1; b++ {
			a := absmax[b]
			for i := range t {
				t[i] = code[i] * a
			}
			lo := b * blocksize
			hi := min(lo+blocksize, n)
			out := dst[lo:hi]
			in := packed[lo/2 : PackedLen(hi)]
			for k := 0; k+1 < len(out); k += 2 {
				p := in[k/2]
				out[k] = t[p>>4]
				out[k+1] = t[p&15]
			}
			if len(out)%2 == 1 {
				out[len(out)-1] = t[in[len(in)-1]>>4]
			}
		}
	})
	return nil
}

// parallelBlocks calls fn over disjoint ranges of blocks [b0, b1) covering
// [0, nblocks), on up to GOMAXPROCS goroutines. Each block is handled
// independently, so results never depend on the split.
func parallelBlocks(nblocks, blocksize int, fn func(b0, b1 int)) {
	const grainElems = 1 << 16
	per := max(1, grainElems/blocksize)
	chunks := (nblocks + per - 1) / per
	workers := min(runtime.GOMAXPROCS(0), chunks)
	if workers <= 1 {
		fn(0, nblocks)
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				c := int(next.Add(1) - 1)
				if c >= chunks {
					return
				}
				fn(c*per, min((c+1)*per, nblocks))
			}
		})
	}
	wg.Wait()
}
