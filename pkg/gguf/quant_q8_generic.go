//go:build !(goexperiment.simd && amd64)

package gguf

// quantizeQ8_0 quantizes whole Q8_0 blocks; see quantizeQ8_0Generic.
func quantizeQ8_0(dst []byte, src []float32) int { return quantizeQ8_0Generic(dst, src) }
