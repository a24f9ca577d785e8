//go:build !(goexperiment.simd && amd64)

package merge

func kernelName() string { return "generic" }

func lowRankAdd(v []float32, rows, cols int, l, rm []float32, r int, scale float32, acc []float32) {
	lowRankAddGeneric(v, rows, cols, l, rm, r, scale, acc)
}
