package num

import (
	"math"
	"testing"
)

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 7: "7", 999: "999", 1000: "1,000", -1000: "-1,000",
		13631488: "13,631,488", -123456: "-123,456", math.MinInt64: "-9,223,372,036,854,775,808"} {
		if got := Thousands(n); got != want {
			t.Errorf("Thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestBytes(t *testing.T) {
	cases := []struct {
		n    int64
		dec  int
		want string
	}{{0, 1, "0 B"}, {1023, 1, "1023 B"}, {1536, 1, "1.5 KiB"}, {3 << 30, 2, "3.00 GiB"}, {5 << 20, 1, "5.0 MiB"}}
	for _, c := range cases {
		if got := Bytes(c.n, c.dec); got != c.want {
			t.Errorf("Bytes(%d, %d) = %q, want %q", c.n, c.dec, got, c.want)
		}
	}
}

func TestElementsAndF32Bytes(t *testing.T) {
	if Elements(nil) != 1 || Elements([]int64{3, 4, 5}) != 60 || Elements([]int64{2, 0}) != 0 {
		t.Error("Elements")
	}
	b := F32Bytes([]float32{1, -2})
	if len(b) != 8 || b[3] != 0x3f || b[7] != 0xc0 {
		t.Errorf("F32Bytes = % x", b)
	}
	if F32Bytes(nil) != nil {
		t.Error("F32Bytes(nil)")
	}
}

func TestMix64(t *testing.T) {
	// SplitMix64 from seed 0: the first outputs of the reference generator.
	want := []uint64{0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f}
	for i, w := range want {
		if got := Mix64(uint64(i+1) * Golden); got != w {
			t.Errorf("output %d = %#x, want %#x", i, got, w)
		}
	}
}

func TestTranspose(t *testing.T) {
	got := Transpose([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	want := []float32{1, 4, 2, 5, 3, 6}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Transpose = %v, want %v", got, want)
		}
	}
}
