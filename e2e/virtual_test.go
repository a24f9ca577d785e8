package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/randmodel"
)

// TestPromptTuning runs prompt and prefix tuning through the binaries on a
// random model, its NF4 form included: lora-train --method prompt with TEXT
// init (and --method prefix) trains a few steps and writes a PEFT folder,
// lora-train eval applies it, lora-inspect reports it, lora-merge and
// lora-gguf refuse it with exit 3 and the reason, and the flags that do not
// apply are usage errors.
func TestPromptTuning(t *testing.T) {
	t.Parallel()
	bins := binDir(t)
	dir := t.TempDir()
	c := randmodel.Tiny("llama", 5)
	model := filepath.Join(dir, "model")
	if err := c.Write(model); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(examples(t), "data", "progressions.jsonl")
	adapter := filepath.Join(dir, "prompt")
	nf4 := filepath.Join(dir, "nf4")
	reason := "prompt-tuning adapters add tokens at run time; they cannot be merged into weights"
	prefix := filepath.Join(dir, "prefix")
	prefixReason := "prefix-tuning adapters add keys and values to every layer's attention at run time; they cannot be merged into weights"
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in stdout (code 0) or stderr
	}{
		{"lora-train", []string{"--base", model, "--data", data, "-o", adapter, "--method", "prompt", "--virtual-tokens", "6",
			"--init-text", "count on", "--max-steps", "3", "--lr", "0.01", "--device", "cpu"}, 0, "adapter written to"},
		{"lora-train", []string{"eval", "--base", model, "--adapter", adapter, "--data", data, "--json"}, 0, `"loss"`},
		{"lora-inspect", []string{adapter}, 0, "method          prompt tuning"},
		{"lora-merge", []string{"--base", model, "--adapter", adapter, "-o", filepath.Join(dir, "merged")}, 3, reason},
		{"lora-gguf", []string{adapter, "--base", model, "-o", filepath.Join(dir, "a.gguf")}, 3, reason},
		{"lora-train", []string{"--base", model, "--data", data, "-o", prefix, "--method", "prefix", "--virtual-tokens", "5",
			"--max-steps", "3", "--device", "cpu", "--grad-checkpoint"}, 0, "adapter written to"},
		{"lora-train", []string{"eval", "--base", model, "--adapter", prefix, "--data", data}, 0, "loss"},
		{"lora-inspect", []string{prefix}, 0, "5 past keys and values of 32 (2 kv heads × head dim 16)"},
		{"lora-merge", []string{"--base", model, "--adapter", prefix, "-o", filepath.Join(dir, "merged")}, 3, prefixReason},
		{"lora-gguf", []string{prefix, "--base", model, "-o", filepath.Join(dir, "p.gguf")}, 3, prefixReason},
		{"lora-train", []string{"--base", model, "--data", data, "-o", filepath.Join(dir, "x"), "--method", "prefix",
			"--virtual-tokens", "4", "--init-text", "a"}, 2, "--init-text is for --method prompt"},
		{"lora-quantize", []string{model, "-o", nf4}, 0, ""},
		{"lora-train", []string{"--base", nf4, "--data", data, "-o", filepath.Join(dir, "qprompt"), "--method", "prompt",
			"--virtual-tokens", "4", "--max-steps", "2", "--device", "cpu"}, 0, "adapter written to"},
		{"lora-train", []string{"--base", nf4, "--data", data, "-o", filepath.Join(dir, "qprefix"), "--method", "prefix",
			"--virtual-tokens", "4", "--max-steps", "2", "--device", "cpu"}, 0, "adapter written to"},
		{"lora-train", []string{"--base", model, "--data", data, "-o", filepath.Join(dir, "x"), "--method", "prompt",
			"--virtual-tokens", "4", "--rank", "4"}, 2, "--method prompt takes no --rank"},
		{"lora-train", []string{"--base", model, "--data", data, "-o", filepath.Join(dir, "x"), "--method", "prompt",
			"--virtual-tokens", "4", "--pack"}, 2, "--pack with --method prompt"},
		{"lora-train", []string{"--base", model, "--data", data, "-o", filepath.Join(dir, "x"), "--method", "prompt"}, 2,
			"needs --virtual-tokens"},
		{"lora-train", []string{"--base", model, "--data", data, "-o", filepath.Join(dir, "x"), "--virtual-tokens", "4"}, 2,
			"are for --method prompt"},
	} {
		r := run(t, dir, bins, nil, tc.name, tc.args...)
		out := r.stdout
		if tc.code != 0 {
			out = r.stderr
		}
		if r.code != tc.code || !strings.Contains(out, tc.want) {
			t.Fatalf("%s %v: exit %d, want %d with %q\nstdout: %s\nstderr: %s", tc.name, tc.args, r.code, tc.code, tc.want, r.stdout, r.stderr)
		}
	}
	r := run(t, dir, bins, nil, "lora-inspect", adapter, "--json")
	var rep struct {
		Prompt struct {
			Method        string  `json:"method"`
			VirtualTokens int     `json:"virtual_tokens"`
			TokenDim      int     `json:"token_dim"`
			Init          string  `json:"init"`
			InitText      string  `json:"init_text"`
			Percent       float64 `json:"percent_of_base"`
		} `json:"prompt_learning"`
		Trainable int64    `json:"trainable_params"`
		Warnings  []string `json:"warnings"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatal(err, r.stdout)
	}
	if p := rep.Prompt; p.Method != "prompt tuning" || p.VirtualTokens != 6 || p.TokenDim != c.Hidden || p.Init != "TEXT" ||
		p.InitText != "count on" || p.Percent <= 0 || rep.Trainable != int64(6*c.Hidden) || len(rep.Warnings) != 0 {
		t.Errorf("lora-inspect --json: %+v", rep)
	}
}
