//go:build goexperiment.simd && amd64

package dtype

import "simd/archsimd"

// Each SIMD tier the CPU has is tested, not only the one the dispatcher picks.
func init() {
	tiers = append(tiers,
		tier{"AVX512", archsimd.X86.AVX512(), []kernelPair{
			{"BF16", decodeBF16AVX512, decodeBF16Generic, encodeBF16AVX512, encodeBF16Generic, BF16ToF32, F32ToBF16},
			{"F16", decodeF16AVX512, decodeF16Generic, encodeF16AVX512, encodeF16Generic, F16ToF32, F32ToF16},
		}},
		tier{"AVX2", archsimd.X86.AVX2(), []kernelPair{
			{"BF16", decodeBF16AVX2, decodeBF16Generic, encodeBF16AVX2, encodeBF16Generic, BF16ToF32, F32ToBF16},
			{"F16", decodeF16AVX2, decodeF16Generic, encodeF16AVX2, encodeF16Generic, F16ToF32, F32ToF16},
		}},
	)
}
