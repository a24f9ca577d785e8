//go:build !purego

package nibble

import "github.com/lorakit/lorakit/internal/kernels/tier"

var impl = func() kernels {
	switch {
	case tier.Has(tier.AVX512):
		return kernels{"avx512", encoder(encodeAVX512), decodeAVX512, decodeBF16AVX512, errSumsAVX512}
	case tier.Has(tier.AVX2):
		return kernels{"avx2", encoder(encodeAVX2), decodeAVX2, decodeBF16AVX2, errSumsAVX2}
	}
	return generic
}()
