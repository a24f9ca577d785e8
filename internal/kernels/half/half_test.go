package half

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/lorakit/lorakit/internal/kernels/ktest"
	"github.com/x448/float16"
)

type pair struct {
	name   string
	decode func([]float32, []uint16)
	encode func([]uint16, []float32)
	dec    func(uint16) float32
	enc    func(float32) uint16
}

var pairs = []pair{
	{"BF16", DecodeBF16, EncodeBF16, BF16ToF32, F32ToBF16},
	{"F16", DecodeF16, EncodeF16, F16ToF32, F32ToF16},
}

// TestDecodeAll compares the bulk decoders with the scalar ones on every
// 16-bit pattern.
func TestDecodeAll(t *testing.T) {
	ktest.LogTier(t, Impl())
	src := make([]uint16, 1<<16)
	for i := range src {
		src[i] = uint16(i)
	}
	for _, p := range pairs {
		got := make([]float32, len(src))
		p.decode(got, src)
		for i, h := range src {
			if want := p.dec(h); !ktest.SameBits(got[i], want) {
				t.Fatalf("%s decode %#04x = %#08x, want %#08x", p.name, h, math.Float32bits(got[i]), math.Float32bits(want))
			}
		}
	}
}

// TestEncode compares the bulk encoders with the scalar ones on random and
// special words, every decoded half and the words around the rounding
// midpoints.
func TestEncode(t *testing.T) {
	ktest.LogTier(t, Impl())
	bits := ktest.Bits(1<<17, 4)
	for i := range 1<<16 - 1 {
		a := math.Float32bits(F16ToF32(uint16(i)))
		b := math.Float32bits(BF16ToF32(uint16(i)))
		bits = append(bits, a, a+1, a-1, a+0x1000, b, b+0x8000, b+0x7fff)
	}
	checkEncode(t, ktest.Floats(bits))
}

func checkEncode(t *testing.T, src []float32) {
	for _, p := range pairs {
		got := make([]uint16, len(src))
		p.encode(got, src)
		for i, f := range src {
			if want := p.enc(f); got[i] != want {
				t.Fatalf("%s encode %#08x = %#04x, want %#04x", p.name, math.Float32bits(f), got[i], want)
			}
		}
	}
}

// TestTails checks every length up to a few blocks, so that the assembly
// body and the plain-Go tail agree and nothing is written past the end.
func TestTails(t *testing.T) {
	f := ktest.Floats(ktest.Bits(300, 5))
	for _, p := range pairs {
		for n := 0; n <= 260; n++ {
			h := make([]uint16, n+1)
			h[n] = 0xAAAA
			p.encode(h[:n], f[:n])
			for i := range n {
				if h[i] != p.enc(f[i]) {
					t.Fatalf("%s encode n=%d i=%d: %#04x want %#04x", p.name, n, i, h[i], p.enc(f[i]))
				}
			}
			dst := make([]float32, n+1)
			dst[n] = 42
			p.decode(dst[:n], h[:n])
			for i := range n {
				if want := p.dec(h[i]); !ktest.SameBits(dst[i], want) {
					t.Fatalf("%s decode n=%d i=%d: %g want %g", p.name, n, i, dst[i], want)
				}
			}
			if h[n] != 0xAAAA || dst[n] != 42 {
				t.Fatalf("%s n=%d wrote out of bounds", p.name, n)
			}
		}
	}
}

// FuzzConvert reads arbitrary bytes as 16-bit values (decoded, re-encoded:
// the input comes back, NaNs quieted) and as float32 words (encoded): the
// active tier must agree with the scalar code, x448 and the float64
// reference.
func FuzzConvert(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x80, 0x3f, 0x01, 0x7c, 0x01, 0x7f, 0xff, 0xff, 0x00, 0x80, 0x00, 0x00, 0xc0, 0x7f})
	seed := make([]byte, 4*80)
	for i, w := range ktest.Bits(80, 11) {
		binary.LittleEndian.PutUint32(seed[4*i:], w)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		h := make([]uint16, len(data)/2)
		for i := range h {
			h[i] = binary.LittleEndian.Uint16(data[2*i:])
		}
		fl := make([]float32, len(h))
		back := make([]uint16, len(h))
		for _, p := range pairs {
			p.decode(fl, h)
			p.encode(back, fl)
			for i := range h {
				if want := p.dec(h[i]); !ktest.SameBits(fl[i], want) {
					t.Fatalf("%s decode %#04x: %#08x want %#08x", p.name, h[i], math.Float32bits(fl[i]), math.Float32bits(want))
				}
				want := h[i]
				if math.IsNaN(float64(fl[i])) {
					want = p.enc(fl[i]) // NaN: quiet bit set
				}
				if back[i] != want {
					t.Fatalf("%s round trip %#04x: %#04x", p.name, h[i], back[i])
				}
			}
		}
		src := make([]float32, len(data)/4)
		for i := range src {
			src[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		}
		checkEncode(t, src)
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

func BenchmarkKernels(b *testing.B) {
	const n = 1 << 16 // 256 KiB of float32: source and destination stay in L2
	src := ktest.Normal(n, 0.02, 1)
	enc := make([]uint16, n)
	dec := make([]float32, n)
	for _, p := range pairs {
		p.encode(enc, src)
		b.Run("decode"+p.name+"/"+Impl(), func(b *testing.B) {
			b.SetBytes(2 * n)
			for b.Loop() {
				p.decode(dec, enc)
			}
			ktest.ReportBest(b, 2*n, func() { p.decode(dec, enc) })
		})
		b.Run("encode"+p.name+"/"+Impl(), func(b *testing.B) {
			b.SetBytes(2 * n)
			for b.Loop() {
				p.encode(enc, src)
			}
			ktest.ReportBest(b, 2*n, func() { p.encode(enc, src) })
		})
	}
}
