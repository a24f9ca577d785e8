//go:build !(goexperiment.simd && amd64)

package export

func hasF16Inf(b []byte) bool { return hasF16InfGeneric(b) }
