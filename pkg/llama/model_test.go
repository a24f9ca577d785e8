package llama

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/fixtureio"
	"github.com/lorakit/lorakit/pkg/compute"
)

// TestLogits compares forward logits with transformers/PEFT (logits.safetensors).
func TestLogits(t *testing.T) {
	fx := fixtures(t)
	lf := openST(t, filepath.Join(fx, "peft", "logits.safetensors"))
	ids := int64s(t, lf, "ids")
	for _, c := range []struct {
		name, adapter string
		tol           float64
	}{
		{"base", "", 1e-5},
		{"lora_adapter", "lora", 1e-5},
		{"dora_adapter", "dora", 1e-5},
		{"lora_merged", "", -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			folder := "tiny"
			if c.tol < 0 {
				folder = "lora-merged"
				c.tol = 1e-5
			}
			m := loadTiny(t, newCPU(), folder, Options{})
			if c.adapter != "" {
				addFixtureAdapter(t, m, filepath.Join(fx, "peft", c.adapter))
			}
			got := make([]float32, 2*12*256)
			if err := m.Logits(Batch{Rows: 2, Seq: 12, IDs: ids}, got); err != nil {
				t.Fatal(err)
			}
			diff, scale := maxAbs(got, float32s(t, lf, c.name))
			t.Logf("%s: max |Δlogit| = %.3g (max |logit| %.3g)", c.name, diff, scale)
			if diff > c.tol {
				t.Errorf("%s: max |Δlogit| = %.3g > %g", c.name, diff, c.tol)
			}
		})
	}
}

// TestLogitsBF16Storage checks that BF16 weight storage computes exactly what
// F32 storage of the same (bf16-representable) weights computes.
func TestLogitsBF16Storage(t *testing.T) {
	fx := fixtures(t)
	ids := int64s(t, openST(t, filepath.Join(fx, "peft", "logits.safetensors")), "ids")
	b := Batch{Rows: 2, Seq: 12, IDs: ids}
	ref := make([]float32, 2*12*256)
	m := loadTiny(t, newCPU(), "tiny-bf16", Options{})
	if err := m.Logits(b, ref); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, len(ref))
	m16 := loadTiny(t, newCPU(), "tiny-bf16", Options{WeightDType: compute.BF16})
	if err := m16.Logits(b, got); err != nil {
		t.Fatal(err)
	}
	if diff, _ := maxAbs(got, ref); diff != 0 {
		t.Errorf("bf16 storage differs from f32 storage by %.3g", diff)
	}
	// And the bf16 model is close to the f32 one (rounding of weights only).
	base := float32s(t, openST(t, filepath.Join(fx, "peft", "logits.safetensors")), "base")
	if diff, _ := maxAbs(got, base); diff > 0.05 || diff == 0 {
		t.Errorf("bf16 model vs f32 logits: %.3g", diff)
	}
}

type golden = fixtureio.TrainGolden

func loadGolden(t testing.TB, dir string) (golden, Batch) {
	g := fixtureio.LoadTrainGolden(t, dir)
	b := Batch{Rows: len(g.InputIDs), Seq: len(g.InputIDs[0])}
	for r := range g.InputIDs {
		b.IDs = append(b.IDs, g.InputIDs[r]...)
		b.Labels = append(b.Labels, g.Labels[r]...)
	}
	return g, b
}

// relErr returns max|a−b| / max|b| (0 when both are all zero).
func relErr(a, b []float32) float64 {
	d, s := maxAbs(a, b)
	if s == 0 {
		return d
	}
	return d / s
}

// TestGradsStep0 compares the first step's loss and adapter gradients with
// PEFT's (train/plain/grads_step0.safetensors).
func TestGradsStep0(t *testing.T) {
	for _, ckpt := range []bool{false, true} {
		name := "stored"
		if ckpt {
			name = "checkpointed"
		}
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(fixtures(t), "peft", "train", "plain")
			g, b := loadGolden(t, dir)
			m := loadTiny(t, newCPU(), "tiny", Options{GradCheckpoint: ckpt})
			addFixtureAdapter(t, m, filepath.Join(dir, "init"))
			m.ZeroGrad()
			sum, n, err := m.ForwardBackward(b, Step{})
			if err != nil {
				t.Fatal(err)
			}
			if n != 24 {
				t.Errorf("targets = %d, want 24", n)
			}
			loss := sum / float64(n)
			if e := math.Abs(loss-g.Loss[0]) / g.Loss[0]; e > 1e-6 {
				t.Errorf("loss %.9g, want %.9g (rel %.3g)", loss, g.Loss[0], e)
			}
			gf := openST(t, filepath.Join(dir, "grads_step0.safetensors"))
			worst := 0.0
			for _, p := range m.Params() {
				want := float32s(t, gf, "base_model.model."+p.Name)
				got := download(t, m.Backend(), p.Grad)
				e := relErr(got, want)
				worst = math.Max(worst, e)
				if e > 1e-5 || (strings.Contains(p.Name, "lora_A") && e != 0) {
					t.Errorf("%s: relative error %.3g", p.Name, e)
				}
			}
			t.Logf("loss %.9g (want %.9g); worst gradient relative error %.3g", loss, g.Loss[0], worst)
		})
	}
}

// TestGoldenRun trains six AdamW steps as transformers/PEFT did
// (train/plain) and compares every step's loss and gradient norm, the final
// adapter and the final loss.
func TestGoldenRun(t *testing.T) {
	dir := filepath.Join(fixtures(t), "peft", "train", "plain")
	g, b := loadGolden(t, dir)
	be := newCPU()
	m := loadTiny(t, be, "tiny", Options{})
	addFixtureAdapter(t, m, filepath.Join(dir, "init"))
	params := m.Params()
	moments := make([][2]compute.Buffer, len(params))
	for i, p := range params {
		for j := range 2 {
			buf, err := be.Alloc(compute.F32, p.Value.Len())
			if err != nil {
				t.Fatal(err)
			}
			moments[i][j] = buf
		}
	}
	norms, err := be.Alloc(compute.F32, len(params))
	if err != nil {
		t.Fatal(err)
	}
	var worstLoss, worstNorm float64
	for step := range g.Steps {
		m.ZeroGrad()
		sum, n, err := m.ForwardBackward(b, Step{})
		if err != nil {
			t.Fatal(err)
		}
		loss := sum / float64(n)
		for i, p := range params {
			be.Norm2(be.View(norms, i, 1), p.Grad)
		}
		var total float64
		for _, v := range download(t, be, norms) {
			total += float64(v) * float64(v)
		}
		total = math.Sqrt(total)
		el, en := math.Abs(loss-g.Loss[step])/g.Loss[step], math.Abs(total-g.GradNorm[step])/g.GradNorm[step]
		worstLoss, worstNorm = math.Max(worstLoss, el), math.Max(worstNorm, en)
		if el > 1e-5 || en > 1e-5 {
			t.Errorf("step %d: loss %.9g (want %.9g), grad norm %.9g (want %.9g)", step, loss, g.Loss[step], total, g.GradNorm[step])
		}
		h := compute.AdamW{LR: g.LR, Beta1: g.Betas[0], Beta2: g.Betas[1], Eps: g.Eps, WeightDecay: g.WeightDecay, Step: step + 1}
		for i, p := range params {
			be.AdamWStep(h, p.Value, p.Grad, moments[i][0], moments[i][1])
		}
	}
	ff := openST(t, filepath.Join(dir, "final", "adapter_model.safetensors"))
	worstParam := 0.0
	for _, p := range params {
		e := relErr(download(t, be, p.Value), float32s(t, ff, "base_model.model."+p.Name))
		worstParam = math.Max(worstParam, e)
		if testing.Verbose() {
			got, want := download(t, be, p.Value), float32s(t, ff, "base_model.model."+p.Name)
			wi := 0
			for i := range got {
				if math.Abs(float64(got[i]-want[i])) > math.Abs(float64(got[wi]-want[wi])) {
					wi = i
				}
			}
			t.Logf("final %s: relative error %.3g (worst [%d] %v vs %v)", p.Name, e, wi, got[wi], want[wi])
		}
		if e > 1e-4 {
			t.Errorf("final %s: relative error %.3g", p.Name, e)
		}
	}
	sum, n, err := m.Loss(b)
	if err != nil {
		t.Fatal(err)
	}
	final := sum / float64(n)
	ef := math.Abs(final-g.FinalLoss) / g.FinalLoss
	if ef > 1e-5 {
		t.Errorf("final loss %.9g, want %.9g", final, g.FinalLoss)
	}
	t.Logf("worst relative error: loss %.3g, grad norm %.3g, final adapter %.3g, final loss %.3g", worstLoss, worstNorm, worstParam, ef)
}
