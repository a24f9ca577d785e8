// Package ktest holds what the kernel tests share: inputs that exercise
// every rounding path, and the tier under test. Only tests import it.
package ktest

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lorakit/lorakit/internal/kernels/tier"
)

// Bits returns n float32 bit patterns that exercise every rounding path:
// all specials, ties and near-ties for bf16 (bit 15), f16 (bit 12), f8 (bits
// 19, 20), subnormal inputs and results, overflow boundaries, and random
// words.
func Bits(n int, seed uint64) []uint32 {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	out := []uint32{
		0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000,
		0x7f800001, 0xff800001, 0x7fbfffff, 0x7fffffff, 0xffffffff, 0x7f80ffff,
		0x7f7fffff, 0xff7fffff, 0x00000001, 0x80000001, 0x007fffff, 0x00800000,
		math.Float32bits(65504), math.Float32bits(65519.99), math.Float32bits(65520),
		math.Float32bits(448), math.Float32bits(464), math.Float32bits(464.01),
		math.Float32bits(480), math.Float32bits(57344), math.Float32bits(61440),
		math.Float32bits(61439.99), math.Float32bits(0x1p-24), math.Float32bits(0x1p-25),
		math.Float32bits(0x1p-25 * 1.0000001), math.Float32bits(0x1p-14),
	}
	lows := []uint32{0, 1, 0x0fff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x3000, 0x7fff, 0x8000, 0x8001, 0xffff,
		0x7ffff, 0x80000, 0x80001, 0xfffff, 0x100000, 0x180000}
	for len(out) < n {
		var w uint32
		switch r.IntN(4) {
		case 0:
			w = r.Uint32()
		case 1: // exponents around the f16/f8 ranges
			w = uint32(90+r.IntN(70))<<23 | r.Uint32()&0x807fffff
		case 2: // structured low bits: ties and near-ties
			w = r.Uint32()&^0x1fffff | lows[r.IntN(len(lows))]
		case 3: // NaN, Inf and subnormal inputs
			w = r.Uint32() & 0x807fffff
			if r.IntN(2) == 0 {
				w |= 0x7f800000
			}
		}
		out = append(out, w)
	}
	return out[:n]
}

// Floats returns the float32 values of bits.
func Floats(bits []uint32) []float32 {
	f := make([]float32, len(bits))
	for i, b := range bits {
		f[i] = math.Float32frombits(b)
	}
	return f
}

// Normal returns n values drawn from N(0, sd²) with the given seed.
func Normal(n int, sd float64, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 0xc0ffee))
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64() * sd)
	}
	return x
}

// SameBits reports whether a and b have the same bits.
func SameBits(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }

// LogTier records the tier under test and what the family runs, and notes a
// LORAKIT_CPU request the machine cannot honour (the test then checks the
// fallback, which must pass too).
func LogTier(t testing.TB, impl string) {
	t.Helper()
	t.Logf("tier %s, implementation %s", tier.Active(), impl)
	if n := tier.Note(); n != "" {
		t.Logf("note: %s", n)
	}
}

// BestRate calls fn repeatedly for about d and returns the highest rate
// (work per second) over chunks of calls: on a shared machine the best
// chunk is the one least disturbed by other processes.
func BestRate(d time.Duration, work float64, fn func()) float64 {
	best := 0.0
	calls := 1
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		t0 := time.Now()
		for range calls {
			fn()
		}
		s := time.Since(t0).Seconds()
		if s < 200e-6 { // chunks of at least 0.2 ms
			calls *= 2
			continue
		}
		best = max(best, work*float64(calls)/s)
	}
	return best
}

// PeakGFLOPS measures a core's FMA peak in GFLOP/s with peak, a loop that
// runs n iterations and returns the floating-point operations done (see
// gemm.Peak): the best rate over short chunks. It returns 0 when peak does.
func PeakGFLOPS(peak func(n int) float64) float64 {
	const n = 1 << 12
	f := peak(n)
	if f == 0 {
		return 0
	}
	return BestRate(200*time.Millisecond, f/1e9, func() { peak(n) })
}

// ReportBest adds to a benchmark the best throughput of fn over short
// chunks, in MB/s of bytes per call (best-MB/s): on a shared machine the
// mean that testing reports mixes in other processes' time.
func ReportBest(b *testing.B, bytes int, fn func()) {
	b.ReportMetric(BestRate(200*time.Millisecond, float64(bytes)/1e6, fn), "best-MB/s")
}
