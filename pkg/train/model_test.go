package train

import (
	"math"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/llama"
)

// TestEvalFixtureLogits checks Evaluate on tiny, tiny+lora and tiny+dora
// (adapters read by OpenAdapter) against the cross-entropy computed here
// from PEFT's logits (logits.safetensors).
func TestEvalFixtureLogits(t *testing.T) {
	ex := fixtureIDs(t)
	cfg := tinyConfig(t)
	for _, c := range []struct{ logits, adapter string }{{"base", ""}, {"lora_adapter", "lora"}, {"dora_adapter", "dora"}} {
		t.Run(c.logits, func(t *testing.T) {
			want, total := fixtureCE(t, c.logits)
			var ad *Adapter
			var load llama.Loader
			if c.adapter != "" {
				var err error
				if ad, load, err = OpenAdapter(fx(t, "peft", c.adapter), nil, cfg, 0); err != nil {
					t.Fatal(err)
				}
			}
			m := newModel(t, newCPU(), "peft/tiny", ad, load, llama.Options{})
			res, err := Evaluate(m, ex)
			if err != nil {
				t.Fatal(err)
			}
			if e := math.Abs(res.Loss-total) / total; e > 1e-6 || res.Targets != 22 {
				t.Errorf("loss %.9g over %d, want %.9g (rel %.3g)", res.Loss, res.Targets, total, e)
			}
			for r, el := range res.Examples {
				if e := math.Abs(el.Loss-want[r]) / want[r]; e > 1e-6 || el.Line != r+1 {
					t.Errorf("example %d: loss %.9g, want %.9g", r, el.Loss, want[r])
				}
			}
			t.Logf("%s: loss %.9g, from the fixture logits %.9g", c.logits, res.Loss, total)
		})
	}
}

// fixtureIDs returns the two rows of logits.safetensors' ids as examples
// scored on every token.
func fixtureIDs(t testing.TB) []Example {
	ids := int64s(t, openST(t, fx(t, "peft", "logits.safetensors")), "ids")
	var ex []Example
	for r := range 2 {
		e := Example{IDs: ids[r*12 : (r+1)*12], Line: r + 1}
		e.Labels = e.IDs
		ex = append(ex, e)
	}
	return ex
}

// fixtureCE computes the mean cross-entropy of each row of the fixture ids
// under the fixture logits called name, and the mean over all targets.
func fixtureCE(t testing.TB, name string) (rows [2]float64, total float64) {
	lf := openST(t, fx(t, "peft", "logits.safetensors"))
	ids := int64s(t, lf, "ids")
	logits := float32s(t, lf, name)
	const seq, V = 12, 256
	for r := range 2 {
		for p := range seq - 1 {
			row := logits[(r*seq+p)*V : (r*seq+p+1)*V]
			mx := math.Inf(-1)
			for _, v := range row {
				mx = math.Max(mx, float64(v))
			}
			var s float64
			for _, v := range row {
				s += math.Exp(float64(v) - mx)
			}
			rows[r] += mx + math.Log(s) - float64(row[ids[r*seq+p+1]])
		}
		total += rows[r]
		rows[r] /= seq - 1
	}
	return rows, total / (2 * (seq - 1))
}

// trainSteps runs n updates of a fresh adapter on the golden data and
// returns the losses.
func trainSteps(t *testing.T, m *llama.Model, n int, lr float64) []float64 {
	t.Helper()
	g := loadGolden(t)
	s := plainSettings(g)
	s.MaxSteps, s.LR, s.MaxGradNorm = n, lr, 1
	tr, err := NewTrainer(m, Rows(goldenExamples(t, g)), 0, s)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var losses []float64
	for !tr.Done() {
		r, err := tr.Step()
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, r.Loss)
	}
	return losses
}

func decreasing(t *testing.T, what string, losses []float64) {
	t.Helper()
	t.Logf("%s: losses %.5f", what, losses)
	if !(losses[len(losses)-1] < losses[0]-0.05) {
		t.Errorf("%s: loss does not decrease: %v", what, losses)
	}
}

func TestDoRATrains(t *testing.T) {
	cfg := tinyConfig(t)
	for _, dropout := range []float64{0, 0.1} {
		ad, err := NewAdapter(cfg, AdapterOptions{Rank: 4, Alpha: 8, Targets: []string{"all-linear"}, DoRA: true, Dropout: dropout})
		if err != nil {
			t.Fatal(err)
		}
		be := newCPU()
		m := newModel(t, be, "peft/tiny", ad, InitLoader(cfg, ad.Specs, 3, dtype.F32), llama.Options{})
		var mag []float32
		for _, p := range m.Params() {
			if strings.HasSuffix(p.Name, llama.SuffixMagnitude) {
				mag = download(t, be, p.Value)
				break
			}
		}
		decreasing(t, "DoRA", trainSteps(t, m, 8, 2e-2))
		for _, p := range m.Params() {
			if strings.HasSuffix(p.Name, llama.SuffixMagnitude) {
				if relErr(download(t, be, p.Value), mag) == 0 {
					t.Error("the DoRA magnitude did not train")
				}
				break
			}
		}
	}
}

// TestBF16Base trains on the bf16 checkpoint: weights held as bf16, fresh
// adapters rounded to bf16 as PEFT does, the same numbers as f32 storage.
func TestBF16Base(t *testing.T) {
	b := openBase(t, "peft", "tiny-bf16")
	if b.WeightDType != compute.BF16 || b.AdapterDType != dtype.BF16 {
		t.Fatalf("weights %v, adapter dtype %v", b.WeightDType, b.AdapterDType)
	}
	cfg := b.Config
	ad, _ := NewAdapter(cfg, AdapterOptions{Rank: 8, Alpha: 16, Targets: []string{"q_proj", "v_proj"}})
	var first []float64
	for _, wdt := range []compute.DType{compute.BF16, compute.F32} {
		m := newModel(t, newCPU(), "peft/tiny-bf16", ad, InitLoader(cfg, ad.Specs, 5, b.AdapterDType), llama.Options{WeightDType: wdt})
		losses := trainSteps(t, m, 6, 1e-2)
		if first == nil {
			first = losses
			decreasing(t, "bf16 base", losses)
			continue
		}
		for i := range losses {
			if losses[i] != first[i] {
				t.Errorf("step %d: f32 storage loss %v, bf16 storage %v", i+1, losses[i], first[i])
			}
		}
	}
}

// TestNF4Base trains on the bitsandbytes NF4 checkpoint: the loader's
// dequantized weights equal dequantized.safetensors bit for bit.
func TestNF4Base(t *testing.T) {
	b := openBase(t, "bnb", "tiny-nf4")
	if !b.Quantized || b.WeightDType != compute.F32 || b.AdapterDType != dtype.BF16 {
		t.Fatalf("quantized %v, weights %v, adapter dtype %v", b.Quantized, b.WeightDType, b.AdapterDType)
	}
	want := openST(t, fx(t, "bnb", "tiny-nf4", "dequantized.safetensors"))
	load := b.Loader()
	for _, ti := range want.Header.Tensors {
		got, shape, err := load(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		w := float32s(t, want, ti.Name)
		if len(shape) != 2 || int64(shape[0]) != ti.Shape[0] || len(got) != len(w) {
			t.Fatalf("%s: shape %v", ti.Name, shape)
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(w[i]) {
				t.Fatalf("%s[%d] = %v, bitsandbytes %v", ti.Name, i, got[i], w[i])
			}
		}
	}
	if len(want.Header.Tensors) != 14 {
		t.Fatalf("%d dequantized tensors", len(want.Header.Tensors))
	}
	ad, _ := NewAdapter(b.Config, AdapterOptions{Rank: 8, Alpha: 16, Targets: []string{"all-linear"}, Dropout: 0.05})
	m := newModel(t, newCPU(), "bnb/tiny-nf4", ad, InitLoader(b.Config, ad.Specs, 5, b.AdapterDType), llama.Options{})
	decreasing(t, "NF4 base", trainSteps(t, m, 6, 1e-2))
}

func TestOpenBaseErrors(t *testing.T) {
	if _, err := OpenBase(fx(t, "peft", "lora"), nil); err == nil || !strings.Contains(err.Error(), "adapter") {
		t.Errorf("adapter as base: %v", err)
	}
	if _, _, err := OpenAdapter(fx(t, "peft", "tiny"), nil, tinyConfig(t), 0); err == nil {
		t.Error("model as adapter accepted")
	}
}
