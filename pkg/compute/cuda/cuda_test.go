package cuda_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/computetest"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
	"github.com/lorakit/lorakit/pkg/compute/cuda"
	"github.com/lorakit/lorakit/pkg/llama"
	"github.com/lorakit/lorakit/pkg/safetensors"

	"github.com/lorakit/lorakit/internal/testbin"
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
// its backward pass, a reduction and a cuBLAS GEMM).
func TestDeterminism(t *testing.T) {
	be := device(t)
	a := compute.Attention{Batch: 2, Seq: 300, Heads: 8, KVHeads: 2, HeadDim: 64, Scale: 0.125}
	nq, nk := a.Batch*a.Seq*a.Heads*a.HeadDim, a.Batch*a.Seq*a.KVHeads*a.HeadDim
	q, k, v := upload(t, be, nq, 1), upload(t, be, nk, 2), upload(t, be, nk, 3)
	run := func() []float32 {
		out, lse := alloc(t, be, nq), alloc(t, be, a.Batch*a.Heads*a.Seq)
		be.Attention(a, out, lse, q, k, v)
		dq, dk, dv := alloc(t, be, nq), alloc(t, be, nk), alloc(t, be, nk)
		be.AttentionBackward(a, dq, dk, dv, out, q, k, v, out, lse)
		n := alloc(t, be, 1)
		be.Norm2(n, dk)
		c := alloc(t, be, a.Batch*a.Seq*a.Batch*a.Seq)
		be.Gemm(compute.Gemm{M: a.Batch * a.Seq, N: a.Batch * a.Seq, K: a.KVHeads * a.HeadDim, Alpha: 1, TransB: true}, k, v, c)
		return download(t, be, dq, dk, dv, n, c)
	}
	x, y := run(), run()
	for i := range x {
		if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
			t.Fatalf("element %d: %v then %v", i, x[i], y[i])
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

// fixtures returns shared/fixtures ($LORAKIT_FIXTURES first: the GPU
// machine gets a copy inside the repository).
func fixtures(t testing.TB) string {
	t.Helper()
	return testbin.Fixtures(t)
}

type golden struct {
	LR          float64    `json:"lr"`
	Steps       int        `json:"steps"`
	Betas       [2]float64 `json:"betas"`
	Eps         float64    `json:"eps"`
	WeightDecay float64    `json:"weight_decay"`
	InputIDs    [][]int32  `json:"input_ids"`
	Labels      [][]int32  `json:"labels"`
	Loss        []float64  `json:"loss"`
	GradNorm    []float64  `json:"grad_norm"`
	FinalLoss   float64    `json:"final_loss"`
}

func stLoader(t testing.TB, path, prefix string) llama.Loader {
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return func(name string) ([]float32, []int, error) {
		info, ok := f.Info(prefix + name)
		if !ok {
			return nil, nil, fmt.Errorf("%s: %w", prefix+name, llama.ErrNotFound)
		}
		data, err := f.Float32(prefix + name)
		if err != nil {
			return nil, nil, err
		}
		shape := make([]int, len(info.Shape))
		for i, d := range info.Shape {
			shape[i] = int(d)
		}
		return data, shape, nil
	}
}

// trainRun is the record of the train/plain run on one backend.
type trainRun struct {
	loss, norm []float64
	final      float64
	params     map[string][]float32
	step       time.Duration // the mean wall time of a step
}

// trainPlain trains the fixture's six AdamW steps (lr 5e-3, r 8, q/k/v/o
// of peft/tiny) on be, as llama's TestGoldenRun does on the CPU.
func trainPlain(t testing.TB, be compute.Backend, opt llama.Options) trainRun {
	dir := filepath.Join(fixtures(t), "peft", "train", "plain")
	raw, err := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	b := llama.Batch{Rows: len(g.InputIDs), Seq: len(g.InputIDs[0])}
	for r := range g.InputIDs {
		b.IDs = append(b.IDs, g.InputIDs[r]...)
		b.Labels = append(b.Labels, g.Labels[r]...)
	}
	cfg := llama.Config{Hidden: 64, Intermediate: 128, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 16, Vocab: 256,
		RMSEps: 1e-5, RopeTheta: 10000}
	m, err := llama.New(be, cfg, stLoader(t, filepath.Join(fixtures(t), "peft", "tiny", "model.safetensors"), ""), opt)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var ac struct {
		R       int      `json:"r"`
		Alpha   float64  `json:"lora_alpha"`
		Targets []string `json:"target_modules"`
	}
	raw, err = os.ReadFile(filepath.Join(dir, "init", "adapter_config.json"))
	if err == nil {
		err = json.Unmarshal(raw, &ac)
	}
	if err != nil {
		t.Fatal(err)
	}
	var specs []llama.Adapter
	for l := range cfg.Layers {
		for _, name := range ac.Targets {
			tg, err := llama.ParseTarget(name)
			if err != nil {
				t.Fatal(err)
			}
			specs = append(specs, llama.Adapter{Layer: l, Target: tg, Rank: ac.R, Scale: float32(ac.Alpha / float64(ac.R))})
		}
	}
	if err := m.AddAdapters(specs, stLoader(t, filepath.Join(dir, "init", "adapter_model.safetensors"), "base_model.model.")); err != nil {
		t.Fatal(err)
	}
	params := m.Params()
	moments := make([][2]compute.Buffer, len(params))
	for i, p := range params {
		moments[i] = [2]compute.Buffer{alloc(t, be, p.Value.Len()), alloc(t, be, p.Value.Len())}
	}
	norms := alloc(t, be, len(params))
	var run trainRun
	start := time.Now()
	for step := range g.Steps {
		m.ZeroGrad()
		sum, n, err := m.ForwardBackward(b, llama.Step{})
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range params {
			be.Norm2(be.View(norms, i, 1), p.Grad)
		}
		var total float64
		for _, v := range download(t, be, norms) {
			total += float64(v) * float64(v)
		}
		run.loss = append(run.loss, sum/float64(n))
		run.norm = append(run.norm, math.Sqrt(total))
		h := compute.AdamW{LR: g.LR, Beta1: g.Betas[0], Beta2: g.Betas[1], Eps: g.Eps, WeightDecay: g.WeightDecay, Step: step + 1}
		for i, p := range params {
			be.AdamWStep(h, p.Value, p.Grad, moments[i][0], moments[i][1])
		}
	}
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
	run.step = time.Since(start) / time.Duration(g.Steps)
	sum, n, err := m.Loss(b)
	if err != nil {
		t.Fatal(err)
	}
	run.final = sum / float64(n)
	run.params = map[string][]float32{}
	for _, p := range params {
		run.params[p.Name] = download(t, be, p.Value)
	}
	return run
}

func relDiff(a, b float64) float64 { return math.Abs(a-b) / math.Max(math.Abs(b), 1e-30) }

// TestTrainPlainMatchesCPU runs shared/fixtures/peft/train/plain on the GPU
// and on the CPU. With f32 or bf16 weights every step's loss and gradient
// norm and the final loss agree within 1e-4 (relative), the final adapter
// within 1e-3 (AdamW's normalized first steps amplify rounding differences
// in near-zero gradients): bf16 weights are widened exactly, as on the CPU.
// With Options.BF16Gemm (activations rounded to bf16 for the tensor cores)
// the steps agree within 1e-2 and the final adapter is only logged: the
// first AdamW steps move every element by ±lr whatever its gradient's size,
// so elements whose gradients are rounding noise end up anywhere in ±6·lr.
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
	bf16 := llama.Options{WeightDType: compute.BF16}
	for _, c := range []struct {
		name           string
		opt            llama.Options
		copt           cuda.Options
		tolStep, tolAd float64
	}{
		{"f32", llama.Options{}, cuda.Options{}, 1e-4, 1e-3},
		{"bf16", bf16, cuda.Options{}, 1e-4, 1e-3},
		{"bf16_tensorcore", bf16, cuda.Options{BF16Gemm: true}, 1e-2, math.Inf(1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			ref := trainPlain(t, cpu.New(0), c.opt)
			got := trainPlain(t, backend(t, c.copt), c.opt)
			var worstStep, worstAd float64
			for s := range ref.loss {
				el, en := relDiff(got.loss[s], ref.loss[s]), relDiff(got.norm[s], ref.norm[s])
				worstStep = math.Max(worstStep, math.Max(el, en))
				if el > c.tolStep || en > c.tolStep {
					t.Errorf("step %d: loss %.9g (cpu %.9g), grad norm %.9g (cpu %.9g)", s, got.loss[s], ref.loss[s], got.norm[s], ref.norm[s])
				}
			}
			if e := relDiff(got.final, ref.final); e > c.tolStep {
				t.Errorf("final loss %.9g (cpu %.9g)", got.final, ref.final)
			}
			for name, want := range ref.params {
				var d, m float64
				for i, v := range got.params[name] {
					d = math.Max(d, math.Abs(float64(v-want[i])))
					m = math.Max(m, math.Abs(float64(want[i])))
				}
				if d/m > c.tolAd {
					t.Errorf("final %s: relative difference %.3g", name, d/m)
				}
				worstAd = math.Max(worstAd, d/m)
			}
			t.Logf("%s: worst relative difference to the CPU: steps %.3g, final adapter %.3g; step %v on the %s, %v on the CPU; losses %v",
				c.name, worstStep, worstAd, got.step, where, ref.step, fmtLoss(got.loss))
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
