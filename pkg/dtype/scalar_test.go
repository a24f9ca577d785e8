package dtype

import (
	"math"
	"sort"
	"testing"

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
	for _, w := range testBits(1<<18, 1) {
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
	for _, w := range testBits(1<<18, 2) {
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

func TestF8Decode(t *testing.T) {
	for _, c := range []struct {
		b    uint8
		e4m3 float32
		e5m2 float32
	}{
		{0x00, 0, 0},
		{0x01, 0x1p-9, 0x1p-16},
		{0x08, 0x1p-6, 0x1p-13},
		{0x38, 1, 0.5},
		{0x3c, 1.5, 1},
		{0x7e, 448, float32(math.NaN())},
		{0x7b, 0x1p8 * 1.375, 57344},
		{0xc0, -2, -2},
		{0x80, float32(math.Copysign(0, -1)), float32(math.Copysign(0, -1))},
	} {
		if got := F8E4M3ToF32(c.b); !sameBits(got, c.e4m3) {
			t.Errorf("F8E4M3ToF32(%#02x) = %g, want %g", c.b, got, c.e4m3)
		}
		if math.IsNaN(float64(c.e5m2)) {
			continue
		}
		if got := F8E5M2ToF32(c.b); !sameBits(got, c.e5m2) {
			t.Errorf("F8E5M2ToF32(%#02x) = %g, want %g", c.b, got, c.e5m2)
		}
	}
	for _, b := range []uint8{0x7f, 0xff} {
		if !math.IsNaN(float64(F8E4M3ToF32(b))) {
			t.Errorf("F8E4M3ToF32(%#02x) is not NaN", b)
		}
	}
	for b := range 256 {
		e4, e5 := F8E4M3ToF32(uint8(b)), F8E5M2ToF32(uint8(b))
		if math.IsInf(float64(e4), 0) || math.IsNaN(float64(e4)) != (b&0x7f == 0x7f) {
			t.Errorf("F8E4M3ToF32(%#02x) = %g", b, e4)
		}
		if math.IsInf(float64(e5), 0) != (b&0x7f == 0x7c) || math.IsNaN(float64(e5)) != (b&0x7f > 0x7c) {
			t.Errorf("F8E5M2ToF32(%#02x) = %g", b, e5)
		}
		if !math.IsNaN(float64(e4)) && F32ToF8E4M3(e4) != uint8(b) {
			t.Errorf("F32ToF8E4M3(F8E4M3ToF32(%#02x)) = %#02x", b, F32ToF8E4M3(e4))
		}
		if !math.IsNaN(float64(e5)) && F32ToF8E5M2(e5) != uint8(b) {
			t.Errorf("F32ToF8E5M2(F8E5M2ToF32(%#02x)) = %#02x", b, F32ToF8E5M2(e5))
		}
	}
}

// refF8 rounds to nearest even by search over the positive codes 0..last,
// where vals[last] is the first value past the largest finite one (it encodes
// Inf for e5m2 and NaN for e4m3fn, which is what overflow gives).
func refF8(w uint32, vals []float64, nan uint8) uint8 {
	sign := uint8(w>>24) & 0x80
	x := math.Abs(float64(math.Float32frombits(w)))
	if math.IsNaN(x) {
		return nan | sign
	}
	last := len(vals) - 1
	c := sort.Search(len(vals), func(i int) bool { return vals[i] > x }) - 1 // vals[c] <= x
	if c < last && vals[c] != x {
		dlo, dhi := x-vals[c], vals[c+1]-x
		if dhi < dlo || dhi == dlo && c&1 == 1 {
			c++
		}
	}
	return uint8(c) | sign
}

func TestF32ToF8(t *testing.T) {
	var e4, e5 []float64
	for b := range 0x7f {
		e4 = append(e4, float64(F8E4M3ToF32(uint8(b))))
	}
	e4 = append(e4, 480) // 0x7f: NaN
	for b := range 0x7c {
		e5 = append(e5, float64(F8E5M2ToF32(uint8(b))))
	}
	e5 = append(e5, 65536) // 0x7c: Inf
	check := func(w uint32) {
		t.Helper()
		f := math.Float32frombits(w)
		if got, want := F32ToF8E4M3(f), refF8(w, e4, 0x7f); got != want {
			t.Fatalf("F32ToF8E4M3(%#08x = %g) = %#02x, want %#02x", w, f, got, want)
		}
		if got, want := F32ToF8E5M2(f), refF8(w, e5, 0x7f); got != want {
			t.Fatalf("F32ToF8E5M2(%#08x = %g) = %#02x, want %#02x", w, f, got, want)
		}
	}
	for _, w := range testBits(1<<16, 3) {
		check(w)
	}
	for hi := range 1 << 16 {
		for _, lo := range []uint32{0, 1, 0x7fff, 0x8000, 0xffff} {
			check(uint32(hi)<<16 | lo)
		}
	}
	for _, c := range []struct {
		in         float32
		e4m3, e5m2 uint8
	}{
		{448, 0x7e, 0x5f},
		{464, 0x7e, 0x5f},   // e4m3 tie rounds to even 448
		{464.5, 0x7f, 0x5f}, // rounds past 448: NaN
		{57344, 0x7f, 0x7b},
		{61440, 0x7f, 0x7c}, // e5m2 tie rounds to even: Inf
		{float32(math.Inf(-1)), 0xff, 0xfc},
		{0x1p-10, 0x00, 0x14},     // e4m3: half the smallest subnormal, tie to 0
		{0x1p-10 * 3, 0x02, 0x1a}, // e4m3: tie between 1 and 2 ULPs: even
		{0x1p-17, 0x00, 0x00},     // e5m2: tie to 0
		{0x1p-17 * 3, 0x00, 0x02},
	} {
		if got := F32ToF8E4M3(c.in); got != c.e4m3 {
			t.Errorf("F32ToF8E4M3(%g) = %#02x, want %#02x", c.in, got, c.e4m3)
		}
		if got := F32ToF8E5M2(c.in); got != c.e5m2 {
			t.Errorf("F32ToF8E5M2(%g) = %#02x, want %#02x", c.in, got, c.e5m2)
		}
	}
}
