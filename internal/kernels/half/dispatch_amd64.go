//go:build !purego

package half

import "github.com/lorakit/lorakit/internal/kernels/tier"

var impl = func() kernels {
	switch {
	case tier.Has(tier.AVX512):
		return kernels{"avx512", 64, decodeBF16AVX512, decodeF16AVX512, encodeBF16AVX512, encodeF16AVX512}
	case tier.Has(tier.AVX2):
		return kernels{"avx2", 32, decodeBF16AVX2, decodeF16AVX2, encodeBF16AVX2, encodeF16AVX2}
	}
	return generic
}()
