package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/randmodel"
	"github.com/lorakit/lorakit/pkg/arch"
)

// TestUnknownArchitecture runs every tool on a checkpoint whose model_type is
// not in the registry: the generic tools (inspect, quantize, merge) work by
// tensor names, inspect warns about nothing, and every tool that needs the
// architecture refuses with the registry's one sentence.
func TestUnknownArchitecture(t *testing.T) {
	t.Parallel()
	bins := binDir(t)
	dir := t.TempDir()
	c := randmodel.Tiny("llama", 3)
	model, adapter := filepath.Join(dir, "neox"), filepath.Join(dir, "adapter")
	if err := c.Write(model); err != nil {
		t.Fatal(err)
	}
	if err := c.Adapter(adapter, 4, 1); err != nil {
		t.Fatal(err)
	}
	c.Extra = map[string]any{"model_type": "gpt_neox", "architectures": []string{"GPTNeoXForCausalLM"}}
	if err := os.WriteFile(filepath.Join(model, "config.json"), c.ConfigJSON(), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(examples(t), "data", "progressions.jsonl")
	refusal := arch.Unsupported("gpt_neox").Error()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string // in stdout (code 0) or stderr
	}{
		{"lora-inspect", []string{model}, 0, "GPTNeoXForCausalLM (model_type gpt_neox: not in lorakit's registry"},
		{"lora-quantize", []string{model, "-o", filepath.Join(dir, "nf4")}, 0, ""},
		{"lora-merge", []string{"--base", model, "--adapter", adapter, "-o", filepath.Join(dir, "merged")}, 0, ""},
		{"lora-gguf", []string{model, "-o", filepath.Join(dir, "m.gguf")}, 3, refusal},
		{"lora-gguf", []string{adapter, "--base", model, "-o", filepath.Join(dir, "a.gguf")}, 3, refusal},
		{"lora-inspect", []string{"plan", "--config", filepath.Join(model, "config.json")}, 3, refusal},
		{"lora-train", []string{"eval", "--base", model, "--data", data}, 3, refusal},
	} {
		r := run(t, dir, bins, nil, tc.name, tc.args...)
		out := r.stdout
		if tc.code != 0 {
			out = r.stderr
		}
		if r.code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%s %v: exit %d, want %d with %q\nstdout: %s\nstderr: %s", tc.name, tc.args, r.code, tc.code, tc.want, r.stdout, r.stderr)
		}
		if tc.code == 0 && strings.Contains(r.stdout+r.stderr, "warning") {
			t.Errorf("%s %v warns:\n%s%s", tc.name, tc.args, r.stdout, r.stderr)
		}
	}
}

// TestHelpListsArchitectures: the tools that refuse architectures print the
// registry's table in --help, and `lora-inspect plan --help` the targets of each.
func TestHelpListsArchitectures(t *testing.T) {
	t.Parallel()
	bins := binDir(t)
	phi := "phi3         o_proj, qkv_proj, gate_up_proj, down_proj, lm_head, embed_tokens, all-linear"
	for _, tc := range []struct {
		tool string
		args []string
		want []string
	}{
		{"lora-gguf", []string{"--help"}, nil},
		{"lora-train", []string{"--help"}, nil},
		{"lora-inspect", []string{"plan", "--help"}, []string{phi}},
	} {
		r := run(t, t.TempDir(), bins, nil, tc.tool, tc.args...)
		for _, line := range strings.Split(strings.TrimSpace(arch.Table()), "\n") {
			tc.want = append(tc.want, strings.TrimRight(line, " "))
		}
		for _, w := range tc.want {
			if r.code != 0 || !strings.Contains(r.stdout, w) {
				t.Errorf("%s %v: exit %d, lacks %q", tc.tool, tc.args, r.code, w)
			}
		}
	}
}
