//go:build !purego

package nibble

import "github.com/lorakit/lorakit/internal/kernels/tier"

var impl = func() kernels {
	if tier.Has(tier.NEON) {
		return kernels{"neon", encoder(encodeNEON), decodeNEON, decodeBF16NEON, nil}
	}
	return generic
}()
