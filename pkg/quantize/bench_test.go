package quantize

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/lorakit/lorakit/internal/kernels/nibble"
	"github.com/lorakit/lorakit/internal/randmodel"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
)

// benchModel is a Llama-shaped bf16 model of 73 MB.
var benchModel = randmodel.Config{Hidden: 1024, Intermediate: 2816, Layers: 3, Heads: 16, KVHeads: 4, Vocab: 8000, DType: dtype.BF16, Seed: 3, Std: 0.02}

// BenchmarkQuantizeCheckpoint is the whole pipeline, folder to folder (MB/s
// of bf16 input), on every core.
func BenchmarkQuantizeCheckpoint(b *testing.B) {
	dir := b.TempDir()
	in := filepath.Join(dir, "in")
	if err := benchModel.Write(in); err != nil {
		b.Fatal(err)
	}
	src := open(b, in)
	b.SetBytes(src.Bytes)
	for b.Loop() {
		if _, err := Quantize(context.Background(), src, filepath.Join(dir, "out"), DefaultOptions()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDequantizeCheckpoint decodes the quantized model back to bf16
// (MB/s of bf16 output).
func BenchmarkDequantizeCheckpoint(b *testing.B) {
	dir := b.TempDir()
	in := filepath.Join(dir, "in")
	if err := benchModel.Write(in); err != nil {
		b.Fatal(err)
	}
	q := filepath.Join(dir, "q")
	if _, err := Quantize(context.Background(), open(b, in), q, DefaultOptions()); err != nil {
		b.Fatal(err)
	}
	src := open(b, q)
	b.SetBytes(benchModel.Bytes())
	for b.Loop() {
		if _, err := Dequantize(context.Background(), src, filepath.Join(dir, "out"), Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

const benchElems = 1 << 22

func benchBF16(n int) []byte {
	raw := make([]byte, 2*n)
	dtype.FromF32(raw, randn(1, n, 0.02), dtype.BF16)
	return raw
}

// BenchmarkQuantizeKernel is the second pass's per-chunk work on one core:
// bf16 → f32, NF4 codes with nf4.Quantize, and the error measurement
// (MB/s of bf16 input).
func BenchmarkQuantizeKernel(b *testing.B) {
	raw := benchBF16(benchElems)
	st := nf4.QuantState{Type: nf4.NF4, Blocksize: 64, DType: dtype.BF16, Map: nf4.NF4.Code()}
	x := make([]float32, chunkElems)
	am := make([]float32, chunkElems/64)
	packed := make([]byte, chunkElems/2)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		for lo := 0; lo < benchElems; lo += chunkElems {
			dtype.ToF32(x, raw[2*lo:2*(lo+chunkElems)], dtype.BF16)
			nf4.Quantize(packed, am, x, 64, nf4.NF4)
			chunkError(&st, x, packed, am, 0, nil)
		}
	}
}

// BenchmarkBlockAbsmax is the first pass on one core (MB/s of bf16 input).
func BenchmarkBlockAbsmax(b *testing.B) {
	raw := benchBF16(benchElems)
	am := make([]float32, benchElems/64)
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		blockAbsmax(am, raw, dtype.BF16, 64)
	}
}

// BenchmarkErrBlocks is the error measurement alone (MB/s of float32 input).
func BenchmarkErrBlocks(b *testing.B) {
	x := randn(2, chunkElems, 0.02)
	code := nf4.NF4.Code()
	scales := make([]float32, chunkElems/64)
	for i := range scales {
		scales[i] = 0.05
	}
	packed := make([]byte, chunkElems/2)
	b.SetBytes(4 * chunkElems)
	for b.Loop() {
		nibble.ErrSums(&code, scales, nibble.RoundBF16, x, packed, 64)
	}
}
