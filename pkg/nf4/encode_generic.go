//go:build !(goexperiment.simd && amd64)

package nf4

// simdKernels reports whether the quantization kernels use SIMD code.
const simdKernels = false

// quantizeFull quantizes len(absmax) full blocks of bs elements.
func quantizeFull(dst []byte, absmax []float32, src []float32, bs int, typ Type) {
	quantizeFullGeneric(dst, absmax, src, bs, typ)
}
