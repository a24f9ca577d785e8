package nf4

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/lorakit/lorakit/internal/kernels/nibble"
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
// code: r = the number of table midpoints strictly below s (ties to the
// lower), the code of rank r (NF4: r itself; FP4: through the sort order of
// the FP4 table, see fp4Order). Codes are packed two per byte, the even
// (first) element in the high nibble; for odd len(src) the final low nibble
// is the code of 0.
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

// quantizeBlocks quantizes blocks [b0, b1): the full ones with the kernel
// of internal/kernels/nibble (blocks holding Inf or NaN then take the
// reference path), a partial last block with quantizeBlock.
func quantizeBlocks(dst []byte, absmax []float32, src []float32, bs int, typ Type, b0, b1 int) {
	n := len(src)
	full := min(b1, n/bs)
	if full > b0 {
		nibble.Encode(dst[b0*bs/2:full*bs/2], absmax[b0:full], src[b0*bs:full*bs], bs, typ.book(), minDivisor)
		for b := b0; b < full; b++ {
			if math.Float32bits(absmax[b])&0x7fffffff >= 0x7f800000 {
				absmax[b] = quantizeBlockRef(dst[b*bs/2:(b+1)*bs/2], src[b*bs:(b+1)*bs], false, typ)
			}
		}
	}
	for b := max(b0, full); b < b1; b++ {
		lo := b * bs
		hi := min(lo+bs, n)
		absmax[b] = quantizeBlock(dst[lo/2:PackedLen(hi)], src[lo:hi], hi-lo < bs, typ)
	}
}

// book returns the type's codebook.
func (t Type) book() *nibble.Codebook {
	if t == FP4 {
		return fp4Book
	}
	return nf4Book
}

// quantizeBlock quantizes one partial block and returns the absmax value to
// store.
func quantizeBlock(dst []byte, x []float32, partial bool, typ Type) float32 {
	m := absmaxBits(x)
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
	scaleEncodeDiv(dst, x, div, typ)
	return stored
}

// absmaxBits returns the maximum over the block of the float32 bits of |x|
// compared as unsigned integers: the float absmax for finite blocks,
// >= 0x7f800000 when an Inf or NaN is present (NaN bits order above Inf).
func absmaxBits(x []float32) uint32 {
	var m uint32
	for _, v := range x {
		m = max(m, math.Float32bits(v)&0x7fffffff)
	}
	return m
}

// scaleEncodeDiv encodes a finite partial block with s = x/div; an odd tail is
// padded with the code of 0.
func scaleEncodeDiv(dst []byte, x []float32, div float32, typ Type) {
	nib := typ.book().Nibble
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
// for FP4 likewise, through the sort order (code 3). It is used for blocks
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
			return fp4Order[bucketize(s, fp4Thresholds[:])]
		}
		return bucketize(s, nf4Thresholds[:])
	}
	pad := code(0) // the padding element is a scaled 0.0
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
		lo, hi := b0*blocksize, min(b1*blocksize, n)
		nibble.Decode(dst[lo:hi], packed[lo/2:PackedLen(hi)], absmax[b0:b1], code, blocksize)
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
