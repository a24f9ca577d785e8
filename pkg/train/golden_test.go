package train

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/llama"
	"github.com/lorakit/lorakit/pkg/output"
	"github.com/lorakit/lorakit/pkg/peft"
)

// TestGoldenPlain runs fixtures/peft/train/plain through the Trainer: six
// AdamW updates at constant lr 5e-3, no clipping, file order, from the saved
// initial adapter. Per-step loss and gradient norm must match PEFT to 1e-5
// relative, the step-0 gradients to 1e-5, the final adapter (as written by
// WriteAdapter) to 1e-4, and the final loss to 1e-5.
func TestGoldenPlain(t *testing.T) {
	g := loadGolden(t)
	be := newCPU()
	cfg := tinyConfig(t)
	ad, load, err := OpenAdapter(fx(t, "peft", "train", "plain", "init"), nil, cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	m := newModel(t, be, "peft/tiny", ad, load, llama.Options{})
	ex := goldenExamples(t, g)
	tr, err := NewTrainer(m, Rows(ex), 0, plainSettings(g))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.Total() != g.Steps {
		t.Fatalf("total %d steps, want %d", tr.Total(), g.Steps)
	}
	gf := openST(t, fx(t, "peft", "train", "plain", "grads_step0.safetensors"))
	worstGrad := 0.0
	tr.OnGradients = func(step int, params []llama.Param) {
		if step != 1 {
			return
		}
		for _, p := range params {
			e := relErr(download(t, be, p.Grad), float32s(t, gf, peft.Prefix+p.Name))
			worstGrad = math.Max(worstGrad, e)
			if e > 1e-5 {
				t.Errorf("step 0 gradient %s: relative error %.3g", p.Name, e)
			}
		}
	}
	var worstLoss, worstNorm float64
	for i := range g.Steps {
		r, err := tr.Step()
		if err != nil {
			t.Fatal(err)
		}
		el := math.Abs(r.Loss-g.Loss[i]) / g.Loss[i]
		en := math.Abs(r.GradNorm-g.GradNorm[i]) / g.GradNorm[i]
		worstLoss, worstNorm = math.Max(worstLoss, el), math.Max(worstNorm, en)
		if el > 1e-5 || en > 1e-5 || r.LR != g.LRUsed[i] || r.Targets != 24 || r.Tokens != 32 {
			t.Errorf("step %d: %+v; want loss %.9g, grad norm %.9g, lr %g", i, r, g.Loss[i], g.GradNorm[i], g.LRUsed[i])
		}
	}
	if !tr.Done() {
		t.Error("not done after the planned steps")
	}
	out := filepath.Join(t.TempDir(), "final")
	if err := WriteAdapter(out, ad, m, output.Options{}); err != nil {
		t.Fatal(err)
	}
	got := openST(t, filepath.Join(out, "adapter_model.safetensors"))
	want := openST(t, fx(t, "peft", "train", "plain", "final", "adapter_model.safetensors"))
	if len(got.Header.Tensors) != len(want.Header.Tensors) {
		t.Fatalf("%d tensors written, PEFT has %d", len(got.Header.Tensors), len(want.Header.Tensors))
	}
	worstParam := 0.0
	for _, ti := range want.Header.Tensors {
		e := relErr(float32s(t, got, ti.Name), float32s(t, want, ti.Name))
		worstParam = math.Max(worstParam, e)
		if e > 1e-4 {
			t.Errorf("final %s: relative error %.3g", ti.Name, e)
		}
	}
	if got.Header.Metadata["format"] != "pt" || len(got.Header.Metadata) != 1 {
		t.Errorf("metadata %v", got.Header.Metadata)
	}
	res, err := Evaluate(m, ex)
	if err != nil {
		t.Fatal(err)
	}
	ef := math.Abs(res.Loss-g.FinalLoss) / g.FinalLoss
	if ef > 1e-5 {
		t.Errorf("final loss %.9g, want %.9g", res.Loss, g.FinalLoss)
	}
	t.Logf("worst relative error: loss %.3g, grad norm %.3g, step-0 grads %.3g, final adapter %.3g, final loss %.3g",
		worstLoss, worstNorm, worstGrad, worstParam, ef)

	// The written adapter loads back with the same structure, and its
	// config has the compatible key set.
	back, _, err := OpenAdapter(out, nil, cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Specs, ad.Specs) {
		t.Errorf("read-back specs differ")
	}
	raw, err := back.ConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"peft_version", "use_dora", "lora_bias", "exclude_modules", "layer_replication"} {
		if strings.Contains(string(raw), bad) {
			t.Errorf("adapter_config.json has %q", bad)
		}
	}
}

// TestInitAdapter checks PEFT's default initialisation: A uniform in
// ±1/√in, B zero, rounded to bf16 for a bf16 base, independent of the
// request order and reproducible from the seed.
func TestInitAdapter(t *testing.T) {
	cfg := tinyConfig(t)
	ad, err := NewAdapter(cfg, AdapterOptions{Rank: 8, Alpha: 16, Targets: []string{"q_proj", "down_proj"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(ad.Specs) != 4 || ad.Specs[1].Module != "down_proj" || ad.Specs[0].Scale != 2 {
		t.Fatalf("specs %+v", ad.Specs)
	}
	load := InitLoader(cfg, ad.Specs, 7, "F32")
	a, shape, err := load("model.layers.1.mlp.down_proj.lora_A.weight")
	if err != nil || shape[0] != 8 || shape[1] != 128 {
		t.Fatalf("%v %v", shape, err)
	}
	bound := 1 / math.Sqrt(128)
	var sum, sq float64
	for _, v := range a {
		if math.Abs(float64(v)) > bound {
			t.Fatalf("A value %v outside ±%v", v, bound)
		}
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	n := float64(len(a))
	if mean, variance := sum/n, sq/n; math.Abs(mean) > 0.1*bound || math.Abs(variance-bound*bound/3) > 0.2*bound*bound/3 {
		t.Errorf("A mean %g, variance %g: not U(±%g)", mean, variance, bound)
	}
	b, _, _ := load("model.layers.1.mlp.down_proj.lora_B.weight")
	for _, v := range b {
		if v != 0 {
			t.Fatal("B is not zero")
		}
	}
	a2, _, _ := InitLoader(cfg, ad.Specs, 7, "F32")("model.layers.1.mlp.down_proj.lora_A.weight")
	a3, _, _ := InitLoader(cfg, ad.Specs, 8, "F32")("model.layers.1.mlp.down_proj.lora_A.weight")
	if relErr(a2, a) != 0 || relErr(a3, a) == 0 {
		t.Error("init is not a function of the seed")
	}
	ab, _, _ := InitLoader(cfg, ad.Specs, 7, "BF16")("model.layers.1.mlp.down_proj.lora_A.weight")
	for i, v := range ab {
		if math.Float32bits(v)&0xffff != 0 || math.Abs(float64(v-a[i])) > math.Abs(float64(a[i]))/128 {
			t.Fatalf("bf16 init %v from %v", v, a[i])
		}
	}
	if _, _, err := load("model.layers.0.self_attn.k_proj.lora_A.weight"); err == nil {
		t.Error("loader serves an untargeted module")
	}
	for _, bad := range []AdapterOptions{{Rank: 0, Alpha: 1, Targets: []string{"q_proj"}}, {Rank: 4, Alpha: 0, Targets: []string{"q_proj"}},
		{Rank: 4, Alpha: 8, Targets: []string{"lm_head"}}, {Rank: 4, Alpha: 8, Targets: []string{"q_proj"}, Dropout: 1}} {
		if _, err := NewAdapter(cfg, bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	all, _ := NewAdapter(cfg, AdapterOptions{Rank: 4, Alpha: 8, Targets: []string{"all-linear"}, RSLoRA: true})
	if len(all.Specs) != 14 || all.Specs[0].Scale != 4 {
		t.Errorf("all-linear rsLoRA: %d specs, scale %v", len(all.Specs), all.Specs[0].Scale)
	}
}
