package quantize

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
)

// special holds values that stress the kernels: zeros of both signs,
// subnormals, the f32(1e-38) clamp, Inf and NaN.
var special = []float32{0, float32(math.Copysign(0, -1)), 1e-40, -3e-39, 1e-38, 9.99e-39, 1e-45,
	float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 65504, -70000, 1e30}

// testVectors returns inputs of the given length: random, with all-zero
// blocks, tiny blocks, and special values sprinkled in.
func testVectors(n int, seed uint64) [][]float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	var out [][]float32
	plain := randn(seed, n, 0.05)
	out = append(out, plain)
	zeros := append([]float32(nil), plain...)
	for i := 0; i < n; i += 200 {
		clear(zeros[i:min(i+100, n)])
	}
	out = append(out, zeros, make([]float32, n))
	tiny := make([]float32, n)
	for i := range tiny {
		tiny[i] = float32(r.NormFloat64() * 1e-39)
	}
	out = append(out, tiny)
	sp := append([]float32(nil), plain...)
	for i := range sp {
		if r.IntN(97) == 0 {
			sp[i] = special[r.IntN(len(special))]
		}
	}
	return append(out, sp)
}

// TestBlockAbsmaxMatchesNF4 checks the first pass's absmax against the
// values nf4.Quantize stores, for every dtype, block size, partial blocks,
// zeros, subnormals, Inf and NaN.
func TestBlockAbsmaxMatchesNF4(t *testing.T) {
	for _, dt := range []dtype.DType{dtype.F32, dtype.BF16, dtype.F16} {
		for _, bs := range []int{32, 64, 256, 4096} {
			for _, n := range []int{1, 31, 64, 65, 1000, 4097, 9999} {
				for vi, v := range testVectors(n, uint64(n*bs)) {
					raw := make([]byte, n*dt.Size())
					if err := dtype.FromF32(raw, v, dt); err != nil {
						t.Fatal(err)
					}
					x := make([]float32, n)
					if err := dtype.ToF32(x, raw, dt); err != nil {
						t.Fatal(err)
					}
					want := make([]float32, nf4.NumBlocks(n, bs))
					if err := nf4.Quantize(make([]byte, nf4.PackedLen(n)), want, x, bs, nf4.NF4); err != nil {
						t.Fatal(err)
					}
					got := make([]float32, len(want))
					blockAbsmax(got, raw, dt, bs)
					for b := range want {
						if math.Float32bits(got[b]) != math.Float32bits(want[b]) {
							t.Fatalf("%s bs %d n %d vector %d block %d: %g (%08x), nf4 %g (%08x)", dt, bs, n, vi, b,
								got[b], math.Float32bits(got[b]), want[b], math.Float32bits(want[b]))
						}
					}
				}
			}
		}
	}
}
