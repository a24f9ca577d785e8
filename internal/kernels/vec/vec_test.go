package vec

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lorakit/lorakit/internal/kernels/ktest"
)

// fmaTier reports whether the active implementation promises the FMA
// references bit for bit.
func fmaTier() bool { return useFMA }

func sameOrBothNaN(a, b float32) bool {
	return ktest.SameBits(a, b) || a != a && b != b
}

// closeTo checks the generic tier against the FMA reference: a few ulp of
// the magnitude of the terms.
func closeTo(got, want float32, mag float64) bool {
	if got != got || want != want {
		return got != got && want != want
	}
	return math.Abs(float64(got)-float64(want)) <= 1e-6*mag+1e-30
}

func TestDotAxpy(t *testing.T) {
	ktest.LogTier(t, Impl())
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 64, 100, 1000} {
		a, b := ktest.Normal(n, 1, r.Uint64()), ktest.Normal(n, 1, r.Uint64())
		var mag float64
		for i := range a {
			mag += math.Abs(float64(a[i] * b[i]))
		}
		got, want := Dot(a, b), DotFMA(a, b)
		if fmaTier() && !ktest.SameBits(got, want) || !closeTo(got, want, mag) {
			t.Fatalf("%s n=%d: Dot %v, DotFMA %v", Impl(), n, got, want)
		}
		y := ktest.Normal(n+1, 1, r.Uint64())
		y2 := append([]float32(nil), y...)
		Axpy(y[:n], a, 0.3)
		AxpyFMA(y2[:n], a, 0.3)
		for i := range y {
			if fmaTier() && !ktest.SameBits(y[i], y2[i]) || !closeTo(y[i], y2[i], 2) {
				t.Fatalf("%s n=%d: Axpy[%d] %v, AxpyFMA %v", Impl(), n, i, y[i], y2[i])
			}
		}
	}
}

func TestExps(t *testing.T) {
	ktest.LogTier(t, Impl())
	var xs []float32
	for x := float32(-100); x <= 100; x += 0.0371 {
		xs = append(xs, x)
	}
	xs = append(xs, float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0,
		float32(math.Copysign(0, -1)), expLo, expHi, expLo-1e-5, expHi+1e-5, 87.9999, -87.3365)
	xs = append(xs, ktest.Floats(ktest.Bits(4000, 3))...)
	got := append([]float32(nil), xs...)
	Exps(got)
	for i, x := range xs {
		want := ExpFMA(x)
		if fmaTier() && !sameOrBothNaN(got[i], want) {
			t.Fatalf("%s exp(%v) = %v, ExpFMA %v", Impl(), x, got[i], want)
		}
		if !fmaTier() && !sameOrBothNaN(got[i], Exp(x)) {
			t.Fatalf("%s exp(%v) = %v, Exp %v", Impl(), x, got[i], Exp(x))
		}
		for _, v := range []float32{got[i], want} {
			checkExp(t, x, v)
		}
	}
}

// checkExp holds an exp result to the documented accuracy.
func checkExp(t *testing.T, x, v float32) {
	t.Helper()
	switch {
	case x != x:
		if v == v {
			t.Fatalf("exp(NaN) = %v", v)
		}
	case x < expLo:
		if v != 0 {
			t.Fatalf("exp(%v) = %v, want 0", x, v)
		}
	case x > expHi:
		if !math.IsInf(float64(v), 1) {
			t.Fatalf("exp(%v) = %v, want +Inf", x, v)
		}
	default:
		want := math.Exp(float64(x))
		if e := math.Abs(float64(v)-want) / want; e > 3e-7 {
			t.Fatalf("exp(%v) = %v, want %v (rel %.2g)", x, v, want, e)
		}
	}
}

func TestReductions(t *testing.T) {
	ktest.LogTier(t, Impl())
	r := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 200, 1000} {
		for trial := range 20 {
			h := make([]uint16, n)
			u := make([]uint32, n)
			for i := range h {
				h[i] = uint16(r.Uint32() >> uint(r.IntN(17)))
				u[i] = r.Uint32() >> uint(r.IntN(33))
			}
			if n > 0 && trial%3 == 0 {
				h[r.IntN(n)] = 0x7c00 | uint16(r.IntN(2))<<15
			}
			var wh uint16
			var wu uint32
			inf := false
			for i := range h {
				wh = max(wh, h[i]&0x7fff)
				wu = max(wu, u[i]&0x7fffffff)
				inf = inf || h[i]&0x7fff == 0x7c00
			}
			if g := MaxAbs16(h); g != wh {
				t.Fatalf("%s n=%d: MaxAbs16 %#x, want %#x", Impl(), n, g, wh)
			}
			if g := MaxAbs32(u); g != wu {
				t.Fatalf("%s n=%d: MaxAbs32 %#x, want %#x", Impl(), n, g, wu)
			}
			if g := AnyF16Inf(h); g != inf {
				t.Fatalf("%s n=%d: AnyF16Inf %v, want %v", Impl(), n, g, inf)
			}
			// The byte forms, at an odd offset too.
			b := make([]byte, 1+4*n)
			for i, v := range h {
				b[1+2*i], b[2+2*i] = byte(v), byte(v>>8)
			}
			if MaxAbs16LE(b[1:1+2*n]) != wh || AnyF16InfLE(b[1:1+2*n]) != inf {
				t.Fatalf("%s n=%d: byte forms of the 16-bit reductions disagree", Impl(), n)
			}
			for i, v := range u {
				b[1+4*i], b[2+4*i], b[3+4*i], b[4+4*i] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
			}
			if MaxAbs32LE(b[1:1+4*n]) != wu {
				t.Fatalf("%s n=%d: MaxAbs32LE disagrees", Impl(), n)
			}
		}
	}
}

// FuzzVec feeds arbitrary words through every primitive.
func FuzzVec(f *testing.F) {
	f.Add([]byte{0, 0, 0x80, 0x7f, 0, 0, 0xc0, 0xff, 1, 2, 3, 4}, float32(0.5))
	f.Add(make([]byte, 4*70), float32(-2))
	f.Fuzz(func(t *testing.T, b []byte, alpha float32) {
		n := len(b) / 8
		a, c := make([]float32, n), make([]float32, n)
		h := make([]uint16, len(b)/2)
		u := make([]uint32, len(b)/4)
		for i := range h {
			h[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
		}
		for i := range u {
			u[i] = uint32(h[2*i]) | uint32(h[2*i+1])<<16
		}
		for i := range a {
			a[i], c[i] = math.Float32frombits(u[i]), math.Float32frombits(u[n+i])
		}
		if fmaTier() {
			if got, want := Dot(a, c), DotFMA(a, c); !sameOrBothNaN(got, want) {
				t.Fatalf("Dot %v, DotFMA %v", got, want)
			}
			y, y2 := append([]float32(nil), c...), append([]float32(nil), c...)
			Axpy(y, a, alpha)
			AxpyFMA(y2, a, alpha)
			for i := range y {
				if !sameOrBothNaN(y[i], y2[i]) {
					t.Fatalf("Axpy[%d] %v, AxpyFMA %v", i, y[i], y2[i])
				}
			}
		}
		e := append([]float32(nil), a...)
		Exps(e)
		for i, x := range a {
			want := Exp(x)
			if fmaTier() {
				want = ExpFMA(x)
			}
			if !sameOrBothNaN(e[i], want) {
				t.Fatalf("exp(%v) = %v, want %v", x, e[i], want)
			}
		}
		var wh uint16
		var wu uint32
		inf := false
		for _, v := range h {
			wh, inf = max(wh, v&0x7fff), inf || v&0x7fff == 0x7c00
		}
		for _, v := range u {
			wu = max(wu, v&0x7fffffff)
		}
		if MaxAbs16(h) != wh || MaxAbs32(u) != wu || AnyF16Inf(h) != inf {
			t.Fatal("reductions disagree with the definition")
		}
	})
}

func BenchmarkVec(b *testing.B) {
	x, y := ktest.Normal(4096, 1, 1), ktest.Normal(4096, 1, 2)
	b.Run("dot/"+Impl(), func(b *testing.B) {
		b.SetBytes(8 * 4096)
		for b.Loop() {
			Dot(x, y)
		}
	})
	b.Run("axpy/"+Impl(), func(b *testing.B) {
		b.SetBytes(8 * 4096)
		for b.Loop() {
			Axpy(y, x, 1e-9)
		}
	})
	b.Run("exps/"+Impl(), func(b *testing.B) {
		e := make([]float32, len(x))
		b.SetBytes(4 * 4096)
		for b.Loop() {
			copy(e, x)
			Exps(e)
		}
	})
	h := make([]uint16, 1<<16)
	b.Run("maxabs16/"+Impl(), func(b *testing.B) {
		b.SetBytes(2 << 16)
		for b.Loop() {
			MaxAbs16(h)
		}
	})
}

// TestRows checks the row primitives against single Dot and Axpy calls, bit
// for bit, for lengths with and without assembly and strides above the row
// length.
func TestRows(t *testing.T) {
	ktest.LogTier(t, Impl())
	r := rand.New(rand.NewPCG(9, 10))
	for _, d := range []int{1, 8, 16, 17, 32, 64, 96, 128} {
		for _, n := range []int{0, 1, 2, 5, 33} {
			ld := d + r.IntN(3)
			q := ktest.Normal(d, 1, r.Uint64())
			k := ktest.Normal(max(0, (n-1)*ld+d), 1, r.Uint64())
			alpha := ktest.Normal(n, 1, r.Uint64())
			out := make([]float32, n)
			DotN(q, k, ld, out)
			for j := range out {
				if want := Dot(q, k[j*ld:j*ld+d]); !ktest.SameBits(out[j], want) {
					t.Fatalf("%s DotN d=%d n=%d: out[%d] = %v, Dot %v", Impl(), d, n, j, out[j], want)
				}
			}
			y := append([]float32(nil), k...)
			y2 := append([]float32(nil), k...)
			AxpyN(y, ld, q, alpha)
			for j, a := range alpha {
				Axpy(y2[j*ld:j*ld+d], q, a)
			}
			for i := range y {
				if !ktest.SameBits(y[i], y2[i]) {
					t.Fatalf("%s AxpyN d=%d n=%d: [%d] = %v, Axpy %v", Impl(), d, n, i, y[i], y2[i])
				}
			}
			acc := append([]float32(nil), q...)
			acc2 := append([]float32(nil), q...)
			AxpyAcc(acc, k, ld, alpha)
			for j, a := range alpha {
				Axpy(acc2, k[j*ld:j*ld+d], a)
			}
			for i := range acc {
				if !ktest.SameBits(acc[i], acc2[i]) {
					t.Fatalf("%s AxpyAcc d=%d n=%d: [%d] = %v, Axpy %v", Impl(), d, n, i, acc[i], acc2[i])
				}
			}
		}
	}
}

// TestAnyF16InfPositions puts one special value at every position of
// short inputs, at two alignments, for the byte and the uint16 forms.
func TestAnyF16InfPositions(t *testing.T) {
	for n := 0; n < 140; n++ {
		for pos := -1; pos < n; pos++ {
			for _, v := range []uint16{0x7c00, 0xfc00, 0x7e00, 0x7bff, 0x3c00} {
				h := make([]uint16, n)
				b := make([]byte, 2*n+1)
				for i := range h {
					h[i] = uint16(0x3000 + i*7)
				}
				if pos >= 0 {
					h[pos] = v
				}
				for i, x := range h {
					b[1+2*i], b[2+2*i] = byte(x), byte(x>>8)
				}
				want := pos >= 0 && v&0x7fff == 0x7c00
				if AnyF16Inf(h) != want || AnyF16InfLE(b[1:]) != want {
					t.Fatalf("%s n %d, %#x at %d: want %v", Impl(), n, v, pos, want)
				}
			}
		}
	}
}
