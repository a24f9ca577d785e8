//go:build !purego

package gemm

import "github.com/lorakit/lorakit/internal/kernels/tier"

var active = func() Kernel {
	if tier.Has(tier.NEON) {
		return Kernel{MR: 8, NR: 12, Name: "neon", FMA: true, fn: kernel8x12NEON}
	}
	return generic
}()

func peak(n int) float64 {
	if tier.Has(tier.NEON) {
		peakNEON(n)
		return float64(n) * 24 * 4 * 2
	}
	return 0
}
