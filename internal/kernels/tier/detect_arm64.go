//go:build arm64 && !purego

package tier

// Advanced SIMD (NEON) is part of every ARMv8-A core.
func supported() []Tier { return []Tier{Generic, NEON} }
