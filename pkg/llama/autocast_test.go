package llama

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
)

// TestAutocastBF16 compares bf16 autocast with the f32 reference on the
// golden training batch: PEFT's step-0 gradients and loss within bf16
// tolerances, and exact determinism across thread counts.
func TestAutocastBF16(t *testing.T) {
	dir := filepath.Join(fixtures(t), "peft", "train", "plain")
	g, b := loadGolden(t, dir)
	gf := openST(t, filepath.Join(dir, "grads_step0.safetensors"))
	run := func(be compute.Backend, opt Options) (float64, [][]float32) {
		m := loadTiny(t, be, "tiny", opt)
		addFixtureAdapter(t, m, filepath.Join(dir, "init"))
		m.ZeroGrad()
		sum, n, err := m.ForwardBackward(b, Step{})
		if err != nil {
			t.Fatal(err)
		}
		var gs [][]float32
		for _, p := range m.Params() {
			gs = append(gs, download(t, be, p.Grad))
		}
		return sum / float64(n), gs
	}
	loss, grads := run(cpu.New(1), Options{AutocastBF16: true})
	el := math.Abs(loss-g.Loss[0]) / g.Loss[0]
	worst := 0.0
	m := loadTiny(t, newCPU(), "tiny", Options{})
	addFixtureAdapter(t, m, filepath.Join(dir, "init"))
	for i, p := range m.Params() {
		e := relErr(grads[i], float32s(t, gf, "base_model.model."+p.Name))
		worst = math.Max(worst, e)
		if e > 2e-2 {
			t.Errorf("%s: relative error %.3g", p.Name, e)
		}
	}
	t.Logf("bf16 autocast vs PEFT f32: loss relative error %.3g, worst gradient relative error %.3g", el, worst)
	if el > 2e-3 || el == 0 || worst == 0 {
		t.Errorf("loss %.9g, want %.9g within 2e-3 (and not exactly)", loss, g.Loss[0])
	}
	// Rounding the activations is what changes the result, not only the
	// bf16 weights.
	l16, g16 := run(cpu.New(1), Options{WeightDType: compute.BF16})
	if l16 == loss || relErr(g16[1], grads[1]) == 0 { // [1]: lora_B (lora_A's are 0 at B = 0)
		t.Error("autocast computes what bf16 weight storage computes")
	}
	for _, threads := range []int{2, 3} {
		lt, gt := run(cpu.New(threads), Options{AutocastBF16: true, GradCheckpoint: threads == 3, LossChunk: 7})
		if lt != loss {
			t.Errorf("threads=%d: loss %v, want %v", threads, lt, loss)
		}
		for i := range gt {
			sameBits(t, "gradient", gt[i], grads[i])
		}
	}
}

// TestAutocastQLoRA runs bf16 autocast over the NF4 fixture: 4-bit weights
// decode to bf16 and the result equals the dense dequantized model's under
// autocast.
func TestAutocastQLoRA(t *testing.T) {
	_, b := loadGolden(t, fixtures(t)+"/peft/train/plain")
	q, dense := qloraPair(t, "tiny-nf4", Options{AutocastBF16: true}, newCPU)
	for _, m := range []*Model{q, dense} {
		if err := m.AddAdapters(gradSpecs("mixed"), randomAdapters(2)); err != nil {
			t.Fatal(err)
		}
		m.ZeroGrad()
	}
	sq, _, err := q.ForwardBackward(b, Step{Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	sd, _, err := dense.ForwardBackward(b, Step{Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	if sq != sd {
		t.Errorf("loss sum %v, dense %v", sq, sd)
	}
	pd := dense.Params()
	for i, p := range q.Params() {
		sameBits(t, p.Name, download(t, q.be, p.Grad), download(t, dense.be, pd[i].Grad))
	}
	if _, err := New(newCPU(), tinyConfig(), nil, Options{AutocastBF16: true, WeightDType: compute.F32}); err == nil {
		t.Error("autocast with f32 weights accepted")
	}
}
