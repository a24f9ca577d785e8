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

// TestKernelsMatchGeneric compares the kernels in use (AVX-512 when built
// with GOEXPERIMENT=simd on a capable CPU) with their plain-Go twins bit
// for bit, at every alignment.
func TestKernelsMatchGeneric(t *testing.T) {
	t.Logf("SIMD kernels built in: %v", simdKernels)
	r := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 1<<14+8)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	for off := range 8 {
		for _, n := range []int{0, 2, 62, 64, 66, 128, 1000, 4096, 1 << 14} {
			b := buf[off : off+n]
			if got, want := maxBits16(b), maxBits16Generic(b); got != want {
				t.Fatalf("maxBits16 offset %d n %d: %#x, generic %#x", off, n, got, want)
			}
			b = b[:n&^3]
			if got, want := maxBits32(b), maxBits32Generic(b); got != want {
				t.Fatalf("maxBits32 offset %d n %d: %#x, generic %#x", off, n, got, want)
			}
		}
	}
	code := nf4.NF4.Code()
	fp4 := nf4.FP4.Code()
	for _, dt := range []dtype.DType{dtype.F32, dtype.BF16, dtype.F16} {
		for _, bs := range []int{32, 64, 128} {
			for _, n := range []int{1, 33, 64, 95, 128, 1000, 4096 + 17} {
				for vi, x := range testVectors(n, uint64(n+bs)) {
					packed := make([]byte, nf4.PackedLen(n))
					for i := range packed {
						packed[i] = byte(r.Uint32())
					}
					scales := make([]float32, nf4.NumBlocks(n, bs))
					for i := range scales {
						scales[i] = x[min(i*bs, n-1)]*3 + float32(r.NormFloat64())
					}
					for _, c := range []*[16]float32{&code, &fp4} {
						ga, gm := errBlocks(c, scales, dt, x, packed, bs)
						wa, wm := errBlocksGeneric(c, scales, dt, x, packed, bs)
						for l := range ga {
							if math.Float64bits(ga[l]) != math.Float64bits(wa[l]) && !(math.IsNaN(ga[l]) && math.IsNaN(wa[l])) {
								t.Fatalf("errBlocks %s bs %d n %d vector %d lane %d: %v, generic %v", dt, bs, n, vi, l, ga[l], wa[l])
							}
						}
						if gm != wm && !(gm > 0x7f800000 && wm > 0x7f800000) {
							t.Fatalf("errBlocks %s bs %d n %d vector %d: max %#x, generic %#x", dt, bs, n, vi, gm, wm)
						}
					}
				}
			}
		}
	}
}

// TestBlockTable checks the table rounding against package dtype.
func TestBlockTable(t *testing.T) {
	code := nf4.NF4.Code()
	for _, scale := range []float32{0, 1, 0.0123, 3.3e38, float32(math.Inf(1)), float32(math.NaN()), 1e-40, -2.5} {
		for _, dt := range []dtype.DType{dtype.F32, dtype.BF16, dtype.F16} {
			tab := blockTable(&code, scale, dt)
			for i, v := range tab {
				p := float32(code[i] * scale)
				want := p
				switch dt {
				case dtype.BF16:
					want = dtype.BF16ToF32(dtype.F32ToBF16(p))
				case dtype.F16:
					want = dtype.F16ToF32(dtype.F32ToF16(p))
				}
				if math.Float32bits(v) != math.Float32bits(want) {
					t.Errorf("%s scale %g code %d: %08x, want %08x", dt, scale, i, math.Float32bits(v), math.Float32bits(want))
				}
			}
		}
	}
}

// TestErrBlocksMeaning checks the error sums against a direct float64
// computation of Σ(x − dequantized)² and max |x − dequantized|.
func TestErrBlocksMeaning(t *testing.T) {
	const n, bs = 1000, 64
	x := randn(9, n, 0.1)
	q, err := nf4.QuantizeTensor(x, []int64{n}, nf4.Options{Type: nf4.NF4, Blocksize: bs, DType: dtype.F32})
	if err != nil {
		t.Fatal(err)
	}
	deq := make([]float32, n)
	if err := q.State.Dequantize(deq, q.Packed); err != nil {
		t.Fatal(err)
	}
	var sum, mx float64
	for i := range x {
		d := float64(x[i]) - float64(deq[i])
		sum += d * d
		mx = max(mx, math.Abs(d))
	}
	acc, m := errBlocks(&q.State.Map, q.State.Absmax, dtype.F32, x, q.Packed, bs)
	var got float64
	for _, v := range acc {
		got += v
	}
	if math.Abs(got-sum) > 1e-5*sum || float64(math.Float32frombits(m)) != mx {
		t.Fatalf("sum %v max %v, want %v %v", got, math.Float32frombits(m), sum, mx)
	}
}
