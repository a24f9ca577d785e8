// Package plaintrain runs the shared training fixture peft/train/plain on
// any compute backend and precision, for the tests that compare backends
// and precisions with the f32 CPU reference.
package plaintrain

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lorakit/lorakit/internal/fixtureio"
	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/llama"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// Golden is the fixture's golden.json (PEFT's run).
type Golden = fixtureio.TrainGolden

// Run is the record of one run.
type Run struct {
	Loss, Norm []float64 // per step: the mean loss and the gradient norm
	Final      float64   // the loss after the last step
	Params     map[string][]float32
	Step       time.Duration // the mean wall time of a step
}

// Dir returns the fixture's folder.
func Dir(t testing.TB) string {
	return filepath.Join(testbin.Fixtures(t), "peft", "train", "plain")
}

// Load returns the fixture's golden record and its batch.
func Load(t testing.TB) (Golden, llama.Batch) {
	t.Helper()
	g := fixtureio.LoadTrainGolden(t, Dir(t))
	b := llama.Batch{Rows: len(g.InputIDs), Seq: len(g.InputIDs[0])}
	for r := range g.InputIDs {
		b.IDs = append(b.IDs, g.InputIDs[r]...)
		b.Labels = append(b.Labels, g.Labels[r]...)
	}
	return g, b
}

// Loader serves the tensors of a safetensors file as prefix+name.
func Loader(t testing.TB, path, prefix string) llama.Loader {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return fixtureio.Tensors(f, prefix, llama.ErrNotFound)
}

// Model builds peft/tiny with the fixture's initial adapter (r 8 on q, k,
// v, o) on be.
func Model(t testing.TB, be compute.Backend, opt llama.Options) *llama.Model {
	t.Helper()
	dir := Dir(t)
	tiny := filepath.Join(testbin.Fixtures(t), "peft", "tiny")
	raw, err := os.ReadFile(filepath.Join(tiny, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := arch.ParseConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	m, err := llama.New(be, cfg, Loader(t, filepath.Join(tiny, "model.safetensors"), ""), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
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
			specs = append(specs, llama.Adapter{Layer: l, Module: name, Rank: ac.R, Scale: float32(ac.Alpha / float64(ac.R))})
		}
	}
	if err := m.AddAdapters(specs, Loader(t, filepath.Join(dir, "init", "adapter_model.safetensors"), "base_model.model.")); err != nil {
		t.Fatal(err)
	}
	return m
}

// Train runs the fixture's AdamW steps (lr 5e-3, no clipping) on be, as
// llama's TestGoldenRun does on the CPU, and records every step.
func Train(t testing.TB, be compute.Backend, opt llama.Options) Run {
	t.Helper()
	g, b := Load(t)
	m := Model(t, be, opt)
	alloc := func(n int) compute.Buffer {
		x, err := be.Alloc(compute.F32, n)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { be.Free(x) })
		return x
	}
	download := func(x compute.Buffer) []float32 {
		v := make([]float32, x.Len())
		if err := be.Download(v, x); err != nil {
			t.Fatal(err)
		}
		return v
	}
	params := m.Params()
	moments := make([][2]compute.Buffer, len(params))
	for i, p := range params {
		moments[i] = [2]compute.Buffer{alloc(p.Value.Len()), alloc(p.Value.Len())}
	}
	norms := alloc(len(params))
	var run Run
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
		for _, v := range download(norms) {
			total += float64(v) * float64(v)
		}
		run.Loss = append(run.Loss, sum/float64(n))
		run.Norm = append(run.Norm, math.Sqrt(total))
		h := compute.AdamW{LR: g.LR, Beta1: g.Betas[0], Beta2: g.Betas[1], Eps: g.Eps, WeightDecay: g.WeightDecay, Step: step + 1}
		for i, p := range params {
			be.AdamWStep(h, p.Value, p.Grad, moments[i][0], moments[i][1])
		}
	}
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
	run.Step = time.Since(start) / time.Duration(g.Steps)
	sum, n, err := m.Loss(b)
	if err != nil {
		t.Fatal(err)
	}
	run.Final = sum / float64(n)
	run.Params = map[string][]float32{}
	for _, p := range params {
		run.Params[p.Name] = download(p.Value)
	}
	return run
}

// RelDiff returns |a − b| / |b|.
func RelDiff(a, b float64) float64 { return math.Abs(a-b) / math.Max(math.Abs(b), 1e-30) }

// Compare returns the worst relative difference of got to ref over the
// steps' losses and gradient norms and the final loss, and over the final
// adapter tensors (max |Δ| / max |ref| per tensor).
func Compare(got, ref Run) (steps, adapter float64) {
	for s := range ref.Loss {
		steps = math.Max(steps, math.Max(RelDiff(got.Loss[s], ref.Loss[s]), RelDiff(got.Norm[s], ref.Norm[s])))
	}
	steps = math.Max(steps, RelDiff(got.Final, ref.Final))
	for name, want := range ref.Params {
		var d, m float64
		for i, v := range got.Params[name] {
			d = math.Max(d, math.Abs(float64(v-want[i])))
			m = math.Max(m, math.Abs(float64(want[i])))
		}
		adapter = math.Max(adapter, d/m)
	}
	return steps, adapter
}
