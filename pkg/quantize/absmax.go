package quantize

import (
	"math"

	"github.com/lorakit/lorakit/internal/kernels/vec"
	"github.com/lorakit/lorakit/pkg/dtype"
)

// minDivisorBits is f32(1e-38), the divisor bitsandbytes' pure-PyTorch path
// clamps a block absmax to; a partial last block stores the clamped value
// (spec 2.5).
const minDivisorBits = 0x006ce3ee

// blockAbsmax writes into dst the absmax value nf4.Quantize stores for each
// block of raw (little-endian F32, BF16 or F16 elements starting at a block
// boundary): max |x| in float32, NaN when the block holds a NaN, and for a
// partial block (only the last one of raw can be) the value clamped to at
// least f32(1e-38). It reads the raw bits, without converting to float32
// first, so the first pass over a checkpoint costs a fraction of the second.
// len(dst) must be ceil(elements/bs).
func blockAbsmax(dst []float32, raw []byte, dt dtype.DType, bs int) {
	es := dt.Size()
	n := len(raw) / es
	for b := range dst {
		lo, hi := b*bs, min((b+1)*bs, n)
		blk := raw[lo*es : hi*es]
		var v float32
		switch dt {
		case dtype.BF16:
			m := vec.MaxAbs16LE(blk)
			if m > 0x7f80 {
				v = float32(math.NaN())
			} else {
				v = math.Float32frombits(uint32(m) << 16)
			}
		case dtype.F16:
			m := vec.MaxAbs16LE(blk)
			if m > 0x7c00 {
				v = float32(math.NaN())
			} else {
				v = dtype.F16ToF32(m)
			}
		default:
			m := vec.MaxAbs32LE(blk)
			if m > 0x7f800000 {
				v = float32(math.NaN())
			} else {
				v = math.Float32frombits(m)
			}
		}
		if hi-lo < bs && math.Float32bits(v) < minDivisorBits { // NaN bits are larger
			v = math.Float32frombits(minDivisorBits)
		}
		dst[b] = v
	}
}
