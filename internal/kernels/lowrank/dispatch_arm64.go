//go:build !purego

package lowrank

import "github.com/lorakit/lorakit/internal/kernels/tier"

var impl = func() kernels {
	if tier.Has(tier.NEON) {
		return kernels{"neon", 4, addNEON}
	}
	return generic
}()
