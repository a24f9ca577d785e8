package train

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
)

// ia3Config is the adapter_config.json PEFT 0.21 writes for a default
// IA3Config on a Llama model (long-standing keys), for base path base (an
// ASCII path without <, > or &).
func ia3Config(base string) string {
	bp, _ := json.Marshal(base)
	return ia3ConfigRaw(string(bp))
}

// ia3ConfigRaw is ia3Config with the base path as a JSON literal.
func ia3ConfigRaw(base string) string {
	return `{
  "base_model_name_or_path": ` + base + `,
  "fan_in_fan_out": false,
  "feedforward_modules": [
    "down_proj"
  ],
  "inference_mode": true,
  "init_ia3_weights": true,
  "modules_to_save": null,
  "peft_type": "IA3",
  "revision": null,
  "target_modules": [
    "down_proj",
    "k_proj",
    "v_proj"
  ],
  "task_type": "CAUSAL_LM"
}`
}

func TestIA3Config(t *testing.T) {
	cfg := tinyConfig(t)
	a, err := NewIA3Adapter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !a.IsIA3() || len(a.Specs) != 3*cfg.Layers {
		t.Fatalf("%d specs", len(a.Specs))
	}
	for base, literal := range map[string]string{
		"":                  "null",
		"/models/tiny":      `"/models/tiny"`,
		"naïve <&> \"q\"\\": `"na\u00efve <&> \"q\"\\"`, // json.dumps: ensure_ascii
	} {
		a.Config.BaseModelNameOrPath = base
		got, err := a.ConfigJSON()
		if err != nil {
			t.Fatal(err)
		}
		if want := ia3ConfigRaw(literal); string(got) != want {
			t.Errorf("base %q:\n%s\nwant\n%s", base, got, want)
		}
	}
}

func TestIA3EndToEnd(t *testing.T) {
	dir := t.TempDir()
	tiny := fx(t, "peft", "tiny")
	cfg := tinyConfig(t)
	ids := write(t, filepath.Join(dir, "ids.jsonl"), goldenJSONL(loadGolden(t)))
	evalLoss := func(args ...string) float64 {
		t.Helper()
		var rep EvalReport
		if err := json.Unmarshal([]byte(run(t, 0, nil, append([]string{"eval", "--data", ids, "--json"}, args...)...).Stdout), &rep); err != nil {
			t.Fatal(err)
		}
		return rep.Loss
	}
	common := []string{"--base", tiny, "--data", ids, "--method", "ia3", "--lr", "5e-2", "--schedule", "constant",
		"--batch", "2", "--shuffle=false", "--max-steps", "6"}
	out, logf := filepath.Join(dir, "ia3"), filepath.Join(dir, "ia3.jsonl")
	run(t, 0, nil, append(common, "-o", out, "--eval", ids, "--log", logf)...)

	// The loss decreases from the base model's: ones leave logits unchanged.
	l, err := ReadLogFile(logf, nil)
	if err != nil {
		t.Fatal(err)
	}
	steps := l.Steps
	if len(steps) != 6 || steps[5].EvalLoss == nil || l.Run == nil || l.Run.Method != MethodIA3 || l.Run.Rank != 0 {
		t.Fatalf("log: %+v", l)
	}
	baseLoss := evalLoss("--base", tiny)
	if e := math.Abs(steps[0].Loss-baseLoss) / baseLoss; e > 1e-6 {
		t.Errorf("step 1 loss %.9g, base model %.9g: the ones init changed the model", steps[0].Loss, baseLoss)
	}
	for i := 1; i < len(steps); i++ {
		if !(steps[i].Loss < steps[i-1].Loss) {
			t.Errorf("loss did not decrease at step %d: %v -> %v", i+1, steps[i-1].Loss, steps[i].Loss)
		}
	}
	final := *steps[5].EvalLoss
	if !(baseLoss-final > 0.05) {
		t.Errorf("final eval loss %v, base %v", final, baseLoss)
	}

	// Exactly PEFT's keys and shapes, F32, and PEFT's config.
	f := openST(t, filepath.Join(out, AdapterFile))
	want := map[string][]int64{}
	for l := range cfg.Layers {
		want[cfg.ModulePath(l, "k_proj")+".ia3_l"] = []int64{32, 1}
		want[cfg.ModulePath(l, "v_proj")+".ia3_l"] = []int64{32, 1}
		want[cfg.ModulePath(l, "down_proj")+".ia3_l"] = []int64{1, 128}
	}
	if len(f.Header.Tensors) != len(want) {
		t.Errorf("%d tensors, want %d", len(f.Header.Tensors), len(want))
	}
	for _, ti := range f.Header.Tensors {
		name, ok := strings.CutPrefix(ti.Name, "base_model.model.")
		if s, found := want[name]; !ok || !found || !slices.Equal(s, ti.Shape) || ti.DType != "F32" {
			t.Errorf("tensor %s %s %v", ti.Name, ti.DType, ti.Shape)
		}
	}
	if f.Header.Metadata["format"] != "pt" {
		t.Errorf("metadata %v", f.Header.Metadata)
	}
	if got, _ := os.ReadFile(filepath.Join(out, ConfigFile)); string(got) != ia3Config(tiny) {
		t.Errorf("adapter_config.json:\n%s", got)
	}

	// eval --adapter gives the trainer's final eval loss, and the model
	// lora-merge makes (spec §7.4 semantics) gives it within 1e-5.
	if got := evalLoss("--base", tiny, "--adapter", out); got != final {
		t.Errorf("eval --adapter: %.17g, trainer's final eval %.17g", got, final)
	}
	merged := filepath.Join(dir, "merged")
	if r := testbin.Run(t, nil, testbin.Build(t, "lora-merge"), "--base", tiny, "--adapter", out, "-o", merged); r.Code != 0 {
		t.Fatalf("lora-merge: exit %d: %s", r.Code, r.Stderr)
	}
	if got := evalLoss("--base", merged); math.Abs(got-final)/final > 1e-5 {
		t.Errorf("merged model: loss %.9g, adapter %.9g", got, final)
	}

	t.Run("init-from and resume", func(t *testing.T) {
		// --lr 0 from the adapter keeps its values: --init-from reads it back.
		again := filepath.Join(dir, "again")
		run(t, 0, nil, "--base", tiny, "--data", ids, "-o", again, "--init-from", out, "--lr", "0", "--max-steps", "1")
		for _, n := range []string{AdapterFile, ConfigFile} {
			a, _ := os.ReadFile(filepath.Join(out, n))
			b, _ := os.ReadFile(filepath.Join(again, n))
			if len(a) == 0 || !bytes.Equal(a, b) {
				t.Errorf("%s differs after --init-from with --lr 0", n)
			}
		}
		// --method ia3 with a LoRA adapter to start from: the adapter decides.
		r := run(t, 0, nil, "--base", tiny, "--data", ids, "-o", filepath.Join(dir, "lora"), "--method", "ia3",
			"--init-from", fx(t, "peft", "train", "plain", "init"), "--max-steps", "1")
		if !strings.Contains(r.Stderr, "ignoring --method ia3 (the adapter is LORA)") {
			t.Errorf("stderr %q", r.Stderr)
		}
		part := filepath.Join(dir, "part")
		run(t, 0, nil, append(common, "-o", part, "--stop-after", "2", "--save-dir", filepath.Join(dir, "ck"))...)
		run(t, 0, nil, append(common, "-o", part, "--resume", filepath.Join(dir, "ck"))...)
		a, _ := os.ReadFile(filepath.Join(out, AdapterFile))
		b, _ := os.ReadFile(filepath.Join(part, AdapterFile))
		if !bytes.Equal(a, b) {
			t.Error("resumed IA3 adapter differs from the uninterrupted run")
		}
		// A LoRA run does not resume an IA3 checkpoint.
		lora := append(slices.Clone(common[:4]), common[6:]...)
		r = run(t, 3, nil, append(lora, "-o", filepath.Join(dir, "x"), "--resume", filepath.Join(dir, "ck"))...)
		if !strings.Contains(r.Stderr, "differs from this run's") {
			t.Errorf("stderr %q", r.Stderr)
		}
	})

	t.Run("conflicting flags", func(t *testing.T) {
		for _, c := range []struct {
			flags []string
			named string
		}{
			{[]string{"--rank", "8"}, "--rank"}, {[]string{"--alpha", "8"}, "--alpha"}, {[]string{"--dora"}, "--dora"},
			{[]string{"--rslora"}, "--rslora"}, {[]string{"--dropout", "0.1"}, "--dropout"},
			{[]string{"--targets", "q_proj"}, "--targets"}, {[]string{"-r", "4", "--dropout", "0"}, "--rank, --dropout"},
		} {
			r := run(t, 2, nil, append(append(slices.Clone(common), "-o", filepath.Join(dir, "x")), c.flags...)...)
			if !strings.Contains(r.Stderr, "--method ia3 takes no "+c.named+" (") {
				t.Errorf("%v: stderr %q", c.flags, r.Stderr)
			}
		}
		run(t, 2, nil, "--base", tiny, "--data", ids, "-o", filepath.Join(dir, "x"), "--method", "lokr")
		if _, err := os.Stat(filepath.Join(dir, "x")); !os.IsNotExist(err) {
			t.Error("a refused run wrote its output")
		}
	})

	t.Run("refused adapters", func(t *testing.T) {
		tensors, _ := os.ReadFile(filepath.Join(out, AdapterFile))
		for name, conf := range map[string]string{
			"feedforward disagrees": strings.Replace(ia3Config(tiny), `"feedforward_modules": [
    "down_proj"
  ]`, `"feedforward_modules": []`, 1),
			"fan_in_fan_out": strings.Replace(ia3Config(tiny), `"fan_in_fan_out": false`, `"fan_in_fan_out": true`, 1),
			"LORA config":    `{"peft_type": "LORA", "r": 8, "lora_alpha": 8, "target_modules": ["k_proj", "v_proj", "down_proj"]}`,
		} {
			d := filepath.Join(dir, "bad-"+strings.ReplaceAll(name, " ", "-"))
			os.Mkdir(d, 0o755)
			write(t, filepath.Join(d, ConfigFile), conf)
			os.WriteFile(filepath.Join(d, AdapterFile), tensors, 0o644)
			why := map[string]string{"feedforward disagrees": "feedforward_modules disagrees", "fan_in_fan_out": "fan_in_fan_out",
				"LORA config": "is ia3 in a LORA adapter"}[name]
			if _, _, err := OpenAdapter(d, nil, cfg, 0); !errors.Is(err, ErrAdapter) || !strings.Contains(err.Error(), why) {
				t.Errorf("%s: %v, want ErrAdapter (%s)", name, err, why)
			}
		}
	})
}
