package lowrank

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lorakit/lorakit/internal/kernels/fma"
	"github.com/lorakit/lorakit/internal/kernels/ktest"
)

// reference is the contract, element by element.
func reference(v []float32, rows, cols int, l, r []float32, rank int, scale float32) {
	for i := range rows {
		for j := range cols {
			var acc float32
			for k := range rank {
				acc = fma.F32(l[i*rank+k], r[k*cols+j], acc)
			}
			v[i*cols+j] = float32(v[i*cols+j] + float32(acc*scale))
		}
	}
}

func check(t *testing.T, rows, cols, rank int, l, r, v0 []float32, scale float32) {
	t.Helper()
	got := append([]float32(nil), v0...)
	want := append([]float32(nil), v0...)
	got = append(got, 42) // a guard past the block
	Add(got[:rows*cols], rows, cols, l, r, rank, scale, nil)
	reference(want, rows, cols, l, r, rank, scale)
	for i := range want {
		if !ktest.SameBits(got[i], want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
			t.Fatalf("%s %dx%d rank %d: element (%d,%d) = %g, reference %g", Impl(), rows, cols, rank, i/cols, i%cols, got[i], want[i])
		}
	}
	if got[rows*cols] != 42 {
		t.Fatalf("%s %dx%d rank %d: wrote past the block", Impl(), rows, cols, rank)
	}
}

// TestAdd runs shapes that exercise every tile, row remainder and column
// tail, bit for bit against the definition.
func TestAdd(t *testing.T) {
	ktest.LogTier(t, Impl())
	r := rand.New(rand.NewPCG(3, 4))
	for _, rows := range []int{1, 2, 3, 4, 5, 7, 8, 9} {
		for _, cols := range []int{1, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 130, 200} {
			for _, rank := range []int{0, 1, 2, 8, 17} {
				check(t, rows, cols, rank, ktest.Normal(rows*rank, 0.1, r.Uint64()),
					ktest.Normal(rank*cols, 0.05, r.Uint64()), ktest.Normal(rows*cols, 1, r.Uint64()), 2.5)
			}
		}
	}
	// A chain where a separately rounded product would differ: the FMA
	// gives 1 + 2⁻²³, rounding a·b first gives 1.
	a := float32(math.Ldexp(float64(1<<23+2896), -47))
	b := float32(math.Ldexp(float64(1<<23-2895), -23))
	v := make([]float32, 4*16)
	l := make([]float32, 4*2)
	rm := make([]float32, 2*16)
	for i := range 4 {
		l[i*2], l[i*2+1] = 1, a
	}
	for j := range 16 {
		rm[j], rm[16+j] = 1, b
	}
	Add(v, 4, 16, l, rm, 2, 1, nil)
	for i, x := range v {
		if want := float32(1 + math.Ldexp(1, -23)); x != want {
			t.Fatalf("%s: element %d = %v, want %v (one rounding per FMA)", Impl(), i, x, want)
		}
	}
}

// FuzzAdd feeds arbitrary values (NaN, Inf, subnormals) and shapes.
func FuzzAdd(f *testing.F) {
	f.Add(uint8(5), uint8(37), uint8(3), uint64(1), float32(2))
	f.Add(uint8(4), uint8(16), uint8(16), uint64(2), float32(-0.5))
	f.Fuzz(func(t *testing.T, rows, cols, rank uint8, seed uint64, scale float32) {
		m, n, k := int(rows%13), int(cols), int(rank%33)
		vals := ktest.Floats(ktest.Bits(m*k+k*n+m*n, seed))
		r := rand.New(rand.NewPCG(seed, 9))
		for i := range vals {
			if r.IntN(6) != 0 {
				vals[i] = float32(r.NormFloat64())
			}
		}
		check(t, m, n, k, vals[:m*k], vals[m*k:m*k+k*n], vals[m*k+k*n:], scale)
	})
}

// BenchmarkAdd reports the update's GFLOP/s (2·rows·cols·rank per call) and
// the weight bytes it covers per second (as bf16).
func BenchmarkAdd(b *testing.B) {
	for _, c := range []struct{ rows, cols, rank int }{{2048, 2048, 16}, {4096, 4096, 16}, {4096, 4096, 64}} {
		b.Run(fmt.Sprintf("%s/%dx%d/r%d", Impl(), c.rows, c.cols, c.rank), func(b *testing.B) {
			l, r := ktest.Normal(c.rows*c.rank, 0.1, 1), ktest.Normal(c.rank*c.cols, 0.05, 2)
			v := ktest.Normal(c.rows*c.cols, 1, 3)
			var scratch []float32
			b.SetBytes(int64(2 * c.rows * c.cols))
			for b.Loop() {
				scratch = Add(v, c.rows, c.cols, l, r, c.rank, 1, scratch)
			}
			b.ReportMetric(float64(b.N)*2*float64(c.rows*c.cols*c.rank)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			flop := 2 * float64(c.rows*c.cols*c.rank) / 1e9
			b.ReportMetric(ktest.BestRate(300e6, flop, func() { scratch = Add(v, c.rows, c.cols, l, r, c.rank, 1, scratch) }), "best-GFLOP/s")
		})
	}
}
