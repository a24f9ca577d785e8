//go:build !(goexperiment.simd && amd64)

package dtype

// simdKernels reports whether the bulk conversions use SIMD code.
const simdKernels = false

func decodeBF16(dst []float32, src []uint16) { decodeBF16Generic(dst, src) }
func encodeBF16(dst []uint16, src []float32) { encodeBF16Generic(dst, src) }
func decodeF16(dst []float32, src []uint16)  { decodeF16Generic(dst, src) }
func encodeF16(dst []uint16, src []float32)  { encodeF16Generic(dst, src) }
