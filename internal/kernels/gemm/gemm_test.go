package gemm

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lorakit/lorakit/internal/kernels/ktest"
)

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(2*r.Float64() - 1)
	}
	return s
}

// TestBlock runs the active kernel on random blocks and compares with
// Reference: bit for bit for the FMA tiers, within the stated bound for the
// generic one. The row stride exceeds NR and the cells around the block must
// stay untouched.
func TestBlock(t *testing.T) {
	k := Active()
	ktest.LogTier(t, k.Name)
	r := rand.New(rand.NewPCG(1, 2))
	for _, kc := range []int{0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 64, 255, 256} {
		for _, alpha := range []float32{1, -0.5, 0.37} {
			for _, ow := range []bool{false, true} {
				checkBlock(t, k, kc, randSlice(r, kc*k.MR), randSlice(r, kc*k.NR), alpha, ow, r)
			}
		}
	}
}

// checkBlock runs the kernel on the packed panel a, and when it can read A
// in place, on the same values laid out as rows lda apart.
func checkBlock(t *testing.T, k Kernel, kc int, a, b []float32, alpha float32, overwrite bool, r *rand.Rand) {
	t.Helper()
	checkBlockLayout(t, k, kc, a, 0, a, b, alpha, overwrite, r)
	if k.StridedA {
		lda := kc + 3
		rows := make([]float32, (k.MR-1)*lda+kc)
		for i := range k.MR {
			for kk := range kc {
				rows[i*lda+kk] = a[kk*k.MR+i]
			}
		}
		checkBlockLayout(t, k, kc, a, lda, rows, b, alpha, overwrite, r)
	}
}

func checkBlockLayout(t *testing.T, k Kernel, kc int, a []float32, lda int, in, b []float32, alpha float32, overwrite bool, r *rand.Rand) {
	t.Helper()
	ldc := k.NR + 3
	c := randSlice(r, k.MR*ldc+5)
	if overwrite { // stale values the kernel must not read
		for i := range c {
			if i%3 == 0 {
				c[i] = float32(math.NaN())
			}
		}
	}
	want := append([]float32(nil), c...)
	got := append([]float32(nil), c...)
	Reference(k.MR, k.NR, kc, a, b, want, ldc, alpha, overwrite)
	k.Block(kc, in, b, got, lda, ldc, alpha, overwrite)
	for i := range got {
		inBlock := i/ldc < k.MR && i%ldc < k.NR
		if !inBlock {
			if !ktest.SameBits(got[i], c[i]) {
				t.Fatalf("%s kc=%d: wrote outside the block at %d", k.Name, kc, i)
			}
			continue
		}
		if k.FMA {
			if !ktest.SameBits(got[i], want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
				t.Fatalf("%s kc=%d lda=%d overwrite=%v alpha=%g: C[%d,%d] = %g, reference %g", k.Name, kc, lda, overwrite, alpha, i/ldc, i%ldc, got[i], want[i])
			}
			continue
		}
		row, col := i/ldc, i%ldc
		var mag float64
		for kk := range kc {
			mag += math.Abs(float64(a[kk*k.MR+row]) * float64(b[kk*k.NR+col]))
		}
		old := math.Abs(float64(c[i]))
		if overwrite {
			old = 0
		}
		bound := float64(kc+2) * 0x1p-24 * (old + math.Abs(float64(alpha))*mag)
		if d := math.Abs(float64(got[i]) - float64(want[i])); d > bound {
			t.Fatalf("%s kc=%d: C[%d,%d] = %g, reference %g (|Δ| %g > %g)", k.Name, kc, row, col, got[i], want[i], d, bound)
		}
	}
}

// FuzzBlock feeds arbitrary values (NaN, Inf, subnormals) through the
// active kernel and Reference.
func FuzzBlock(f *testing.F) {
	f.Add(uint8(5), uint64(1), float32(1))
	f.Add(uint8(0), uint64(2), float32(-2))
	f.Add(uint8(17), uint64(3), float32(0))
	f.Fuzz(func(t *testing.T, kc uint8, seed uint64, alpha float32) {
		k := Active()
		r := rand.New(rand.NewPCG(seed, 7))
		n := int(kc)
		bits := ktest.Bits(n*(k.MR+k.NR)+1, seed)
		vals := ktest.Floats(bits)
		for i := range vals { // mostly ordinary values, some specials
			if r.IntN(8) != 0 {
				vals[i] = float32(r.NormFloat64())
			}
		}
		checkBlock(t, k, n, vals[:n*k.MR], vals[n*k.MR:n*(k.MR+k.NR)], alpha, seed%2 == 0, r)
	})
}

// BenchmarkKernel runs the active micro-kernel on L1-resident panels
// (kc = 256) and reports GFLOP/s, the best rate over 0.2 ms chunks
// (best-GFLOP/s: the machine may be shared) and that rate as a share of the
// core's FMA peak, measured the same way.
func BenchmarkKernel(b *testing.B) {
	k := Active()
	r := rand.New(rand.NewPCG(1, 2))
	const kc = 256
	a, bp := randSlice(r, kc*k.MR), randSlice(r, kc*k.NR)
	c := randSlice(r, k.MR*k.NR)
	flop := 2.0 * kc * float64(k.MR*k.NR)
	b.Run(k.Name, func(b *testing.B) {
		for b.Loop() {
			k.Block(kc, a, bp, c, 0, k.NR, 1, false)
		}
		b.ReportMetric(float64(b.N)*flop/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		best := ktest.BestRate(200*time.Millisecond, flop/1e9, func() { k.Block(kc, a, bp, c, 0, k.NR, 1, false) })
		b.ReportMetric(best, "best-GFLOP/s")
		if p := ktest.PeakGFLOPS(Peak); p > 0 {
			b.ReportMetric(100*best/p, "%peak")
		}
	})
}

// BenchmarkPeak measures the FMA throughput of one core in the active tier.
func BenchmarkPeak(b *testing.B) {
	b.Run(Active().Name, func(b *testing.B) {
		var flop float64
		for b.Loop() {
			flop += Peak(1 << 14)
		}
		b.ReportMetric(flop/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		b.ReportMetric(ktest.PeakGFLOPS(Peak), "best-GFLOP/s")
	})
}
