package q8

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lorakit/lorakit/internal/kernels/ktest"
)

func check(t *testing.T, src []float32) {
	t.Helper()
	nb := len(src) / QK
	got := make([]byte, nb*BlockBytes+1)
	want := make([]byte, nb*BlockBytes+1)
	got[nb*BlockBytes], want[nb*BlockBytes] = 0xAA, 0xAA
	gb, wb := Quantize(got[:nb*BlockBytes], src), quantizeGo(want[:nb*BlockBytes], src)
	if gb != wb {
		t.Fatalf("%s: first bad block %d, want %d", Impl(), gb, wb)
	}
	upto := nb * BlockBytes
	if wb >= 0 {
		upto = wb * BlockBytes
	}
	if !bytes.Equal(got[:upto], want[:upto]) {
		for i := range upto {
			if got[i] != want[i] {
				b, j := i/BlockBytes, i%BlockBytes-2
				x := float32(0)
				if j >= 0 {
					x = src[b*QK+j]
				}
				t.Fatalf("%s: block %d byte %d = %#02x, want %#02x (x %v)", Impl(), b, i%BlockBytes, got[i], want[i], x)
			}
		}
	}
	if got[nb*BlockBytes] != 0xAA {
		t.Fatalf("%s: wrote past the blocks", Impl())
	}
}

func TestQuantize(t *testing.T) {
	ktest.LogTier(t, Impl())
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 31, 32, 64, 33 * 32} {
		check(t, ktest.Normal(n, 0.02, r.Uint64()))
	}
	// Ties of roundf: values that scale to k + ½ exactly (amax 127 gives
	// id = 1), negative ties, zeros, a subnormal block whose 1/d overflows.
	x := make([]float32, 5*QK)
	x[0] = 127
	for j := 1; j < QK; j++ {
		x[j] = float32(j) + 0.5
		if j%2 == 0 {
			x[j] = -x[j]
		}
	}
	x[QK] = 1e-40
	x[QK+1] = -3e-41
	for j := 2 * QK; j < 3*QK; j++ {
		x[j] = float32(r.NormFloat64()) * 1e-3
	}
	x[3*QK+5] = 0.49999997
	x[3*QK+6] = -0.49999997
	x[3*QK+7] = 127
	check(t, x)
	for _, bad := range []float32{float32(math.Inf(1)), float32(math.NaN())} {
		y := append([]float32(nil), x...)
		y[2*QK+3] = bad
		check(t, y)
	}
}

// TestQuantizeScales compares the active tier with the plain-Go code on
// random data of many scales, including ties, subnormals and tiny blocks.
func TestQuantizeScales(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const nb = 4000
	src := make([]float32, nb*32)
	for b := 0; b < nb; b++ {
		scale := float32(math.Ldexp(1, r.IntN(250)-150)) // 2⁻¹⁵⁰ (all zero) … 2⁹⁹
		for j := 0; j < 32; j++ {
			v := float32(r.NormFloat64()) * scale
			switch r.IntN(8) {
			case 0:
				v = float32(r.IntN(255)-127) / 2 // halves: ties once d == 1
			case 1:
				v = 0
			}
			src[b*32+j] = v
		}
		if b%7 == 0 { // make d exactly 1 so the halves above are ties
			src[b*32] = 127
		}
	}
	want := make([]byte, nb*34)
	got := make([]byte, nb*34)
	if quantizeGo(want, src) != -1 || Quantize(got, src) != -1 {
		t.Fatal("unexpected non-finite")
	}
	for b := 0; b < nb; b++ {
		if string(got[b*34:b*34+34]) != string(want[b*34:b*34+34]) {
			t.Fatalf("block %d: %s %x, generic %x (input %v)", b, Impl(), got[b*34:b*34+34], want[b*34:b*34+34], src[b*32:b*32+32])
		}
	}
}

// FuzzQuantize feeds arbitrary words.
func FuzzQuantize(f *testing.F) {
	f.Add(uint64(1))
	f.Add(uint64(2))
	f.Fuzz(func(t *testing.T, seed uint64) {
		x := ktest.Floats(ktest.Bits(8*QK, seed))
		r := rand.New(rand.NewPCG(seed, 3))
		for i := range x {
			if x[i] != x[i] || math.IsInf(float64(x[i]), 0) || r.IntN(3) != 0 {
				x[i] = float32(r.NormFloat64() * math.Exp2(float64(r.IntN(80)-40)))
			}
		}
		check(t, x)
	})
}

func BenchmarkQuantize(b *testing.B) {
	x := ktest.Normal(1<<16, 0.02, 1)
	dst := make([]byte, len(x)/QK*BlockBytes)
	b.Run(Impl(), func(b *testing.B) {
		b.SetBytes(4 << 16)
		for b.Loop() {
			Quantize(dst, x)
		}
		ktest.ReportBest(b, 4<<16, func() { Quantize(dst, x) })
	})
}
