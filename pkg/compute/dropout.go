package compute

import "github.com/lorakit/lorakit/internal/num"

// The dropout mask is a pure function of (seed, stream, index) so that every
// backend, any thread count and a recomputation in the backward pass (or under
// gradient checkpointing) produce the same mask:
//
//	key  = mix64(seed ^ mix64(stream + γ))
//	u(i) = mix64(key + (i+1)·γ) >> 40          (24 uniform bits)
//	drop(i) ⇔ u(i) < ⌈p·2²⁴⌉
//
// with γ = 0x9E3779B97F4A7C15 and mix64 the SplitMix64 finalizer (num.Mix64).

const golden = num.Golden

// DropoutKey returns the per-(seed, stream) key of the dropout mask.
func DropoutKey(seed, stream uint64) uint64 {
	return num.Mix64(seed ^ num.Mix64(stream+golden))
}

// DropoutThreshold returns the 24-bit threshold below which an element is
// dropped with probability p.
func DropoutThreshold(p float32) uint32 {
	if p <= 0 {
		return 0
	}
	if p >= 1 {
		return 1 << 24
	}
	t := float64(p) * (1 << 24)
	u := uint32(t)
	if float64(u) < t {
		u++
	}
	return u
}

// DropoutDrops reports whether element i of the mask for key (see DropoutKey)
// is dropped, given the threshold of DropoutThreshold.
func DropoutDrops(key uint64, i int, threshold uint32) bool {
	return uint32(num.Mix64(key+uint64(i+1)*golden)>>40) < threshold
}

// DropoutScale returns 1/(1−p), the factor applied to kept elements.
func DropoutScale(p float32) float32 {
	return float32(1 / (1 - float64(p)))
}

// UniformBits returns 24 uniform bits of element i of the stream of seed:
// mix64(UniformKey(seed) + (i+1)·γ) >> 40 (FillUniform).
func UniformBits(seed uint64, i int) uint32 {
	return uint32(num.Mix64(UniformKey(seed)+uint64(i+1)*golden) >> 40)
}

// UniformKey returns mix64(seed), the key of UniformBits' stream.
func UniformKey(seed uint64) uint64 { return num.Mix64(seed) }

// UniformValue maps 24 uniform bits to [lo, hi): lo + (hi−lo)·(bits·2⁻²⁴),
// each operation rounded to f32 (no fused multiply-add), so every backend
// computes the same value.
func UniformValue(bits uint32, lo, hi float32) float32 {
	u := float32(bits) * (1.0 / (1 << 24))
	d := hi - lo
	return lo + float32(d*u)
}
