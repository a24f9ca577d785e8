//go:build !purego

package vec

import "github.com/lorakit/lorakit/internal/kernels/tier"

// The kernels are called directly, not through function values, so that
// their pointer arguments do not escape (the stubs are go:noescape).
var (
	useFMA    = tier.Has(tier.AVX2)
	useAVX512 = tier.Has(tier.AVX512)
	lanes     = map[bool]int{false: 8, true: 16}[useAVX512]
	implName  = map[tier.Tier]string{tier.AVX2: "avx2", tier.AVX512: "avx512"}[tier.Active()]
)

func init() {
	if implName == "" {
		implName = "generic"
	}
}

func dotK(a, b []float32, s *[16]float32) {
	if useAVX512 {
		dotAVX512(a, b, s)
	} else {
		dotAVX2(a, b, s)
	}
}

func axpyK(y, x []float32, alpha float32) {
	if useAVX512 {
		axpyAVX512(y, x, alpha)
	} else {
		axpyAVX2(y, x, alpha)
	}
}

func expsK(x []float32) {
	if useAVX512 {
		expsAVX512(x)
	} else {
		expsAVX2(x)
	}
}

func maxAbs16K(h []uint16, out *[32]uint16) {
	if useAVX512 {
		maxAbs16AVX512(h, out)
	} else {
		maxAbs16AVX2(h, out)
	}
}

func minInf16K(h []uint16, out *[32]uint16) {
	if useAVX512 {
		minInf16AVX512(h, out)
	} else {
		minInf16AVX2(h, out)
	}
}

func maxAbs32K(u []uint32, out *[16]uint32) {
	if useAVX512 {
		maxAbs32AVX512(u, out)
	} else {
		maxAbs32AVX2(u, out)
	}
}

func maxAbs16BlocksK(dst, h []uint16, block int) {
	if useAVX512 {
		maxAbs16BlocksAVX512(dst, h, block)
	} else {
		maxAbs16BlocksAVX2(dst, h, block)
	}
}

func maxAbs32BlocksK(dst, u []uint32, block int) {
	if useAVX512 {
		maxAbs32BlocksAVX512(dst, u, block)
	} else {
		maxAbs32BlocksAVX2(dst, u, block)
	}
}

func dotNK(q, k []float32, ld int, out []float32) {
	if useAVX512 {
		dotNAVX512(q, k, ld, out)
	} else {
		dotNAVX2(q, k, ld, out)
	}
}

func axpyNK(y []float32, ld int, x, alpha []float32) {
	if useAVX512 {
		axpyNAVX512(y, ld, x, alpha)
	} else {
		axpyNAVX2(y, ld, x, alpha)
	}
}

func axpyAccK(y, x []float32, ld int, alpha []float32) {
	if useAVX512 {
		axpyAccAVX512(y, x, ld, alpha)
	} else {
		axpyAccAVX2(y, x, ld, alpha)
	}
}
