package dtype

import (
	"math"
	"sort"
	"testing"

	"github.com/lorakit/lorakit/internal/kernels/ktest"
)

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
		if got := F8E4M3ToF32(c.b); !ktest.SameBits(got, c.e4m3) {
			t.Errorf("F8E4M3ToF32(%#02x) = %g, want %g", c.b, got, c.e4m3)
		}
		if math.IsNaN(float64(c.e5m2)) {
			continue
		}
		if got := F8E5M2ToF32(c.b); !ktest.SameBits(got, c.e5m2) {
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
	for _, w := range ktest.Bits(1<<16, 3) {
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
