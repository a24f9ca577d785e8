package cuda_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/computetest"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
	"github.com/lorakit/lorakit/pkg/compute/cuda"
	"github.com/lorakit/lorakit/pkg/llama"
	"github.com/lorakit/lorakit/pkg/train"

	"github.com/lorakit/lorakit/internal/plaintrain"
)

// requireDevice reports whether $LORAKIT_REQUIRE_CUDA asks the tests to
// fail, not skip, without a device (scripts/gpu-check.sh sets it).
func requireDevice() bool { return os.Getenv("LORAKIT_REQUIRE_CUDA") == "1" }

// device opens the CUDA backend or skips the test with the reason.
func device(t testing.TB) *cuda.Backend { return deviceWith(t, cuda.Options{}) }

func deviceWith(t testing.TB, opt cuda.Options) *cuda.Backend {
	t.Helper()
	be, err := cuda.New(opt)
	if err != nil {
		if errors.Is(err, cuda.ErrUnavailable) && !requireDevice() {
			t.Skipf("no CUDA device: %v", err)
		}
		t.Fatalf("New: an error that does not wrap ErrUnavailable: %v", err)
	}
	t.Cleanup(func() {
		if err := be.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return be
}

// TestNew: without a usable GPU, New fails with ErrUnavailable and a reason
// (never a panic); with one, it works, and a device ordinal that does not
// exist is ErrUnavailable too.
func TestNew(t *testing.T) {
	be, err := cuda.New(cuda.Options{})
	if err != nil {
		if !errors.Is(err, cuda.ErrUnavailable) || len(err.Error()) < len(cuda.ErrUnavailable.Error())+10 || requireDevice() {
			t.Fatalf("New without a device: %v", err)
		}
		t.Logf("unavailable, as expected here: %v", err)
		return
	}
	t.Logf("%s\n%s", be.Name(), be.Details())
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cuda.New(cuda.Options{Device: 1 << 20}); !errors.Is(err, cuda.ErrUnavailable) {
		t.Errorf("device 2^20: %v", err)
	}
}

// TestConformance runs the conformance suite on the GPU.
func TestConformance(t *testing.T) {
	be := device(t)
	t.Log(be.Name())
	computetest.Run(t, be)
}

// TestDeterminism: the same work twice gives the same bits (attention,
// without and with a prefix, its backward pass, a reduction and a cuBLAS
// GEMM).
func TestDeterminism(t *testing.T) {
	be := device(t)
	for _, prefix := range []int{0, 40} {
		a := compute.Attention{Batch: 2, Seq: 300, Heads: 8, KVHeads: 2, HeadDim: 64, Scale: 0.125, Prefix: prefix}
		rows := a.Batch * a.Keys()
		nq, nk := a.Batch*a.Seq*a.Heads*a.HeadDim, rows*a.KVHeads*a.HeadDim
		q, k, v := upload(t, be, nq, 1), upload(t, be, nk, 2), upload(t, be, nk, 3)
		run := func() []float32 {
			out, lse := alloc(t, be, nq), alloc(t, be, a.Batch*a.Heads*a.Seq)
			be.Attention(a, out, lse, q, k, v)
			dq, dk, dv := alloc(t, be, nq), alloc(t, be, nk), alloc(t, be, nk)
			be.AttentionBackward(a, dq, dk, dv, out, q, k, v, out, lse)
			n := alloc(t, be, 1)
			be.Norm2(n, dk)
			c := alloc(t, be, rows*rows)
			be.Gemm(compute.Gemm{M: rows, N: rows, K: a.KVHeads * a.HeadDim, Alpha: 1, TransB: true}, k, v, c)
			return download(t, be, dq, dk, dv, n, c)
		}
		x, y := run(), run()
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
				t.Fatalf("prefix %d, element %d: %v then %v", prefix, i, x[i], y[i])
			}
		}
	}
}

func alloc(t testing.TB, be compute.Backend, n int) compute.Buffer {
	b, err := be.Alloc(compute.F32, n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func upload(t testing.TB, be compute.Backend, n int, seed uint32) compute.Buffer {
	b := alloc(t, be, n)
	x := make([]float32, n)
	s := seed*2654435761 + 1
	for i := range x {
		s = s*1664525 + 1013904223
		x[i] = float32(int32(s>>8)%2000-1000) / 1000
	}
	be.Upload(b, x)
	return b
}

func download(t testing.TB, be compute.Backend, bs ...compute.Buffer) []float32 {
	var all []float32
	for _, b := range bs {
		x := make([]float32, b.Len())
		if err := be.Download(x, b); err != nil {
			t.Fatal(err)
		}
		all = append(all, x...)
	}
	return all
}

// TestTrainPlainMatchesCPU runs shared/fixtures/peft/train/plain on the GPU
// and on the CPU. With f32 or bf16 weights every step's loss and gradient
// norm and the final loss agree within 1e-4 (relative), the final adapter
// within 1e-3 (AdamW's normalized first steps amplify rounding differences
// in near-zero gradients): bf16 weights are widened exactly, as on the CPU.
// With Options.BF16Gemm (activations rounded to bf16 for the tensor cores)
// the steps agree within 1e-2 and the final adapter is only logged: the
// first AdamW steps move every element by ±lr whatever its gradient's size,
// so elements whose gradients are rounding noise end up anywhere in ±6·lr.
// bf16 mixed precision (llama.PrecisionBF16) stays within 1e-2 of the f32
// CPU reference at every step, and on the GPU within 1e-2 of the CPU's own
// bf16 run (the tensor cores round differently).
func TestTrainPlainMatchesCPU(t *testing.T) {
	device(t) // skips without a device
	compareTrainPlain(t, func(t *testing.T, o cuda.Options) compute.Backend { return deviceWith(t, o) }, "GPU")
}

// TestTrainPlainEmulated is TestTrainPlainMatchesCPU on the host emulation
// of the backend (the kernels compiled by clang as host C++): pkg/llama
// driven through this backend's buffers, views, scratch memory and
// kernels, without a GPU.
func TestTrainPlainEmulated(t *testing.T) {
	cuda.NewEmulated(t, cuda.Options{}) // skips without clang
	compareTrainPlain(t, func(t *testing.T, o cuda.Options) compute.Backend { return cuda.NewEmulated(t, o) }, "emulation")
}

func compareTrainPlain(t *testing.T, backend func(*testing.T, cuda.Options) compute.Backend, where string) {
	bf16w := llama.Options{WeightDType: compute.BF16}
	mixed := llama.Options{Precision: llama.PrecisionBF16}
	for _, c := range []struct {
		name           string
		ref, opt       llama.Options
		copt           cuda.Options
		tolStep, tolAd float64
		gpuOnly        bool
	}{
		{"f32", llama.Options{}, llama.Options{}, cuda.Options{}, 1e-4, 1e-3, false},
		{"bf16", bf16w, bf16w, cuda.Options{}, 1e-4, 1e-3, false},
		{"bf16_tensorcore", bf16w, bf16w, cuda.Options{BF16Gemm: true}, 1e-2, math.Inf(1), false},
		{"bf16_mixed_vs_f32", llama.Options{}, mixed, cuda.Options{}, 1e-2, math.Inf(1), false},
		{"bf16_mixed_vs_cpu_bf16", mixed, mixed, cuda.Options{}, 1e-2, math.Inf(1), true},
	} {
		if c.gpuOnly && where != "GPU" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			ref := plaintrain.Train(t, cpu.New(0), c.ref)
			got := plaintrain.Train(t, backend(t, c.copt), c.opt)
			for s := range ref.Loss {
				el, en := plaintrain.RelDiff(got.Loss[s], ref.Loss[s]), plaintrain.RelDiff(got.Norm[s], ref.Norm[s])
				if el > c.tolStep || en > c.tolStep {
					t.Errorf("step %d: loss %.9g (cpu %.9g), grad norm %.9g (cpu %.9g)", s, got.Loss[s], ref.Loss[s], got.Norm[s], ref.Norm[s])
				}
			}
			if e := plaintrain.RelDiff(got.Final, ref.Final); e > c.tolStep {
				t.Errorf("final loss %.9g (cpu %.9g)", got.Final, ref.Final)
			}
			worstStep, worstAd := plaintrain.Compare(got, ref)
			if worstAd > c.tolAd {
				t.Errorf("final adapter: relative difference %.3g", worstAd)
			}
			t.Logf("%s: worst relative difference to the CPU: steps %.3g, final adapter %.3g; step %v on the %s, %v on the CPU; losses %v",
				c.name, worstStep, worstAd, got.Step, where, ref.Step, fmtLoss(got.Loss))
		})
	}
}

func fmtLoss(l []float64) string {
	var s []string
	for _, v := range l {
		s = append(s, fmt.Sprintf("%.6f", v))
	}
	return strings.Join(s, " ")
}

// TestTimings measures GEMMs and a few kernels on the GPU and logs the
// rates (run with -v); it fails only on device errors.
func TestTimings(t *testing.T) {
	be := device(t)
	for _, s := range []struct {
		m, n, k int
		dt      compute.DType
		trans   bool
	}{{4096, 4096, 4096, compute.F32, false}, {4096, 4096, 4096, compute.BF16, true}, {2048, 14336, 4096, compute.BF16, true},
		{8192, 8, 4096, compute.F32, true}} {
		a, b := alloc(t, be, s.m*s.k), alloc(t, be, s.k*s.n)
		if s.dt == compute.BF16 {
			bb, err := be.Alloc(compute.BF16, s.k*s.n)
			if err != nil {
				t.Fatal(err)
			}
			b = bb
		}
		c := alloc(t, be, s.m*s.n)
		p := compute.Gemm{M: s.m, N: s.n, K: s.k, Alpha: 1, TransB: s.trans}
		be.Gemm(p, a, b, c) // warm-up
		const reps = 5
		d, err := be.Time(func() {
			for range reps {
				be.Gemm(p, a, b, c)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		flops := 2 * float64(s.m) * float64(s.n) * float64(s.k) * reps
		t.Logf("gemm %dx%dx%d f32 × %v: %.3f ms, %.1f TFLOP/s", s.m, s.n, s.k, s.dt, d.Seconds()*1e3/reps, flops/d.Seconds()/1e12)
		for _, x := range []compute.Buffer{a, b, c} {
			be.Free(x)
		}
	}
	a := compute.Attention{Batch: 1, Seq: 2048, Heads: 32, KVHeads: 8, HeadDim: 128, Scale: 1 / float32(math.Sqrt(128))}
	nq, nk := a.Batch*a.Seq*a.Heads*a.HeadDim, a.Batch*a.Seq*a.KVHeads*a.HeadDim
	q, k, v, out, lse := upload(t, be, nq, 1), upload(t, be, nk, 2), upload(t, be, nk, 3), alloc(t, be, nq), alloc(t, be, a.Seq*a.Heads)
	be.Attention(a, out, lse, q, k, v)
	d, err := be.Time(func() { be.Attention(a, out, lse, q, k, v) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("attention forward %+v: %.3f ms", a, d.Seconds()*1e3)
	dq, dk, dv := alloc(t, be, nq), alloc(t, be, nk), alloc(t, be, nk)
	d, err = be.Time(func() { be.AttentionBackward(a, dq, dk, dv, out, q, k, v, out, lse) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("attention backward: %.3f ms", d.Seconds()*1e3)
	for _, b := range []compute.Buffer{q, k, v, out, dq, dk, dv} {
		be.Free(b)
	}
	timeBF16(t, be)
	const n = 1 << 26
	x, y := upload(t, be, n, 4), upload(t, be, n, 5)
	d, err = be.Time(func() { be.Axpy(y, x, 0.5) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("axpy of %d floats: %.3f ms, %.0f GB/s", n, d.Seconds()*1e3, 12*n/d.Seconds()/1e9)
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
}

// timeBF16 logs the bf16 path's rates: a bf16 GEMM into a bf16 C, the
// tensor-core attention at 2k and 16k tokens (causal FLOPs: forward
// 4·T²·D·H/2, backward 2.5× that), and the NF4 → bf16 dequantization of an
// 8B down_proj.
func timeBF16(t *testing.T, be *cuda.Backend) {
	bf := func(n int, seed uint64) compute.Buffer {
		b, err := be.Alloc(compute.BF16, n)
		if err != nil {
			t.Fatal(err)
		}
		be.FillUniform(b, seed, -1, 1)
		return b
	}
	timed := func(what string, flop float64, f func()) {
		f() // warm-up
		d, err := be.Time(f)
		if err != nil {
			t.Fatal(err)
		}
		if flop > 0 {
			t.Logf("%s: %.3f ms, %.1f TFLOP/s", what, d.Seconds()*1e3, flop/d.Seconds()/1e12)
		} else {
			t.Logf("%s: %.3f ms", what, d.Seconds()*1e3)
		}
	}
	m, n, k := 8192, 4096, 4096
	a, b, c := bf(m*k, 1), bf(n*k, 2), bf(m*n, 3)
	timed("gemm 8192x4096x4096 bf16 → bf16", 2*float64(m*n*k), func() {
		be.Gemm(compute.Gemm{M: m, N: n, K: k, TransB: true, Alpha: 1}, a, b, c)
	})
	for _, x := range []compute.Buffer{a, b, c} {
		be.Free(x)
	}
	for _, seq := range []int{2048, 16384} {
		at := compute.Attention{Batch: 1, Seq: seq, Heads: 32, KVHeads: 8, HeadDim: 128, Scale: 1 / float32(math.Sqrt(128))}
		nq, nk := seq*32*128, seq*8*128
		q, k, v, out, dq, dk, dv := bf(nq, 4), bf(nk, 5), bf(nk, 6), bf(nq, 7), bf(nq, 8), bf(nk, 9), bf(nk, 10)
		lse := alloc(t, be, 32*seq)
		fwd := 4 * float64(seq) * float64(seq) * 128 * 32 / 2
		timed(fmt.Sprintf("bf16 attention forward, 8B layer, %d tokens", seq), fwd, func() { be.Attention(at, out, lse, q, k, v) })
		timed(fmt.Sprintf("bf16 attention backward, %d tokens", seq), 2.5*fwd, func() {
			be.AttentionBackward(at, dq, dk, dv, out, q, k, v, out, lse)
		})
		for _, x := range []compute.Buffer{q, k, v, out, dq, dk, dv, lse} {
			be.Free(x)
		}
	}
	const nw = 14336 * 4096
	packed, err := be.Alloc(compute.U8, nw/2)
	if err != nil {
		t.Fatal(err)
	}
	codes, _ := be.Alloc(compute.U8, nw/64)
	be.FillUniform(packed, 11, 0, 0)
	be.FillUniform(codes, 12, 0, 0)
	q4 := compute.Quant4{N: nw, Blocksize: 64, Packed: packed, Code: upload(t, be, 16, 13), Absmax: codes,
		NestedAbsmax: upload(t, be, nw/64/256, 14), NestedCode: upload(t, be, 256, 15), NestedBlocksize: 256, Offset: 0.03}
	w := bf(nw, 16)
	timed("NF4 → bf16 dequantization of 14336x4096 (read 30 MB, write 117 MB)", 0, func() { be.Dequantize4(w, q4) })
}

// BenchmarkGemm4096 times a 4096³ f32 GEMM on the GPU.
func BenchmarkGemm4096(b *testing.B) {
	be := device(b)
	const n = 4096
	x, y, z := alloc(b, be, n*n), alloc(b, be, n*n), alloc(b, be, n*n)
	p := compute.Gemm{M: n, N: n, K: n, Alpha: 1}
	b.SetBytes(3 * 4 * n * n)
	for b.Loop() {
		be.Gemm(p, x, y, z)
	}
	if err := be.Sync(); err != nil {
		b.Fatal(err)
	}
}

// TestQLoRAMixedEmulated runs a QLoRA step in bf16 mixed precision with
// gradient checkpointing on the emulated backend and on the CPU: random
// NF4 projections made on the device (double quantization decoded by the
// kernel into bf16, one projection at a time), LoRA with dropout on q, k,
// v, o. Loss and gradient norms agree within 1e-2.
func TestQLoRAMixedEmulated(t *testing.T) {
	cuda.NewEmulated(t, cuda.Options{}) // skips without clang
	cfg, err := arch.ParseConfig([]byte(`{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
		"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 256,
		"rms_norm_eps": 1e-5, "rope_theta": 10000}`))
	if err != nil {
		t.Fatal(err)
	}
	opt := llama.Options{Precision: llama.PrecisionBF16, GradCheckpoint: true,
		Synthetic: &llama.Synthetic{Seed: 7, Scale: 0.05, NF4: true}}
	var specs []llama.Adapter
	for l := range cfg.Layers {
		for _, tg := range []string{"q_proj", "k_proj", "v_proj", "o_proj"} {
			specs = append(specs, llama.Adapter{Layer: l, Module: tg, Rank: 4, Scale: 2, Dropout: 0.1})
		}
	}
	adapters := func(name string) ([]float32, []int, error) {
		for k, s := range specs {
			out, in := 64, 64 // q and o; k and v put out 32
			if s.Module == "k_proj" || s.Module == "v_proj" {
				out = 32
			}
			p := cfg.ModulePath(s.Layer, s.Module)
			shape := []int{s.Rank, in}
			if name == p+llama.SuffixB {
				shape = []int{out, s.Rank}
			} else if name != p+llama.SuffixA {
				continue
			}
			x := make([]float32, shape[0]*shape[1])
			for i := range x {
				x[i] = float32(math.Sin(float64(i*7+s.Layer*3+k%4))) * 0.1
			}
			return x, shape, nil
		}
		return nil, nil, llama.ErrNotFound
	}
	b := llama.Batch{Rows: 2, Seq: 24}
	for i := range b.Rows * b.Seq {
		b.IDs = append(b.IDs, int32(i*37%cfg.Vocab))
	}
	b.Labels = b.IDs
	run := func(be compute.Backend) (float64, []float64) {
		m, err := llama.New(be, cfg, nil, opt)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if err := m.AddAdapters(specs, adapters); err != nil {
			t.Fatal(err)
		}
		m.ZeroGrad()
		sum, n, err := m.ForwardBackward(b, llama.Step{Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		return sum / float64(n), gradNorms(t, be, m)
	}
	refLoss, refNorms := run(cpu.New(0))
	loss, norms := run(cuda.NewEmulated(t, cuda.Options{}))
	worst := 0.0
	for i := range norms {
		worst = math.Max(worst, plaintrain.RelDiff(norms[i], refNorms[i]))
	}
	if e := plaintrain.RelDiff(loss, refLoss); e > 1e-2 || worst > 1e-2 {
		t.Errorf("loss %v (cpu %v), worst gradient norm relative difference %.3g", loss, refLoss, worst)
	}
	t.Logf("QLoRA bf16: loss %.6f (cpu %.6f), gradient norms within %.3g", loss, refLoss, worst)
}

// gradNorms returns the norm of each parameter's gradient.
func gradNorms(t *testing.T, be compute.Backend, m *llama.Model) []float64 {
	var norms []float64
	for _, p := range m.Params() {
		var s float64
		for _, v := range download(t, be, p.Grad) {
			s += float64(v) * float64(v)
		}
		norms = append(norms, math.Sqrt(s))
	}
	return norms
}

// TestArchMatchesCPU runs one training step and the logits of small models
// of other architectures on the GPU and on the CPU (see compareArch).
func TestArchMatchesCPU(t *testing.T) {
	device(t) // skips without a device
	compareArch(t, func(t *testing.T) compute.Backend { return device(t) })
}

// TestArchEmulated is TestArchMatchesCPU on the host emulation.
func TestArchEmulated(t *testing.T) {
	cuda.NewEmulated(t, cuda.Options{}) // skips without clang
	compareArch(t, func(t *testing.T) compute.Backend { return cuda.NewEmulated(t, cuda.Options{}) })
}

// compareArch runs one training step and the logits of small models of
// other architectures on a backend and on the CPU: Gemma 2 (GeGLU,
// sandwich norms, soft-capped scores and logits, local and global layers),
// Phi-3 (fused qkv and gate_up with DoRA, partial rotary, LongRoPE, a
// window) and Qwen2 (trained q/k/v biases, tied embeddings, a window), in
// f32 (within 1e-4) and bf16 mixed precision (within 5e-2).
func compareArch(t *testing.T, backend func(*testing.T) compute.Backend) {
	const small = `"hidden_size": 32, "intermediate_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2,
	  "vocab_size": 64, "num_hidden_layers": 2`
	for _, c := range []struct{ name, js, bias string }{
		{"gemma2", `{"model_type": "gemma2", ` + small + `, "head_dim": 8, "query_pre_attn_scalar": 20, "sliding_window": 4,
		  "attn_logit_softcapping": 3.0, "final_logit_softcapping": 5.0}`, "none"},
		{"phi3", `{"model_type": "phi3", ` + small + `, "partial_rotary_factor": 0.75, "max_position_embeddings": 64,
		  "original_max_position_embeddings": 8, "sliding_window": 6, "rope_scaling": {"type": "longrope",
		  "short_factor": [1.0, 1.25, 1.5], "long_factor": [1.5, 3.0, 6.0]}}`, "none"},
		{"qwen2", `{"model_type": "qwen2", ` + small + `, "tie_word_embeddings": true, "use_sliding_window": true,
		  "sliding_window": 5, "max_window_layers": 1}`, "all"},
	} {
		cfg, err := arch.ParseConfig([]byte(c.js))
		if err != nil {
			t.Fatal(err)
		}
		ad, err := train.NewAdapter(cfg, train.AdapterOptions{Rank: 4, Alpha: 8, Targets: []string{"all-linear"},
			DoRA: c.name == "phi3", Dropout: 0.1, Bias: c.bias})
		if err != nil {
			t.Fatal(err)
		}
		b := llama.Batch{Rows: 2, Seq: 12}
		for i := range b.Rows * b.Seq {
			b.IDs = append(b.IDs, int32(i*37%cfg.Vocab))
		}
		b.Labels = b.IDs
		for _, prec := range []llama.Precision{llama.PrecisionF32, llama.PrecisionBF16} {
			run := func(be compute.Backend) (float64, []float64, []float32) {
				m, err := llama.New(be, cfg, nil, llama.Options{Precision: prec, Synthetic: &llama.Synthetic{Seed: 5, Scale: 0.3}})
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				if err := m.AddAdapters(ad.Specs, train.InitLoader(cfg, ad.Specs, 2, "F32")); err != nil {
					t.Fatal(err)
				}
				logits := make([]float32, b.Rows*b.Seq*cfg.Vocab)
				if err := m.Logits(b, logits); err != nil {
					t.Fatal(err)
				}
				m.ZeroGrad()
				sum, n, err := m.ForwardBackward(b, llama.Step{Seed: 3})
				if err != nil {
					t.Fatal(err)
				}
				return sum / float64(n), gradNorms(t, be, m), logits
			}
			refLoss, refNorms, refLogits := run(cpu.New(0))
			loss, norms, logits := run(backend(t))
			worst, worstLogit, scale := 0.0, 0.0, 0.0
			for i := range norms {
				worst = math.Max(worst, plaintrain.RelDiff(norms[i], refNorms[i]))
			}
			for i := range logits {
				worstLogit = math.Max(worstLogit, math.Abs(float64(logits[i]-refLogits[i])))
				scale = math.Max(scale, math.Abs(float64(refLogits[i])))
			}
			tol := 1e-4
			if prec == llama.PrecisionBF16 {
				tol = 5e-2 // the tensor-core path rounds scores and products the CPU widens
			}
			if e := plaintrain.RelDiff(loss, refLoss); e > tol || worst > tol || worstLogit > tol*scale {
				t.Errorf("%s %s: loss %v (cpu %v), worst gradient norm relative difference %.3g, logits %.3g of %.3g",
					c.name, prec, loss, refLoss, worst, worstLogit, scale)
			}
			t.Logf("%s %s: loss %.6f (cpu %.6f), gradient norms within %.3g, logits within %.3g of %.3g", c.name, prec,
				loss, refLoss, worst, worstLogit, scale)
		}
	}
}

// TestBenchEmulated runs lora-train's bench (train.Bench) on the emulated
// backend: random NF4 weights made on the device, bf16 mixed precision
// (the host emulation claims sm_90), checkpointing, and the caching
// allocator's peak memory in the result.
func TestBenchEmulated(t *testing.T) {
	be := cuda.NewEmulated(t, cuda.Options{})
	cfg, err := arch.ParseConfig([]byte(`{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
		"num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 256,
		"rms_norm_eps": 1e-5, "rope_theta": 10000}`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := train.Bench(context.Background(), train.BenchOptions{Backend: be, Shape: "tiny", Config: cfg, Batch: 2, Seq: 16,
		Steps: 1, Warmup: 1, Precision: "auto", QLoRA: true, GradCheckpoint: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Precision != "bf16" || res.Backend != "cuda" || res.CC != 90 || res.TokensPerS <= 0 ||
		res.WeightMemory <= 0 || res.PeakMemory < res.WeightMemory+res.WorkspaceBytes || res.PeakReserved < res.PeakMemory ||
		math.Abs(res.Loss-math.Log(256)) > 0.2 {
		t.Errorf("%+v", res)
	}
	var text strings.Builder
	res.WriteText(&text)
	t.Logf("\n%s", text.String())
}
