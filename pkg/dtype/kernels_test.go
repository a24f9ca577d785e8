package dtype

import (
	"encoding/binary"
	"math"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/x448/float16"
)

// allHalves returns the 65536 16-bit patterns.
func allHalves() []uint16 {
	h := make([]uint16, 1<<16)
	for i := range h {
		h[i] = uint16(i)
	}
	return h
}

type kernelPair struct {
	name            string
	decode, decodeG func([]float32, []uint16)
	encode, encodeG func([]uint16, []float32)
	dec             func(uint16) float32
	enc             func(float32) uint16
}

var kernelPairs = []kernelPair{
	{"BF16", decodeBF16, decodeBF16Generic, encodeBF16, encodeBF16Generic, BF16ToF32, F32ToBF16},
	{"F16", decodeF16, decodeF16Generic, encodeF16, encodeF16Generic, F16ToF32, F32ToF16},
}

// tier is a set of kernels that needs a CPU feature (see kernels_simd_test.go).
type tier struct {
	name string
	ok   bool // the CPU has it
	k    []kernelPair
}

var tiers []tier

// TestKernels checks the dispatched kernels (SIMD when built so) and every
// SIMD tier the CPU has.
func TestKernels(t *testing.T) {
	t.Logf("simd kernels: %v", simdKernels)
	t.Run("dispatch", func(t *testing.T) { checkKernels(t, kernelPairs) })
	for _, tr := range tiers {
		t.Run(tr.name, func(t *testing.T) {
			if !tr.ok {
				t.Skipf("CPU lacks %s", tr.name)
			}
			checkKernels(t, tr.k)
		})
	}
}

func checkKernels(t *testing.T, pairs []kernelPair) {
	t.Run("decodeAll", func(t *testing.T) { testDecodeAll(t, pairs) })
	t.Run("encode", func(t *testing.T) { testEncode(t, pairs) })
	t.Run("tails", func(t *testing.T) { testTails(t, pairs) })
}

// testDecodeAll compares the kernel and the generic decoder with the scalar
// one on every 16-bit pattern.
func testDecodeAll(t *testing.T, pairs []kernelPair) {
	src := allHalves()
	for _, k := range pairs {
		got, gen := make([]float32, 1<<16), make([]float32, 1<<16)
		k.decode(got, src)
		k.decodeG(gen, src)
		for i := range got {
			want := k.dec(uint16(i))
			if !sameBits(got[i], want) || !sameBits(gen[i], want) {
				t.Fatalf("%s decode %#04x: kernel %#08x, generic %#08x, want %#08x", k.name, i,
					math.Float32bits(got[i]), math.Float32bits(gen[i]), math.Float32bits(want))
			}
		}
	}
}

// testEncode compares the encoders with the scalar ones (themselves checked
// against x448 and an independent reference) on random and special words,
// every decoded half and the midpoints between halves.
func testEncode(t *testing.T, pairs []kernelPair) {
	bits := testBits(1<<18, 4)
	for i := range 1<<16 - 1 {
		a := math.Float32bits(F16ToF32(uint16(i)))
		b := math.Float32bits(BF16ToF32(uint16(i)))
		bits = append(bits, a, a+1, a-1, a+0x1000, b, b+0x8000, b+0x7fff)
	}
	src := floats(bits)
	for _, k := range pairs {
		got, gen := make([]uint16, len(src)), make([]uint16, len(src))
		k.encode(got, src)
		k.encodeG(gen, src)
		for i, f := range src {
			want := k.enc(f)
			g, G := got[i], gen[i]
			if g != want || G != want {
				t.Fatalf("%s encode %#08x: kernel %#04x, generic %#04x, want %#04x", k.name, bits[i], g, G, want)
			}
		}
	}
}

// testTails checks every length up to a few vectors, so that the SIMD body
// and the generic tail agree, and that nothing is written past the end.
func testTails(t *testing.T, pairs []kernelPair) {
	f := floats(testBits(80, 5))
	for _, k := range pairs {
		for n := 0; n <= 70; n++ {
			h := make([]uint16, n+1)
			h[n] = 0xAAAA
			k.encode(h[:n], f[:n])
			for i := range n {
				if h[i] != k.enc(f[i]) {
					t.Fatalf("%s encode n=%d i=%d: %#04x want %#04x", k.name, n, i, h[i], k.enc(f[i]))
				}
			}
			dst := make([]float32, n+1)
			dst[n] = 42
			k.decode(dst[:n], h[:n])
			for i := range n {
				if want := k.dec(h[i]); !sameBits(dst[i], want) {
					t.Fatalf("%s decode n=%d i=%d: %g want %g", k.name, n, i, dst[i], want)
				}
			}
			if h[n] != 0xAAAA || dst[n] != 42 {
				t.Fatalf("%s n=%d wrote out of bounds", k.name, n)
			}
		}
	}
}

// TestLEAdapters checks the byte-level paths (the in-place view and the
// portable staging used on big-endian hosts) at unaligned offsets and across
// the staging buffer's size.
func TestLEAdapters(t *testing.T) {
	f := floats(testBits(1500, 6))
	type adapter struct {
		name   string
		decode func([]float32, []byte, func([]float32, []uint16))
		encode func([]byte, []float32, func([]uint16, []float32))
	}
	for _, a := range []adapter{{"native", decodeLE, encodeLE}, {"portable", decodeLEPortable, encodeLEPortable}} {
		for _, k := range kernelPairs {
			for _, n := range []int{0, 1, 17, 511, 512, 513, 1500} {
				for off := range 3 {
					raw := make([]byte, 2*n+off+1)
					raw[off+2*n] = 0xAA
					a.encode(raw[off:off+2*n], f[:n], k.encode)
					dst := make([]float32, n)
					a.decode(dst, raw[off:off+2*n], k.decode)
					for i := range n {
						h := binary.LittleEndian.Uint16(raw[off+2*i:])
						if h != k.enc(f[i]) || !sameBits(dst[i], k.dec(h)) {
							t.Fatalf("%s %s n=%d off=%d i=%d: %#04x, %g", a.name, k.name, n, off, i, h, dst[i])
						}
					}
					if raw[off+2*n] != 0xAA {
						t.Fatalf("%s %s n=%d off=%d wrote out of bounds", a.name, k.name, n, off)
					}
				}
			}
		}
	}
}

// TestExhaustiveF32 runs all 2³² float32 patterns through every encoder
// (generic, dispatched, each SIMD tier the CPU has) and compares with x448
// (f16) and the float64 reference (bf16). It takes about a minute per encoder
// pair on two cores, so it runs only with DTYPE_EXHAUSTIVE=1.
func TestExhaustiveF32(t *testing.T) {
	if os.Getenv("DTYPE_EXHAUSTIVE") == "" {
		t.Skip("set DTYPE_EXHAUSTIVE=1 to run")
	}
	sets := map[string][]kernelPair{"dispatch": kernelPairs, "generic": {
		{name: "BF16", encode: encodeBF16Generic}, {name: "F16", encode: encodeF16Generic}}}
	for _, tr := range tiers {
		if tr.ok {
			sets[tr.name] = tr.k
		}
	}
	for name, pairs := range sets {
		t.Run(name, func(t *testing.T) { exhaustive(t, pairs[0].encode, pairs[1].encode) })
	}
}

func exhaustive(t *testing.T, encodeBF16, encodeF16 func([]uint16, []float32)) {
	const chunk = 1 << 16
	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		t.Errorf(format, args...)
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := make([]float32, chunk)
			f16, bf16 := make([]uint16, chunk), make([]uint16, chunk)
			for c := uint64(w); c < 1<<32/chunk; c += uint64(workers) {
				for i := range src {
					src[i] = math.Float32frombits(uint32(c*chunk) + uint32(i))
				}
				encodeF16(f16, src)
				encodeBF16(bf16, src)
				for i, f := range src {
					u := math.Float32bits(f)
					if got, want := f16[i], float16.Fromfloat32(f).Bits(); got != want {
						fail("encodeF16(%#08x) = %#04x, x448 %#04x", u, got, want)
						return
					}
					if got, want := bf16[i], refBF16(u); got != want {
						fail("encodeBF16(%#08x) = %#04x, want %#04x", u, got, want)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}
