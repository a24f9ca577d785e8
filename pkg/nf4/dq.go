package nf4

import (
	"fmt"
	"math"
	"math/bits"

	"github.com/lorakit/lorakit/internal/kernels/nibble"
)

// MeanOffset returns the double-quantization offset, the float32 mean of
// the block absmax values, summed in a fixed order: the order of PyTorch's
// CPU float32 sum (aten/src/ATen/native/cpu/SumKernel.cpp, cascade_sum, which
// is dispatched with 8-lane AVX2 vectors even on AVX-512 machines) run on one
// thread, then divided by the count in float32 as torch.mean does on CPU.
//
// Concretely, for n >= 8 values: the first 8·floor(n/8) values are read as
// vectors of 8 lanes; row_sum adds vector 4i+k into accumulator k with the
// 4-level cascade of multi_row_sum, folds leftover vectors into accumulator
// 0, then accumulators 1, 2, 3 into 0; the scalar result starts at 0, adds the
// n mod 8 tail values in order, then the 8 lanes in order. For n < 8 the same
// row_sum runs on scalars. Every addition is a float32 addition.
//
// This reproduces torch's value bit for bit whenever torch itself sums
// serially (fewer than 32768 blocks, i.e. tensors under 2M elements at block
// size 64, or a single torch thread); for larger tensors torch splits the sum
// across its threads, so its value depends on the machine's thread count,
// while this function's never does: it is single-threaded and deterministic.
// An empty slice gives 0.
func MeanOffset(absmax []float32) float32 {
	if len(absmax) == 0 {
		return 0
	}
	return torchSum(absmax) / float32(len(absmax))
}

// torchSum is PyTorch's cascade_sum of a contiguous float32 vector
// (vectorized_inner_sum with Vectorized<float> of 8 lanes, or scalar_inner_sum
// below 8 elements).
func torchSum(a []float32) float32 {
	const w = 8
	if len(a) < w {
		return 0 + rowSum(a, 1, len(a))[0]
	}
	nv := len(a) / w
	lanes := rowSum(a, w, nv)
	var acc float32
	for _, v := range a[nv*w:] {
		acc += v
	}
	for _, v := range lanes {
		acc += v
	}
	return acc
}

// rowSum is SumKernel.cpp's row_sum over size elements of w lanes each
// (element i is a[i*w : i*w+w]); it returns the w lane sums.
func rowSum(a []float32, w, size int) []float32 {
	const ilp = 4
	sizeILP := size / ilp
	p := multiRowSum(a, w, sizeILP)
	for i := sizeILP * ilp; i < size; i++ {
		for l := range w {
			p[0][l] += a[i*w+l]
		}
	}
	for k := 1; k < ilp; k++ {
		for l := range w {
			p[0][l] += p[k][l]
		}
	}
	return p[0]
}

// multiRowSum is SumKernel.cpp's multi_row_sum with nrows = 4: row r's k-th
// entry is element 4r+k; it sums size rows with a 4-level cascade.
func multiRowSum(a []float32, w, size int) (acc0 [4][]float32) {
	const levels, nrows = 4, 4
	power := max(4, ceilLog2(size)/levels)
	step := 1 << power
	mask := step - 1
	var acc [levels][nrows][]float32
	for j := range acc {
		for k := range acc[j] {
			acc[j][k] = make([]float32, w)
		}
	}
	add := func(dst, src []float32) {
		for l := range dst {
			dst[l] += src[l]
		}
	}
	i := 0
	for i+step <= size {
		for range step {
			for k := range nrows {
				add(acc[0][k], a[(i*nrows+k)*w:(i*nrows+k+1)*w])
			}
			i++
		}
		for j := 1; j < levels; j++ {
			for k := range nrows {
				add(acc[j][k], acc[j-1][k])
				clear(acc[j-1][k])
			}
			if i&(mask<<(j*power)) != 0 {
				break
			}
		}
	}
	for ; i < size; i++ {
		for k := range nrows {
			add(acc[0][k], a[(i*nrows+k)*w:(i*nrows+k+1)*w])
		}
	}
	for j := 1; j < levels; j++ {
		for k := range nrows {
			add(acc[0][k], acc[j][k])
		}
	}
	return acc[0]
}

// ceilLog2 is c10's CeilLog2 (1 for x <= 2).
func ceilLog2(x int) int {
	if x <= 2 {
		return 1
	}
	return bits.Len64(uint64(x) - 1)
}

// QuantizeBlockwise is bitsandbytes' 8-bit blockwise quantization (pure
// PyTorch quantize_blockwise) against the sorted 256-entry code: per block
// absmax = max|x|; full blocks s = x·f32(1/max(absmax, 1e-38)), a partial
// last block s = x/max(absmax, 1e-38); s clamped to [-1, 1]; the byte is the
// number of midpoints f32(f32(code[k]+code[k+1])/2) strictly below s
// (torch.bucketize, ties to the lower code, NaN to 255). absmax receives the
// block absmax (the clamped divisor for a partial last block).
//
// Double quantization applies it, with [DynamicMap] and NestedBlocksize, to
// the 4-bit absmax values minus [MeanOffset].
func QuantizeBlockwise(dst []byte, absmax []float32, src []float32, blocksize int, code *[256]float32) error {
	if blocksize <= 0 {
		return fmt.Errorf("%w: %d", ErrBlocksize, blocksize)
	}
	n := len(src)
	if len(dst) != n || len(absmax) != NumBlocks(n, blocksize) {
		return fmt.Errorf("%w: 8-bit quantize %d values: codes %d, absmax %d (want %d)",
			ErrLength, n, len(dst), len(absmax), NumBlocks(n, blocksize))
	}
	mid := &dynamicMidpoints
	dyn := *code == dynamicMap
	if !dyn {
		m := midpoints256(code)
		mid = &m
	}
	for b := range absmax {
		lo := b * blocksize
		hi := min(lo+blocksize, n)
		x := src[lo:hi]
		partial := hi-lo < blocksize
		var am float32
		for _, v := range x {
			a := math.Float32frombits(math.Float32bits(v) &^ (1 << 31))
			if a != a {
				am = a // torch.max propagates NaN
				break
			}
			if a > am {
				am = a
			}
		}
		div := am
		if div < minDivisor {
			div = minDivisor
		}
		absmax[b] = am
		if partial {
			absmax[b] = div
		}
		inv := 1 / div
		if dyn && am <= math.MaxFloat32 {
			// No NaN or Inf in the block, so every s is finite; the
			// clamp can be skipped: values beyond ±1 get the codes
			// of ±1 (0 and 255) from the table as from bucketize.
			out := dst[lo:hi]
			if partial {
				for i, v := range x {
					out[i] = dynCode(v / div)
				}
			} else {
				for i, v := range x {
					out[i] = dynCode(v * inv)
				}
			}
			continue
		}
		for i, v := range x {
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
			dst[lo+i] = bucketize(s, mid[:])
		}
	}
	return nil
}

// DequantizeBlockwise decodes 8-bit codes: dst[i] = f32(code[q[i]] ·
// absmax[i/blocksize]).
func DequantizeBlockwise(dst []float32, q []byte, absmax []float32, blocksize int, code *[256]float32) error {
	if blocksize <= 0 {
		return fmt.Errorf("%w: %d", ErrBlocksize, blocksize)
	}
	if len(q) != len(dst) || len(absmax) != NumBlocks(len(dst), blocksize) {
		return fmt.Errorf("%w: 8-bit dequantize %d values: codes %d, absmax %d (want %d)",
			ErrLength, len(dst), len(q), len(absmax), NumBlocks(len(dst), blocksize))
	}
	for i, c := range q {
		dst[i] = code[c] * absmax[i/blocksize]
	}
	return nil
}

// Nearest-code search in the dynamic map (the nested quantization's
// torch.bucketize over its 255 midpoints) by table: the top 15 bits of a
// value's ordered key (see nibble.OrderedKey) select one of 32768 buckets, each
// holding at most one midpoint (checked when the table is built);
// dynLUT[bucket] is the number of midpoints below the bucket, so the code is
// that count plus one when the key exceeds the next midpoint's key. Midpoints
// are never ±0, so key order is float order for every comparison made, and
// the count is bucketize's (ties go to the lower code) for every non-NaN
// value, Inf and values beyond ±1 included.
const dynShift = 17

var dynThrKeys, dynLUT = buildDynLUT(&dynamicMidpoints)

// buildDynLUT returns the midpoint keys, padded with MaxUint32 at index 255,
// and the bucket table.
func buildDynLUT(mid *[255]float32) (keys [256]uint32, lut [1 << (32 - dynShift)]uint8) {
	for i, m := range mid {
		keys[i] = nibble.OrderedKey(math.Float32bits(m))
		if i > 0 && keys[i] <= keys[i-1] {
			panic("nf4: dynamic midpoints not increasing")
		}
		if i > 0 && keys[i]>>dynShift == keys[i-1]>>dynShift {
			panic("nf4: two dynamic midpoints in one bucket")
		}
	}
	keys[255] = math.MaxUint32
	below := 0
	for b := range lut {
		for below < len(mid) && keys[below]>>dynShift < uint32(b) {
			below++
		}
		lut[b] = uint8(below)
	}
	return keys, lut
}

// dynCode returns the dynamic-map code of a non-NaN scaled value: the number
// of midpoints strictly below s.
func dynCode(s float32) uint8 {
	k := nibble.OrderedKey(math.Float32bits(s))
	c := dynLUT[k>>dynShift]
	return c + uint8((uint64(dynThrKeys[c])-uint64(k))>>63)
}
