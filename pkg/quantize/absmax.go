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

// absmaxBatch is the number of block maxima one kernel call computes: a
// whole chunk at the smallest block size, 32.
const absmaxBatch = chunkElems / 32

// blockAbsmax writes into dst the absmax value nf4.Quantize stores for each
// block of raw (little-endian F32, BF16 or F16 elements starting at a block
// boundary): max |x| in float32, NaN when the block holds a NaN, and for a
// partial block (only the last one of raw can be) the value clamped to at
// least f32(1e-38). It reads the raw bits, without converting to float32
// first, so the first pass over a checkpoint costs a fraction of the second:
// one vector kernel call per chunk finds the largest |x| bits of every block.
// len(dst) must be ceil(elements/bs).
func blockAbsmax(dst []float32, raw []byte, dt dtype.DType, bs int) {
	es := dt.Size()
	n := len(raw) / es
	nan := float32(math.NaN())
	var m16 [absmaxBatch]uint16
	var m32 [absmaxBatch]uint32
	for b0 := 0; b0 < len(dst); b0 += absmaxBatch {
		out := dst[b0:min(b0+absmaxBatch, len(dst))]
		blk := raw[b0*bs*es : min((b0+len(out))*bs, n)*es]
		switch dt {
		case dtype.BF16, dtype.F16:
			m := m16[:len(out)]
			vec.MaxAbs16BlocksLE(m, blk, bs)
			bf16, inf := dt == dtype.BF16, uint16(0x7c00)
			if bf16 {
				inf = 0x7f80
			}
			for i, v := range m {
				switch {
				case v > inf:
					out[i] = nan
				case bf16:
					out[i] = math.Float32frombits(uint32(v) << 16)
				default:
					out[i] = dtype.F16ToF32(v)
				}
			}
		default:
			m := m32[:len(out)]
			vec.MaxAbs32BlocksLE(m, blk, bs)
			for i, v := range m {
				out[i] = math.Float32frombits(v)
				if v > 0x7f800000 {
					out[i] = nan
				}
			}
		}
	}
	if last := len(dst) - 1; n%bs != 0 && math.Float32bits(dst[last]) < minDivisorBits { // NaN bits are larger
		dst[last] = math.Float32frombits(minDivisorBits)
	}
}
