package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
)

func TestCLI(t *testing.T) {
	bin := testbin.Build(t, "lora-inspect")
	fx := testbin.Fixtures(t)
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.safetensors")
	good, _ := os.ReadFile(filepath.Join(fx, "peft/lora/adapter_model.safetensors"))
	os.WriteFile(corrupt, good[:100], 0o644)
	raw, _ := os.ReadFile(filepath.Join(fx, "peft/tiny/model.safetensors"))

	cases := []struct {
		name  string
		stdin []byte
		args  []string
		code  int
		out   string // substring of stdout
		err   string // substring of stderr
	}{
		{"adapter", nil, []string{filepath.Join(fx, "peft/lora")}, 0, "parameters      16,384", ""},
		{"plan", nil, []string{"plan", "--config", "llama3-8b", "--rank", "16", "--alpha", "32", "--targets", "q_proj,k_proj,v_proj,o_proj"}, 0, "13,631,488 (0.1698% of 8,030,261,248)", ""},
		{"stdin model", raw, []string{"-"}, 0, "source          stream", ""},
		{"corrupt", nil, []string{corrupt}, 3, "", corrupt},
		{"missing config shape", nil, []string{"plan", "--config", "nope"}, 1, "", "nope"},
		{"bad flag", nil, []string{"--frobnicate", "x"}, 2, "", "unknown flag"},
		{"base without deltas", nil, []string{"--base", "x", filepath.Join(fx, "peft/lora")}, 2, "", "--deltas"},
		{"help", nil, []string{"--help"}, 0, "Exit codes:", ""},
		{"plan help", nil, []string{"plan", "--help"}, 0, "activations", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := testbin.Run(t, c.stdin, bin, c.args...)
			if r.Code != c.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.Code, c.code, r.Stdout, r.Stderr)
			}
			if !strings.Contains(r.Stdout, c.out) || !strings.Contains(r.Stderr, c.err) {
				t.Fatalf("stdout %q\nstderr %q", r.Stdout, r.Stderr)
			}
			if strings.Contains(r.Stderr, "goroutine") || strings.Contains(r.Stderr, "panic") {
				t.Fatalf("stack trace on stderr: %s", r.Stderr)
			}
			if c.code == 3 && strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
				t.Fatalf("error is not one line: %q", r.Stderr)
			}
		})
	}
}

func TestJSONSeveralInputs(t *testing.T) {
	bin := testbin.Build(t, "lora-inspect")
	fx := testbin.Fixtures(t)
	r := testbin.Run(t, nil, bin, "--json", filepath.Join(fx, "peft/lora"), filepath.Join(fx, "peft/tiny"), filepath.Join(fx, "bnb/tiny-nf4"))
	if r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	var reports []map[string]any
	if err := json.Unmarshal([]byte(r.Stdout), &reports); err != nil {
		t.Fatal(err)
	}
	kinds := []string{"adapter", "model", "quantized-model"}
	for i, rep := range reports {
		if rep["schema"] != 1.0 || rep["kind"] != kinds[i] {
			t.Errorf("report %d: schema %v kind %v", i, rep["schema"], rep["kind"])
		}
		for _, k := range []string{"total_params", "trainable_params", "bytes"} {
			if _, ok := rep[k]; !ok {
				t.Errorf("report %d lacks %q", i, k)
			}
		}
	}
	if reports[0]["trainable_params"] != 16384.0 || len(reports[0]["modules"].([]any)) != 7 {
		t.Errorf("adapter JSON %v", reports[0])
	}
	q := reports[2]
	if q["quant_type"] != "nf4" || q["blocksize"] != 64.0 || q["double_quant"] != true {
		t.Errorf("quantized JSON %v", q)
	}
	one := testbin.Run(t, nil, bin, "--json", filepath.Join(fx, "peft/lora"))
	var obj map[string]any
	if err := json.Unmarshal([]byte(one.Stdout), &obj); err != nil || obj["kind"] != "adapter" {
		t.Fatalf("single input is not one object: %v", err)
	}
}

// TestPlanEveryShape prints the plan of every built-in shape: the registry's
// verified counts at r = 16, the model line, the targets it accepts, and the
// JSON's architecture and model_type.
func TestPlanEveryShape(t *testing.T) {
	bin := testbin.Build(t, "lora-inspect")
	for _, tc := range []struct {
		shape, targets, params, model string
	}{
		{"llama3-8b", "all-linear", "41,943,040 (0.5223% of 8,030,261,248)", "model_type llama: Llama 2 / 3.x, GGUF llama"},
		{"llama3.2-1b", "q_proj,k_proj,v_proj,o_proj", "3,407,872 (0.2758% of 1,235,814,400)", "model_type llama"},
		{"mistral-7b-v0.3", "all-linear", "41,943,040 (0.5787% of 7,248,023,552)", "model_type mistral: Mistral, GGUF llama"},
		{"qwen2.5-7b", "all-linear", "40,370,176 (0.5301% of 7,615,616,512)", "model_type qwen2: Qwen2 / Qwen2.5, GGUF qwen2"},
		{"qwen3-8b", "q_proj,k_proj,v_proj,o_proj", "15,335,424 (0.1872% of 8,190,735,360)", "model_type qwen3: Qwen3, GGUF qwen3"},
		{"gemma2-9b", "all-linear", "54,018,048 (0.5845% of 9,241,705,984)", "model_type gemma2: Gemma 2, GGUF gemma2"},
		{"gemma3-4b", "all-linear", "29,802,496 (0.7681% of 3,880,263,168)", "model_type gemma3: Gemma 3 (text), GGUF gemma3"},
		{"phi3.5-mini", "qkv_proj,o_proj", "9,437,184 (0.2470% of 3,821,079,552)", "model_type phi3: Phi-3 / Phi-3.5 / Phi-4, GGUF phi3"},
	} {
		r := testbin.Run(t, nil, bin, "plan", "--config", tc.shape, "--targets", tc.targets)
		if r.Code != 0 || !strings.Contains(r.Stdout, "trainable       "+tc.params) || !strings.Contains(r.Stdout, tc.model) ||
			!strings.Contains(r.Stdout, "  targets         ") || !strings.Contains(r.Stdout, "QLoRA (NF4+DQ)") {
			t.Errorf("%s: exit %d\n%s%s", tc.shape, r.Code, r.Stdout, r.Stderr)
		}
		j := testbin.Run(t, nil, bin, "plan", "--config", tc.shape, "--targets", tc.targets, "--json")
		var obj map[string]any
		if err := json.Unmarshal([]byte(j.Stdout), &obj); err != nil || obj["architecture"] == nil || obj["model_type"] == nil {
			t.Errorf("%s: JSON %v %v", tc.shape, err, obj["model_type"])
		}
	}
	if r := testbin.Run(t, nil, bin, "plan", "--config", "phi3.5-mini", "--targets", "q_proj"); r.Code != 2 || !strings.Contains(r.Stderr, "qkv_proj") {
		t.Errorf("q_proj on phi3: exit %d: %s", r.Code, r.Stderr)
	}
}
