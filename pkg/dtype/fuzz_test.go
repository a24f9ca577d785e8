package dtype

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/lorakit/lorakit/internal/kernels/ktest"
)

func FuzzParse(f *testing.F) {
	for _, d := range All {
		f.Add(string(d))
	}
	for _, s := range []string{"", "bf16", "torch.bfloat16", "half", "F8_E4M3FN", "\x00", "torch."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrUnknown) || d != "" {
				t.Fatalf("Parse(%q) = %q, %v", s, d, err)
			}
		} else if string(d) != s || d.Size() == 0 {
			t.Fatalf("Parse(%q) = %q (size %d)", s, d, d.Size())
		}
		n, err := ParseName(s)
		switch {
		case err != nil && !errors.Is(err, ErrUnknown):
			t.Fatalf("ParseName(%q): %v", s, err)
		case err == nil && n.Size() == 0:
			t.Fatalf("ParseName(%q) = %q, unknown", s, n)
		case d != "" && n != d:
			t.Fatalf("ParseName(%q) = %q but Parse = %q", s, n, d)
		}
	})
}

// FuzzConvert feeds arbitrary bytes to every decoder and, read as float32s,
// to every float encoder: the byte-level paths must agree with the scalar
// conversions element by element.
func FuzzConvert(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x80, 0x3f, 0x01, 0x7c, 0x01, 0x7f, 0xff, 0xff, 0x00, 0x80, 0x00, 0x00, 0xc0, 0x7f})
	seed := make([]byte, 4*40)
	for i, w := range ktest.Bits(40, 11) {
		binary.LittleEndian.PutUint32(seed[4*i:], w)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, d := range All {
			n := len(data) / d.Size()
			dst := make([]float32, n)
			if err := ToF32(dst, data[:n*d.Size()], d); err != nil {
				t.Fatalf("ToF32 %s: %v", d, err)
			}
		}
		h := make([]uint16, len(data)/2)
		for i := range h {
			h[i] = binary.LittleEndian.Uint16(data[2*i:])
		}
		fl := make([]float32, len(h))
		for _, c := range []struct {
			d   DType
			dec func(uint16) float32
		}{{BF16, BF16ToF32}, {F16, F16ToF32}} {
			if err := ToF32(fl, data[:2*len(h)], c.d); err != nil {
				t.Fatal(err)
			}
			for i := range h {
				if want := c.dec(h[i]); !ktest.SameBits(fl[i], want) {
					t.Fatalf("%s decode %#04x: %#08x want %#08x", c.d, h[i], math.Float32bits(fl[i]), math.Float32bits(want))
				}
			}
		}
		src := make([]float32, len(data)/4)
		for i := range src {
			src[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		}
		out := make([]byte, 2*len(src))
		for _, c := range []struct {
			d   DType
			enc func(float32) uint16
		}{{BF16, F32ToBF16}, {F16, F32ToF16}} {
			if err := FromF32(out, src, c.d); err != nil {
				t.Fatal(err)
			}
			for i, f := range src {
				if got, want := binary.LittleEndian.Uint16(out[2*i:]), c.enc(f); got != want {
					t.Fatalf("%s encode %#08x: %#04x want %#04x", c.d, math.Float32bits(f), got, want)
				}
			}
		}
	})
}
