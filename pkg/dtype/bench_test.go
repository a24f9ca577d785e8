package dtype

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// weights returns n weight-like values, N(0, 0.02²): the data the tools
// convert; the assembly kernels' speed does not depend on values, the
// plain-Go ones' barely (the F8 encoders' branches do).
func weights(n int) []float32 {
	r := rand.New(rand.NewPCG(1, 2))
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(r.NormFloat64() * 0.02)
	}
	return w
}

// benchN elements: 256 KiB of float32, so source and destination stay in L2.
const benchN = 1 << 16

// BenchmarkToF32 and BenchmarkFromF32 measure the public bulk paths (the
// active kernel tier); MB/s counts the bytes of the encoded side.
func BenchmarkToF32(b *testing.B) {
	for _, d := range []DType{F32, BF16, F16, F8E4M3, F64, I8} {
		b.Run(string(d), func(b *testing.B) {
			src := make([]byte, benchN*d.Size())
			if d.IsFloat() {
				if err := FromF32(src, weights(benchN), d); err != nil {
					b.Fatal(err)
				}
			}
			dst := make([]float32, benchN)
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				if err := ToF32(dst, src, d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFromF32(b *testing.B) {
	src := weights(benchN)
	for _, d := range []DType{F32, BF16, F16, F8E4M3} {
		b.Run(string(d), func(b *testing.B) {
			dst := make([]byte, benchN*d.Size())
			b.SetBytes(int64(len(dst)))
			for b.Loop() {
				if err := FromF32(dst, src, d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkConvert measures a re-encoding staged through float32 (MB/s of
// source bytes).
func BenchmarkConvert(b *testing.B) {
	for _, c := range [][2]DType{{BF16, F16}, {F32, BF16}, {BF16, F32}} {
		b.Run(fmt.Sprintf("%sto%s", c[0], c[1]), func(b *testing.B) {
			src := make([]byte, benchN*c[0].Size())
			if err := FromF32(src, weights(benchN), c[0]); err != nil {
				b.Fatal(err)
			}
			dst := make([]byte, benchN*c[1].Size())
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				if err := Convert(dst, c[1], src, c[0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
