package half

import (
	"math"
	"testing"

	"github.com/lorakit/lorakit/internal/kernels/ktest"
	"github.com/x448/float16"
)

func TestBF16ToF32All(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		if got := math.Float32bits(BF16ToF32(h)); got != uint32(h)<<16 {
			t.Fatalf("BF16ToF32(%#04x) = %#08x", h, got)
		}
		back := F32ToBF16(BF16ToF32(h))
		want := h
		if h&0x7fff > 0x7f80 {
			want |= 0x40 // NaN: quiet bit set
		}
		if back != want {
			t.Fatalf("F32ToBF16(BF16ToF32(%#04x)) = %#04x, want %#04x", h, back, want)
		}
	}
}

func TestF32ToBF16Table(t *testing.T) {
	for _, c := range []struct {
		in   uint32
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1
		{0x3f808000, 0x3f80}, // tie, even below
		{0x3f818000, 0x3f82}, // tie, odd below: up
		{0x3f808001, 0x3f81},
		{0x3f807fff, 0x3f80},
		{0xbf808001, 0xbf81},
		{0x80000000, 0x8000},
		{0x00008000, 0x0000}, // subnormal tie
		{0x00018000, 0x0002},
		{0x7f7f8000, 0x7f80}, // rounds up to Inf, as IEEE and torch
		{0x7f7f7fff, 0x7f7f},
		{0x7f800000, 0x7f80},
		{0xff800000, 0xff80},
		{0x7f800001, 0x7fc0}, // sNaN whose payload is all below bf16: quiet, not Inf
		{0xff800001, 0xffc0},
		{0x7fc00000, 0x7fc0},
		{0x7fffffff, 0x7fff}, // NaN never rounds (would carry into the sign)
		{0x7f80ffff, 0x7fc0},
	} {
		if got := F32ToBF16(math.Float32frombits(c.in)); got != c.want {
			t.Errorf("F32ToBF16(%#08x) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
}

// refBF16 rounds by comparing distances in float64, independently of the bit trick.
func refBF16(w uint32) uint16 {
	if w&0x7fffffff > 0x7f800000 {
		return uint16(w>>16) | 0x40
	}
	lo := uint16(w >> 16)
	if w&0xffff == 0 {
		return lo
	}
	val := func(h uint16) float64 {
		if h&0x7fff == 0x7f80 {
			return math.Copysign(0x1p128, float64(BF16ToF32(h)))
		}
		return float64(BF16ToF32(h))
	}
	x := float64(math.Float32frombits(w))
	dlo, dhi := math.Abs(x-val(lo)), math.Abs(val(lo+1)-x)
	if dlo < dhi || dlo == dhi && lo&1 == 0 {
		return lo
	}
	return lo + 1
}

func TestF32ToBF16Random(t *testing.T) {
	for _, w := range ktest.Bits(1<<18, 1) {
		if got, want := F32ToBF16(math.Float32frombits(w)), refBF16(w); got != want {
			t.Fatalf("F32ToBF16(%#08x) = %#04x, want %#04x", w, got, want)
		}
	}
}

func TestF16ToF32AllVsX448(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		got, want := math.Float32bits(F16ToF32(h)), math.Float32bits(float16.Frombits(h).Float32())
		if got != want {
			t.Fatalf("F16ToF32(%#04x) = %#08x, x448 %#08x", h, got, want)
		}
	}
}

func TestF32ToF16VsX448(t *testing.T) {
	check := func(w uint32) {
		t.Helper()
		f := math.Float32frombits(w)
		if got, want := F32ToF16(f), float16.Fromfloat32(f).Bits(); got != want {
			t.Fatalf("F32ToF16(%#08x) = %#04x, x448 %#04x", w, got, want)
		}
	}
	for _, w := range ktest.Bits(1<<18, 2) {
		check(w)
	}
	// Every half, and the f32 values at, just below, just above and exactly
	// between consecutive halves (ties).
	for i := range 1<<16 - 1 {
		a, b := math.Float32bits(F16ToF32(uint16(i))), math.Float32bits(F16ToF32(uint16(i+1)))
		check(a)
		if a&0x7fffffff >= 0x7f800000 || b&0x7fffffff >= 0x7f800000 || i == 0x7fff {
			continue
		}
		mid := a + (b-a)/2
		for _, d := range []uint32{0, 1} {
			check(mid - d)
			check(mid + d)
		}
		check(a + 1)
		check(b - 1)
	}
	// x448 itself rounds to nearest even.
	for _, c := range []struct {
		in   float32
		want uint16
	}{
		{1 + 0x1p-11, 0x3c00},   // tie, even below
		{1 + 3*0x1p-11, 0x3c02}, // tie, odd below
		{65519.99, 0x7bff},      // below the overflow midpoint
		{65520, 0x7c00},         // the midpoint rounds to Inf (even)
		{0x1p-25, 0x0000},       // half the smallest subnormal: tie to 0
		{0x1p-25 * 1.5, 0x0001}, // above the tie
		{3 * 0x1p-25, 0x0002},   // tie between 1 and 2 subnormal ULPs: even
		{-0x1p-14, 0x8400},      // smallest normal
		{float32(math.NaN()), 0x7e00},
	} {
		if got := F32ToF16(c.in); got != c.want || float16.Fromfloat32(c.in).Bits() != c.want {
			t.Errorf("F32ToF16(%g) = %#04x, x448 %#04x, want %#04x", c.in, got, float16.Fromfloat32(c.in).Bits(), c.want)
		}
	}
}
