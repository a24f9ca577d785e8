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
