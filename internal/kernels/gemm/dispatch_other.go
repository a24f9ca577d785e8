//go:build purego || !(amd64 || arm64)

package gemm

var active = generic

func peak(int) float64 { return 0 }
