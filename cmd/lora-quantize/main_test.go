package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/internal/teststream"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// run runs lora-quantize in process with the given stdin.
func run(stdin []byte, args ...string) (code int, stdout, stderr string) {
	var so, se bytes.Buffer
	code = cli.Run(tool(), args, cli.Streams{Stdin: bytes.NewReader(stdin), Stdout: &so, Stderr: &se})
	return code, so.String(), se.String()
}

// TestStreams: '-' in and out go through the streams the CLI is given, the
// report goes to stderr then, as one JSON object starting with "schema"
// (and the old "version" key, kept for one release).
func TestStreams(t *testing.T) {
	in := teststream.Stream(t, "../../examples/tiny-llama")
	code, out, errOut := run(in, "-", "-o", "-", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	h, _, err := safetensors.ReadHeader(strings.NewReader(out), int64(len(out)))
	if err != nil {
		t.Fatalf("stdout is not safetensors: %v", err)
	}
	if _, ok := h.Info("model.layers.0.mlp.up_proj.weight.quant_state.bitsandbytes__nf4"); !ok {
		t.Error("the output has no 4-bit weights")
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(errOut), &rep); err != nil || !testbin.StartsWithSchema(errOut) || rep["version"] != 1.0 {
		t.Errorf("report on stderr: %v\n%s", err, errOut)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--dequantize", "x", "-o", "y", "--type", "fp4"},
		{"x", "-o", "y", "--dtype", "f16"},
		{"x", "-o", "y", "--blocksize", "48"},
		{"x", "-o", "y", "--threads", "-1"},
	} {
		if code, _, _ := run(nil, args...); code != cli.ExitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, cli.ExitUsage)
		}
	}
}
