//go:build !(goexperiment.simd && amd64)

package cpu

var gemmKernel = gemmGeneric

func simdName() string { return "generic" }

func dot(a, b []float32) float32 { return dotGeneric(a, b) }

func axpy(y, x []float32, alpha float32) { axpyGeneric(y, x, alpha) }

func exps(x []float32) { expsGeneric(x) }

func interleave4(d []float32, w int, x0, x1, x2, x3 []float32) {
	interleave4Generic(d, w, x0, x1, x2, x3)
}

func decode4(out []float32, in []byte, t *[16]float32) { decode4Generic(out, in, t) }

func decode4BF16(out []uint16, in []byte, t *[16]uint16) { decode4BF16Generic(out, in, t) }
