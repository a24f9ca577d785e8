package cpu

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/kernels/vec"
	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// fixtures returns the shared fixtures folder, walking up from the package.
func fixtures(t testing.TB) string {
	t.Helper()
	return testbin.Fixtures(t)
}

// upload4 uploads a 4-bit state to be.
func upload4(t testing.TB, be *Backend, qs *nf4.QuantState, packed []byte) compute.Quant4 {
	t.Helper()
	u := func(x []byte) compute.Buffer {
		b, _ := be.Alloc(compute.U8, len(x))
		be.UploadBytes(b, x)
		return b
	}
	f := func(x []float32) compute.Buffer {
		b, _ := be.Alloc(compute.F32, len(x))
		be.Upload(b, x)
		return b
	}
	q := compute.Quant4{N: int(qs.NumElements()), Blocksize: qs.Blocksize, Packed: u(packed), Code: f(qs.Map[:]),
		RoundF16: qs.DType == dtype.F16}
	if nd := qs.Nested; nd != nil {
		q.Absmax, q.NestedAbsmax, q.NestedCode = u(nd.Codes), f(nd.Absmax), f(nd.Map[:])
		q.NestedBlocksize, q.Offset = nd.Blocksize, nd.Offset
	} else {
		q.Absmax = f(qs.Absmax)
	}
	return q
}

// TestDequantize4Fixtures decodes every weight of the bitsandbytes
// fixtures and requires the bytes of bitsandbytes' dequantize_4bit.
func TestDequantize4Fixtures(t *testing.T) {
	fx := fixtures(t)
	for _, dir := range []string{"tiny-nf4", "tiny-nf4-nodq"} {
		t.Run(dir, func(t *testing.T) {
			m, err := safetensors.Open(filepath.Join(fx, "bnb", dir, "model.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			deq, err := safetensors.Open(filepath.Join(fx, "bnb", dir, "dequantized.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			defer deq.Close()
			get := func(name string) (nf4.Tensor, bool) {
				info, ok := m.Info(name)
				if !ok {
					return nf4.Tensor{}, false
				}
				data, err := m.Data(name)
				if err != nil {
					t.Fatal(err)
				}
				return nf4.Tensor{DType: info.DType, Shape: info.Shape, Data: data}, true
			}
			n := 0
			for _, info := range m.Header.Tensors {
				w, suffix, ok := nf4.SplitStateKey(info.Name)
				if !ok || !strings.HasPrefix(suffix, ".quant_state.") {
					continue
				}
				qs, packed, err := nf4.ParseModule(w, get)
				if err != nil {
					t.Fatal(err)
				}
				want, err := deq.Float32(w)
				if err != nil {
					t.Fatal(err)
				}
				for _, threads := range []int{1, 3} {
					be := New(threads)
					dst, _ := be.Alloc(compute.F32, len(want))
					be.Dequantize4(dst, upload4(t, be, qs, packed))
					got := Float32s(dst)
					for i := range want {
						if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
							t.Fatalf("%s (threads %d): [%d] = %v, want %v", w, threads, i, got[i], want[i])
						}
					}
				}
				n++
			}
			if n != 14 {
				t.Errorf("%d quantized weights, want 14", n)
			}
		})
	}
}

// TestPositionIndependent checks that the vector kernels compute every
// element the same way wherever it lies in the slice, and that a GEMM row
// does not depend on the other rows: what makes packed batches and any
// thread count exact.
func TestPositionIndependent(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	x := randSlice(r, 203)
	for i := range x {
		x[i] *= 30
	}
	x[17], x[100] = 100, float32(math.NaN())
	ref := append([]float32(nil), x...)
	vec.Exps(ref)
	y0 := randSlice(r, len(x))
	yref := append([]float32(nil), y0...)
	vec.Axpy(yref, x, 0.37)
	for off := range 9 {
		for _, end := range []int{len(x), len(x) - 3, off + 5} {
			got := append([]float32(nil), x[off:end]...)
			vec.Exps(got)
			y := append([]float32(nil), y0[off:end]...)
			vec.Axpy(y, x[off:end], 0.37)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(ref[off+i]) {
					t.Fatalf("exps[%d:%d][%d] = %v, whole slice %v", off, end, i, got[i], ref[off+i])
				}
				if math.Float32bits(y[i]) != math.Float32bits(yref[off+i]) {
					t.Fatalf("axpy[%d:%d][%d] = %v, whole slice %v", off, end, i, y[i], yref[off+i])
				}
			}
		}
	}
	// GEMM: rows of a 61-row product against the same rows alone, with
	// alpha ≠ 1 and beta = 1 (where an edge block used to round differently).
	be := New(2)
	M, N, K := 61, 45, 300
	a, b, c := randSlice(r, M*K), randSlice(r, N*K), randSlice(r, M*N)
	p := compute.Gemm{M: M, N: N, K: K, TransB: true, Alpha: 0.3, Beta: 1}
	full := append([]float32(nil), c...)
	be.Gemm(p, NewBuffer(a), NewBuffer(b), NewBuffer(full))
	for _, rows := range [][2]int{{0, 1}, {3, 10}, {7, 61}, {58, 61}} {
		m := rows[1] - rows[0]
		part := append([]float32(nil), c[rows[0]*N:rows[1]*N]...)
		q := p
		q.M = m
		be.Gemm(q, NewBuffer(a[rows[0]*K:rows[1]*K]), NewBuffer(b), NewBuffer(part))
		for i := range part {
			if math.Float32bits(part[i]) != math.Float32bits(full[rows[0]*N+i]) {
				t.Fatalf("rows %v: C[%d] = %v alone, %v in the full product", rows, i, part[i], full[rows[0]*N+i])
			}
		}
	}
}

// FuzzDequantize4 compares Dequantize4 with pkg/nf4 on arbitrary sizes,
// block sizes, types and scales.
func FuzzDequantize4(f *testing.F) {
	f.Add(uint32(1), uint8(1), uint8(0), uint64(1))
	f.Add(uint32(21000), uint8(1), uint8(3), uint64(2))
	f.Add(uint32(1961), uint8(0), uint8(6), uint64(3))
	f.Add(uint32(70001), uint8(2), uint8(13), uint64(4))
	f.Fuzz(func(t *testing.T, n uint32, bsLog, flags uint8, seed uint64) {
		N := int(n%100000) + 1
		bs := 32 << (bsLog % 4)
		r := rand.New(rand.NewPCG(seed, 2))
		x := make([]float32, N)
		scale := math.Pow(10, float64(flags>>4)-8)
		for i := range x {
			x[i] = float32((2*r.Float64() - 1) * scale)
		}
		opts := nf4.DefaultOptions()
		opts.Blocksize, opts.DoubleQuant = bs, flags&1 != 0
		if flags&2 != 0 {
			opts.Type = nf4.FP4
		}
		out := compute.F32
		switch flags >> 2 & 3 {
		case 1:
			opts.DType, out = dtype.BF16, compute.BF16
		case 2:
			opts.DType = dtype.F16
		}
		q, err := nf4.QuantizeTensor(x, []int64{int64(N)}, opts)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, N*opts.DType.Size())
		if err := q.State.DequantizeTo(want, q.Packed); err != nil {
			t.Fatal(err)
		}
		wf := make([]float32, N)
		if err := dtype.ToF32(wf, want, opts.DType); err != nil {
			t.Fatal(err)
		}
		be := New(int(seed%3) + 1)
		dst, _ := be.Alloc(out, N)
		be.Dequantize4(dst, upload4(t, be, &q.State, q.Packed))
		got := make([]float32, N)
		if err := be.Download(got, dst); err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(wf[i]) {
				t.Fatalf("N=%d bs=%d flags=%#x: [%d] = %v, want %v", N, bs, flags, i, got[i], wf[i])
			}
		}
	})
}

func benchDequantize4(b *testing.B, out compute.DType, dq bool) {
	const rows, cols = 2048, 2048
	r := rand.New(rand.NewPCG(1, 2))
	x := randSlice(r, rows*cols)
	opts := nf4.DefaultOptions()
	opts.DoubleQuant = dq
	q, err := nf4.QuantizeTensor(x, []int64{rows, cols}, opts)
	if err != nil {
		b.Fatal(err)
	}
	be := New(0)
	qb := upload4(b, be, &q.State, q.Packed)
	dst, _ := be.Alloc(out, rows*cols)
	b.SetBytes(int64(rows * cols * out.Size())) // bytes written
	for b.Loop() {
		be.Dequantize4(dst, qb)
	}
}

// BenchmarkDequantize4 decodes a 2048×2048 NF4 weight (double quantization)
// into f32; MB/s counts the bytes written.
func BenchmarkDequantize4(b *testing.B) { benchDequantize4(b, compute.F32, true) }

// BenchmarkDequantize4BF16 decodes into bf16.
func BenchmarkDequantize4BF16(b *testing.B) { benchDequantize4(b, compute.BF16, true) }
