package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/internal/testbin"
)

// TestDiff: text and JSON (starting with "schema"), the .bin adapter
// against its safetensors original (identical), and the exit codes.
func TestDiff(t *testing.T) {
	run := func(args ...string) (int, string, string) {
		var so, se bytes.Buffer
		code := cli.Run(tool(), args, cli.Streams{Stdin: bytes.NewReader(nil), Stdout: &so, Stderr: &se})
		return code, so.String(), se.String()
	}
	a, bin := "../../examples/tiny-lora", "../../pkg/torchbin/testdata/tiny-lora"
	code, so, se := run("diff", a, bin)
	if code != 0 || !strings.Contains(so, "compared 14 modules (14 identical)") || !strings.Contains(so, "most changed:") ||
		!strings.Contains(so, "least changed:") {
		t.Errorf("exit %d\n%s%s", code, so, se)
	}
	fx := testbin.Fixtures(t)
	code, so, se = run("diff", "--json", fx+"/peft/lora", fx+"/peft/train/plain/final")
	if code != 0 || !testbin.StartsWithSchema(so) || !strings.Contains(so, `"only_in_a": [
    "model.layers.0.mlp.down_proj"`) {
		t.Errorf("--json: exit %d\n%s%s", code, so, se)
	}
	if code, _, se = run("diff", a, "../../examples/tiny-llama"); code != 3 || !strings.Contains(se, "tiny-llama") {
		t.Errorf("a model: exit %d, %s", code, se)
	}
	if code, _, se = run("diff", a); code != 2 {
		t.Errorf("one adapter: exit %d, %s", code, se)
	}
	if code, so, _ = run("diff", "--help"); code != 0 || !strings.Contains(so, "cosine") {
		t.Errorf("--help: exit %d", code)
	}
}
