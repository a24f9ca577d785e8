//go:build !(goexperiment.simd && amd64)

package quantize

import "github.com/lorakit/lorakit/pkg/dtype"

// simdKernels reports whether the SIMD kernels are built in.
const simdKernels = false

func maxBits16(b []byte) uint16 { return maxBits16Generic(b) }
func maxBits32(b []byte) uint32 { return maxBits32Generic(b) }

func errBlocks(code *[16]float32, scales []float32, dt dtype.DType, x []float32, packed []byte, bs int) ([32]float64, uint32) {
	return errBlocksGeneric(code, scales, dt, x, packed, bs)
}
