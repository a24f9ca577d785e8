//go:build !purego

package q8

import "github.com/lorakit/lorakit/internal/kernels/tier"

var impl = func() kernels {
	switch {
	case tier.Has(tier.AVX512):
		return kernels{"avx512", quantizeAVX512}
	case tier.Has(tier.AVX2):
		return kernels{"avx2", quantizeAVX2}
	}
	return generic
}()
