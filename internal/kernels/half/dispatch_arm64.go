//go:build !purego

package half

import "github.com/lorakit/lorakit/internal/kernels/tier"

var impl = func() kernels {
	if tier.Has(tier.NEON) {
		return kernels{"neon", 32, decodeBF16NEON, decodeF16NEON, encodeBF16NEON, encodeF16NEON}
	}
	return generic
}()
