package nibble

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/lorakit/lorakit/internal/kernels/ktest"
)

// bucketize is the definition: the rank of s among the thresholds (how
// many lie strictly below it).
func bucketize(s float32, thr []float32) int {
	r := 0
	for _, t := range thr {
		if t < s {
			r++
		}
	}
	return r
}

// codebooks returns test codebooks: NF4-like (identity order), one with a
// threshold at +0 and a permuted order (FP4-like), and random ones.
func codebooks(r *rand.Rand) []*Codebook {
	var out []*Codebook
	var id [16]uint8
	for i := range id {
		id[i] = uint8(i)
	}
	var lin [15]float32
	for i := range lin {
		lin[i] = float32(i-7)/7.5 + 0.01
	}
	out = append(out, NewCodebook(lin, id))
	zero := [15]float32{-0.8, -0.6, -0.45, -0.3, -0.2, -0.1, -0.0026, 0, 0.0026, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8}
	out = append(out, NewCodebook(zero, [16]uint8{11, 10, 13, 12, 15, 14, 9, 0, 8, 1, 6, 7, 4, 5, 2, 3}))
	for range 3 {
		var thr [15]float32
		for i := range thr {
			thr[i] = float32(2*r.Float64() - 1)
		}
		slices.Sort(thr[:])
		perm := r.Perm(16)
		var code [16]uint8
		for i, p := range perm {
			code[i] = uint8(p)
		}
		out = append(out, NewCodebook(thr, code))
	}
	return out
}

func TestNibble(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, cb := range codebooks(r) {
		vals := ktest.Floats(ktest.Bits(20000, 3))
		for _, x := range cb.Thr[:15] {
			b := math.Float32bits(x)
			vals = append(vals, x, math.Float32frombits(b+1), math.Float32frombits(b-1), -x)
		}
		vals = append(vals, 0, float32(math.Copysign(0, -1)), 1, -1, 1.0000001, -1.0000001)
		for _, s := range vals {
			if s != s {
				continue
			}
			if got, want := cb.Nibble(s), uint8(cb.Code[bucketize(s, cb.Thr[:15])]); got != want {
				t.Fatalf("Nibble(%v [%08x]) = %d, want %d", s, math.Float32bits(s), got, want)
			}
		}
	}
}

// reference encodes one block by the definition.
func reference(x []float32, cb *Codebook, minDiv float32) (am uint32, codes []byte) {
	for _, v := range x {
		am = max(am, math.Float32bits(v)&0x7fffffff)
	}
	if am >= 0x7f800000 {
		return am, nil
	}
	div := max(math.Float32frombits(am), minDiv)
	inv := 1 / div
	codes = make([]byte, len(x)/2)
	for k := range codes {
		hi := cb.Code[bucketize(x[2*k]*inv, cb.Thr[:15])]
		lo := cb.Code[bucketize(x[2*k+1]*inv, cb.Thr[:15])]
		codes[k] = byte(hi<<4 | lo)
	}
	return am, codes
}

func TestEncode(t *testing.T) {
	ktest.LogTier(t, Impl())
	r := rand.New(rand.NewPCG(3, 4))
	const minDiv = 1e-38
	for ci, cb := range codebooks(r) {
		for _, bs := range []int{32, 64, 128, 256} {
			nb := 7
			x := ktest.Normal(nb*bs, 0.02, r.Uint64())
			clear(x[bs : 2*bs])                                          // an all-zero block
			x[2*bs+5] = float32(math.Inf(-1))                            // an Inf block
			x[3*bs+9] = float32(math.NaN())                              // a NaN block
			x[4*bs] = 1e-39                                              // a subnormal absmax
			copy(x[5*bs:6*bs], ktest.Floats(ktest.Bits(bs, r.Uint64()))) // anything
			for i := range x[5*bs : 6*bs] {
				if v := x[5*bs+i]; v != v || math.IsInf(float64(v), 0) {
					x[5*bs+i] = 0
				}
			}
			dst := make([]byte, nb*bs/2+1)
			dst[nb*bs/2] = 0xAA
			for i := range dst[:nb*bs/2] {
				dst[i] = 0x5A // unwritten bytes of Inf/NaN blocks stay as they are
			}
			absmax := make([]float32, nb)
			Encode(dst[:nb*bs/2], absmax, x, bs, cb, minDiv)
			for b := range nb {
				am, codes := reference(x[b*bs:(b+1)*bs], cb, minDiv)
				if math.Float32bits(absmax[b]) != am {
					t.Fatalf("%s codebook %d bs=%d block %d: absmax %08x, want %08x", Impl(), ci, bs, b, math.Float32bits(absmax[b]), am)
				}
				got := dst[b*bs/2 : (b+1)*bs/2]
				if codes == nil {
					continue
				}
				for k := range codes {
					if got[k] != codes[k] {
						t.Fatalf("%s codebook %d bs=%d block %d: byte %d = %#02x, want %#02x (x %v %v)", Impl(), ci, bs, b, k, got[k], codes[k], x[b*bs+2*k], x[b*bs+2*k+1])
					}
				}
			}
			if dst[nb*bs/2] != 0xAA {
				t.Fatal("Encode wrote past dst")
			}
		}
	}
}

func TestDecode(t *testing.T) {
	ktest.LogTier(t, Impl())
	r := rand.New(rand.NewPCG(5, 6))
	var code [16]float32
	for i := range code {
		code[i] = float32(r.NormFloat64())
	}
	code[3] = float32(math.NaN())
	for _, bs := range []int{2, 6, 32, 64, 256} {
		for _, n := range []int{0, 1, 31, 32, 33, 64, 100, 4*bs + 3, 5 * bs} {
			packed := make([]byte, (n+1)/2)
			for i := range packed {
				packed[i] = byte(r.Uint32())
			}
			scales := ktest.Normal((n+bs-1)/bs, 1, r.Uint64())
			if len(scales) > 1 {
				scales[1] = 1e30 // products that overflow, and round to Inf in bf16
			}
			out := make([]float32, n+1)
			out[n] = 42
			outh := make([]uint16, n+1)
			outh[n] = 0xAAAA
			Decode(out[:n], packed, scales, &code, bs)
			DecodeBF16(outh[:n], packed, scales, &code, bs)
			for k := range n {
				nib := packed[k/2] >> 4
				if k%2 == 1 {
					nib = packed[k/2] & 15
				}
				want := code[nib] * scales[k/bs]
				if !ktest.SameBits(out[k], want) && !(out[k] != out[k] && want != want) {
					t.Fatalf("%s bs=%d n=%d: out[%d] = %v, want %v", Impl(), bs, n, k, out[k], want)
				}
				if outh[k] != bf16(want) {
					t.Fatalf("%s bs=%d n=%d: bf16 out[%d] = %#04x, want %#04x", Impl(), bs, n, k, outh[k], bf16(want))
				}
			}
			if out[n] != 42 || outh[n] != 0xAAAA {
				t.Fatalf("%s bs=%d n=%d: wrote past out", Impl(), bs, n)
			}
		}
	}
}

// FuzzEncode feeds arbitrary values through Encode and the definition.
func FuzzEncode(f *testing.F) {
	f.Add(uint64(1), uint8(0))
	f.Add(uint64(2), uint8(1))
	f.Fuzz(func(t *testing.T, seed uint64, which uint8) {
		r := rand.New(rand.NewPCG(seed, 8))
		cbs := codebooks(r)
		cb := cbs[int(which)%len(cbs)]
		bs := 32 << (seed % 3)
		x := ktest.Floats(ktest.Bits(3*bs, seed))
		for i := range x {
			if r.IntN(4) != 0 {
				x[i] = float32(r.NormFloat64() * math.Exp2(float64(r.IntN(60)-30)))
			}
		}
		dst := make([]byte, 3*bs/2)
		absmax := make([]float32, 3)
		Encode(dst, absmax, x, bs, cb, 1e-38)
		for b := range 3 {
			am, codes := reference(x[b*bs:(b+1)*bs], cb, 1e-38)
			if math.Float32bits(absmax[b]) != am {
				t.Fatalf("block %d absmax %08x, want %08x", b, math.Float32bits(absmax[b]), am)
			}
			for k := range codes {
				if dst[b*bs/2+k] != codes[k] {
					t.Fatalf("block %d byte %d = %#02x, want %#02x", b, k, dst[b*bs/2+k], codes[k])
				}
			}
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	cb := codebooks(r)[1]
	const n = 1 << 16
	x := ktest.Normal(n, 0.02, 1)
	dst := make([]byte, n/2)
	absmax := make([]float32, n/64)
	b.Run(Impl(), func(b *testing.B) {
		b.SetBytes(4 * n)
		for b.Loop() {
			Encode(dst, absmax, x, 64, cb, 1e-38)
		}
		ktest.ReportBest(b, 4*n, func() { Encode(dst, absmax, x, 64, cb, 1e-38) })
	})
}

func BenchmarkDecode(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	const n = 1 << 16
	packed := make([]byte, n/2)
	for i := range packed {
		packed[i] = byte(r.Uint32())
	}
	scales := ktest.Normal(n/64, 1, 3)
	var code [16]float32
	out := make([]float32, n)
	outh := make([]uint16, n)
	b.Run("f32/"+Impl(), func(b *testing.B) {
		b.SetBytes(4 * n)
		for b.Loop() {
			Decode(out, packed, scales, &code, 64)
		}
		ktest.ReportBest(b, 4*n, func() { Decode(out, packed, scales, &code, 64) })
	})
	b.Run("bf16/"+Impl(), func(b *testing.B) {
		b.SetBytes(2 * n)
		for b.Loop() {
			DecodeBF16(outh, packed, scales, &code, 64)
		}
		ktest.ReportBest(b, 2*n, func() { DecodeBF16(outh, packed, scales, &code, 64) })
	})
}

// TestErrSums compares the active tier's error sums with the plain-Go code
// bit for bit: every rounding, partial blocks and groups, specials.
func TestErrSums(t *testing.T) {
	ktest.LogTier(t, Impl())
	r := rand.New(rand.NewPCG(7, 8))
	var code [16]float32
	for i := range code {
		code[i] = float32(i-7) / 7
	}
	specials := []float32{0, float32(math.Copysign(0, -1)), 1e-40, float32(math.Inf(1)), float32(math.NaN()), 1e30, -70000}
	for _, rnd := range []Rounding{RoundF32, RoundBF16, RoundF16} {
		for _, bs := range []int{32, 64, 128} {
			for _, n := range []int{1, 33, 64, 95, 128, 1000, 4096 + 17} {
				x := ktest.Normal(n, 0.05, r.Uint64())
				for i := range x {
					if r.IntN(50) == 0 {
						x[i] = specials[r.IntN(len(specials))]
					}
				}
				packed := make([]byte, (n+1)/2)
				for i := range packed {
					packed[i] = byte(r.Uint32())
				}
				scales := make([]float32, (n+bs-1)/bs)
				for i := range scales {
					scales[i] = x[min(i*bs, n-1)]*3 + float32(r.NormFloat64())
				}
				if len(scales) > 2 {
					scales[1] = 1e30 // overflows f16 and bf16 tables
				}
				ga, gm := ErrSums(&code, scales, rnd, x, packed, bs)
				wa, wm := errSumsGo(&code, scales, rnd, x, packed, bs)
				for l := range ga {
					if math.Float64bits(ga[l]) != math.Float64bits(wa[l]) && !(math.IsNaN(ga[l]) && math.IsNaN(wa[l])) {
						t.Fatalf("%s round %d bs %d n %d lane %d: %v, generic %v", Impl(), rnd, bs, n, l, ga[l], wa[l])
					}
				}
				if gm != wm {
					t.Fatalf("%s round %d bs %d n %d: max %#x, generic %#x", Impl(), rnd, bs, n, gm, wm)
				}
			}
		}
	}
}

// FuzzDecodeErrSums feeds arbitrary codes, scales and values through the
// decoders and the error sums, against the plain-Go code.
func FuzzDecodeErrSums(f *testing.F) {
	f.Add(uint64(1), uint16(100), uint8(0))
	f.Add(uint64(2), uint16(4096), uint8(2))
	f.Fuzz(func(t *testing.T, seed uint64, n uint16, rnd uint8) {
		r := rand.New(rand.NewPCG(seed, 9))
		bs := 32 << (seed % 3)
		vals := ktest.Floats(ktest.Bits(int(n)+16+int(n)/bs+1, seed))
		var code [16]float32
		copy(code[:], vals[:16])
		x := vals[16 : 16+int(n)]
		scales := vals[16+int(n):]
		packed := make([]byte, (int(n)+1)/2)
		for i := range packed {
			packed[i] = byte(r.Uint32())
		}
		out, want := make([]float32, n), make([]float32, n)
		Decode(out, packed, scales, &code, bs)
		var t16 [16]float32
		for b := 0; b*bs < int(n); b++ {
			for i := range t16 {
				t16[i] = code[i] * scales[b]
			}
			lo, hi := b*bs, min((b+1)*bs, int(n))
			DecodeTable(want[lo:hi], packed[lo/2:(hi+1)/2], &t16)
		}
		for i := range out {
			if !ktest.SameBits(out[i], want[i]) && !(out[i] != out[i] && want[i] != want[i]) {
				t.Fatalf("%s: out[%d] = %v, want %v", Impl(), i, out[i], want[i])
			}
		}
		rd := Rounding(rnd % 3)
		ga, gm := ErrSums(&code, scales[:(int(n)+bs-1)/bs], rd, x, packed, bs)
		wa, wm := errSumsGo(&code, scales[:(int(n)+bs-1)/bs], rd, x, packed, bs)
		for l := range ga {
			if math.Float64bits(ga[l]) != math.Float64bits(wa[l]) && !(math.IsNaN(ga[l]) && math.IsNaN(wa[l])) {
				t.Fatalf("%s: lane %d %v, generic %v", Impl(), l, ga[l], wa[l])
			}
		}
		if gm != wm && !(gm > 0x7f800000 && wm > 0x7f800000) {
			t.Fatalf("%s: max %#x, generic %#x", Impl(), gm, wm)
		}
	})
}
