// Package q8 encodes llama.cpp's Q8_0 blocks: 32 values as an F16 scale d
// and 32 int8 quants, byte for byte as quantize_row_q8_0_ref does.
//
// Contract: every tier writes the same bytes as the plain-Go code.
package q8

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/lorakit/lorakit/internal/kernels/half"
)

// Block sizes: values per block and bytes per block.
const (
	QK         = 32
	BlockBytes = 34
)

// Quantize encodes the len(src)/32 blocks of src into dst (34 bytes each):
// amax = max|x|, d = amax/127, id = 1/d (0 when d = 0), q = roundf(x·id)
// (half away from zero, all in float32), d stored as F16 (the quants use the
// float32 d); a block so small that 1/d overflows gets all-zero quants. It
// returns the index of the first block holding Inf or NaN (the blocks before
// it are written), or -1.
func Quantize(dst []byte, src []float32) int {
	nb := len(src) / QK
	if len(dst) < nb*BlockBytes {
		panic(fmt.Sprintf("q8: %d blocks into %d bytes", nb, len(dst)))
	}
	if impl.quantize != nil {
		return impl.quantize(dst[:nb*BlockBytes], src[:nb*QK])
	}
	return quantizeGo(dst, src)
}

func quantizeGo(dst []byte, src []float32) int {
	nb := len(src) / QK
	for i := 0; i < nb; i++ {
		x := (*[QK]float32)(src[i*QK:])
		y := (*[BlockBytes]byte)(dst[i*BlockBytes:])
		// Maximum of |x| over the bit patterns: for non-negative floats the
		// order of the bits is the order of the values, and NaN/Inf sort
		// above every finite.
		var m uint32
		for _, v := range x {
			m = max(m, math.Float32bits(v)&0x7fffffff)
		}
		if m >= 0x7f800000 {
			return i
		}
		d, id := Scale(math.Float32frombits(m))
		binary.LittleEndian.PutUint16(y[:], half.F32ToF16(d))
		if id > math.MaxFloat32 {
			clear(y[2:])
			continue
		}
		for j, v := range x {
			y[2+j] = byte(int8(roundHalfAway(float32(v * id))))
		}
	}
	return -1
}

// Scale returns d = amax/127 and id = 1/d (0 when d = 0), in float32.
func Scale(amax float32) (d, id float32) {
	d = amax / 127
	if d != 0 {
		id = 1 / d
	}
	return d, id
}

// roundHalfAway is C's roundf for |v| < 2^31: round half away from zero.
// The float64 sum is exact for every float32 that could round to a non-zero
// integer, so no double rounding can occur.
func roundHalfAway(v float32) int32 {
	f := float64(v)
	return int32(f + math.Copysign(0.5, f))
}

// Impl names the implementation in use ("generic", "avx2", "avx512").
func Impl() string { return impl.name }

type kernels struct {
	name     string
	quantize func(dst []byte, src []float32) int
}

var generic = kernels{name: "generic"}
