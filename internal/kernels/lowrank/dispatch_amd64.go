//go:build !purego

package lowrank

import "github.com/lorakit/lorakit/internal/kernels/tier"

var impl = func() kernels {
	switch {
	case tier.Has(tier.AVX512):
		return kernels{"avx512", 16, addAVX512}
	case tier.Has(tier.AVX2):
		return kernels{"avx2", 8, addAVX2}
	}
	return generic
}()
