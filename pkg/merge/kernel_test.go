package merge

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// exactFMA32 is a·b + c rounded once to float32, computed with big.Float.
func exactFMA32(a, b, c float32) float32 {
	x := new(big.Float).SetPrec(200).SetFloat64(float64(a))
	x.Mul(x, new(big.Float).SetPrec(200).SetFloat64(float64(b)))
	x.Add(x, new(big.Float).SetPrec(200).SetFloat64(float64(c)))
	f, _ := x.Float32() // nearest, ties to even
	return f
}

func TestFMA32(t *testing.T) {
	// A case where float32(math.FMA(...)) rounds twice: the float64 result
	// is exactly the midpoint 1 + 2⁻²⁴, the exact value lies above it.
	a := float32(math.Ldexp(float64(1<<23+2896), -47))
	b := float32(math.Ldexp(float64(1<<23-2895), -23))
	if want := float32(1 + math.Ldexp(1, -23)); fma32(a, b, 1) != want || exactFMA32(a, b, 1) != want {
		t.Fatalf("fma32 = %v, exact %v, want %v", fma32(a, b, 1), exactFMA32(a, b, 1), want)
	}
	if naive := float32(math.FMA(float64(a), float64(b), 1)); naive != 1 {
		t.Fatalf("naive double rounding gives %v; the test case is wrong", naive)
	}
	// The same case through the (SIMD or generic) kernel.
	v := []float32{0}
	lowRankAdd(v, 1, 1, []float32{a, 1}, []float32{b, 1}, 2, 1, make([]float32, 1))
	// acc = fma(a, b, 0) = a·b rounded; then fma(1, 1, acc): a different
	// chain, only checks that the kernel runs; the midpoint case below.
	v = []float32{0}
	lowRankAdd(v, 1, 1, []float32{1, a}, []float32{1, b}, 2, 1, make([]float32, 1))
	if want := float32(1 + math.Ldexp(1, -23)); v[0] != want {
		t.Fatalf("kernel (%s): %v, want %v (hardware/emulated single-rounding FMA)", kernelName(), v[0], want)
	}

	rng := rand.New(rand.NewPCG(1, 2))
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, math.MaxFloat32, -math.MaxFloat32,
		math.SmallestNonzeroFloat32, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 1e-30, 3e38}
	pick := func() float32 {
		switch rng.IntN(4) {
		case 0:
			return special[rng.IntN(len(special))]
		case 1:
			return math.Float32frombits(rng.Uint32())
		default:
			return float32(rng.NormFloat64() * math.Exp2(float64(rng.IntN(40)-20)))
		}
	}
	tiny := func() float32 { // results in the float32 subnormal range
		return float32(rng.NormFloat64() * math.Exp2(float64(-rng.IntN(30)-130)))
	}
	for i := 0; i < 300000; i++ {
		a, b, c := pick(), pick(), pick()
		if i%3 == 0 {
			a, b, c = float32(rng.NormFloat64()*1e-20), float32(rng.NormFloat64()*1e-19), tiny()
		}
		got := fma32(a, b, c)
		p := float64(a) * float64(b)
		if math.IsNaN(p+float64(c)) || math.IsInf(p+float64(c), 0) {
			if want := float32(p + float64(c)); !(math.IsNaN(float64(got)) && math.IsNaN(float64(want))) && got != want {
				t.Fatalf("fma32(%g, %g, %g) = %g, want %g", a, b, c, got, want)
			}
			continue
		}
		if want := exactFMA32(a, b, c); math.Float32bits(got) != math.Float32bits(want) && !(got == 0 && want == 0) {
			t.Fatalf("fma32(%g, %g, %g) = %g, want %g", a, b, c, got, want)
		}
	}
}

func randF32(rng *rand.Rand, n int, scale float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(rng.NormFloat64() * scale)
	}
	return out
}

// TestLowRankKernels checks the dispatched kernel (SIMD when built with
// GOEXPERIMENT=simd) against the generic one, bit for bit, on shapes that
// exercise every tile and remainder.
func TestLowRankKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, rows := range []int{1, 3, 4, 5, 8, 9} {
		for _, cols := range []int{1, 7, 8, 15, 16, 17, 63, 64, 65, 130, 200} {
			for _, r := range []int{1, 2, 8, 17} {
				l, rm := randF32(rng, rows*r, 0.1), randF32(rng, r*cols, 0.05)
				v0 := randF32(rng, rows*cols, 1)
				got, want := append([]float32(nil), v0...), append([]float32(nil), v0...)
				lowRankAdd(got, rows, cols, l, rm, r, 2.5, make([]float32, cols))
				lowRankAddGeneric(want, rows, cols, l, rm, r, 2.5, make([]float32, cols))
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s %dx%d r=%d: element %d: %g, generic %g", kernelName(), rows, cols, r, i, got[i], want[i])
					}
				}
				// The generic kernel against the definition.
				for i := 0; i < rows; i++ {
					for j := 0; j < cols; j++ {
						var acc float32
						for k := 0; k < r; k++ {
							acc = exactFMA32(l[i*r+k], rm[k*cols+j], acc)
						}
						w := float32(v0[i*cols+j] + float32(acc*2.5))
						if w != want[i*cols+j] {
							t.Fatalf("generic %dx%d r=%d: (%d,%d) = %g, definition %g", rows, cols, r, i, j, want[i*cols+j], w)
						}
					}
				}
			}
		}
	}
}

// BenchmarkLowRank reports the rank-r update throughput in GFLOP/s (2·rows·
// cols·r flops per call) and the weight bytes it covers per second (as bf16).
func BenchmarkLowRank(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct{ rows, cols, r int }{{2048, 2048, 16}, {5632, 2048, 16}, {2048, 5632, 16}, {4096, 4096, 64}} {
		names := []string{"generic"}
		if kernelName() != "generic" {
			names = append(names, kernelName())
		}
		for _, name := range names {
			b.Run(fmt.Sprintf("%s/%dx%d/r%d", name, c.rows, c.cols, c.r), func(b *testing.B) {
				l, rm := randF32(rng, c.rows*c.r, 0.1), randF32(rng, c.r*c.cols, 0.05)
				v := randF32(rng, c.rows*c.cols, 1)
				acc := make([]float32, c.cols)
				b.SetBytes(int64(2 * c.rows * c.cols))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if name == "generic" {
						lowRankAddGeneric(v, c.rows, c.cols, l, rm, c.r, 1, acc)
					} else {
						lowRankAdd(v, c.rows, c.cols, l, rm, c.r, 1, acc)
					}
				}
				b.ReportMetric(2*float64(c.rows*c.cols*c.r)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
