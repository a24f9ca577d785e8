package nf4

import (
	"testing"
)

const benchN = 14336 * 256 // 3.7M elements, 14.7 MB of float32

func benchQuantize(b *testing.B, typ Type, bs int) {
	x := randFloats(1, benchN, 0.02)
	p := make([]byte, PackedLen(len(x)))
	a := make([]float32, NumBlocks(len(x), bs))
	b.SetBytes(int64(4 * len(x)))
	for b.Loop() {
		if err := Quantize(p, a, x, bs, typ); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkQuantizeNF4(b *testing.B)      { benchQuantize(b, NF4, 64) }
func BenchmarkQuantizeFP4(b *testing.B)      { benchQuantize(b, FP4, 64) }
func BenchmarkQuantizeNF4B4096(b *testing.B) { benchQuantize(b, NF4, 4096) }

func BenchmarkQuantizeTensorDQ(b *testing.B) {
	x := randFloats(1, benchN, 0.02)
	b.SetBytes(int64(4 * len(x)))
	for b.Loop() {
		if _, err := QuantizeTensor(x, []int64{14336, 256}, DefaultOptions()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDequantize(b *testing.B) {
	x := randFloats(1, benchN, 0.02)
	q, err := QuantizeTensor(x, []int64{14336, 256}, DefaultOptions())
	if err != nil {
		b.Fatal(err)
	}
	am := q.State.BlockAbsmax()
	dst := make([]float32, len(x))
	b.SetBytes(int64(4 * len(x))) // float32 output bytes
	for b.Loop() {
		if err := Dequantize(dst, q.Packed, am, 64, &q.State.Map); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMeanOffset(b *testing.B) {
	a := randFloats(2, benchN/64, 0.02)
	b.SetBytes(int64(4 * len(a)))
	for b.Loop() {
		MeanOffset(a)
	}
}
