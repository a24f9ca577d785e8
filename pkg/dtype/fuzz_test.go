package dtype

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/x448/float16"
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
// to every encoder: the kernels must agree with the scalar code (and x448),
// and a bf16/f16 round trip through float32 must give the input back.
func FuzzConvert(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x80, 0x3f, 0x01, 0x7c, 0x01, 0x7f, 0xff, 0xff, 0x00, 0x80, 0x00, 0x00, 0xc0, 0x7f})
	seed := make([]byte, 4*40)
	for i, w := range testBits(40, 11) {
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
		back := make([]uint16, len(h))
		for _, k := range kernelPairs {
			k.decode(fl, h)
			k.encode(back, fl)
			for i := range h {
				if want := k.dec(h[i]); !sameBits(fl[i], want) {
					t.Fatalf("%s decode %#04x: %#08x want %#08x", k.name, h[i], math.Float32bits(fl[i]), math.Float32bits(want))
				}
				want := h[i]
				if math.IsNaN(float64(fl[i])) {
					want = k.enc(fl[i]) // NaN: quiet bit set
				}
				if back[i] != want {
					t.Fatalf("%s round trip %#04x: %#04x", k.name, h[i], back[i])
				}
			}
		}
		src := make([]float32, len(data)/4)
		for i := range src {
			src[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		}
		out := make([]uint16, len(src))
		for _, k := range kernelPairs {
			k.encode(out, src)
			for i, f := range src {
				if want := k.enc(f); out[i] != want {
					t.Fatalf("%s encode %#08x: %#04x want %#04x", k.name, math.Float32bits(f), out[i], want)
				}
			}
		}
		for _, f := range src {
			if F32ToF16(f) != float16.Fromfloat32(f).Bits() {
				t.Fatalf("F32ToF16(%#08x) differs from x448", math.Float32bits(f))
			}
			if w := math.Float32bits(f); F32ToBF16(f) != refBF16(w) {
				t.Fatalf("F32ToBF16(%#08x) differs from the reference", w)
			}
		}
	})
}
