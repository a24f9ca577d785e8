//go:build !purego

package gemm

import "github.com/lorakit/lorakit/internal/kernels/tier"

var active = func() Kernel {
	switch {
	case tier.Has(tier.AVX512):
		return Kernel{MR: 8, NR: 32, Name: "avx512", FMA: true, StridedA: true, fn: kernel8x32AVX512,
			packT: packTAVX512, packTBF16: packTBF16AVX512, packN: packNAVX512, packNBF16: packNBF16AVX512, tk: 16}
	case tier.Has(tier.AVX2):
		return Kernel{MR: 6, NR: 16, Name: "avx2", FMA: true, StridedA: true, fn: kernel6x16AVX2,
			packT: packTAVX2, packTBF16: packTBF16AVX2, packN: packNAVX2, packNBF16: packNBF16AVX2, tk: 8}
	}
	return generic
}()

func peak(n int) float64 {
	switch {
	case tier.Has(tier.AVX512):
		peakAVX512(n)
		return float64(n) * 24 * 16 * 2
	case tier.Has(tier.AVX2):
		peakAVX2(n)
		return float64(n) * 12 * 8 * 2
	}
	return 0
}
