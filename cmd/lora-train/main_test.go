package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/internal/teststream"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

func run(t *testing.T, stdin []byte, args ...string) (stdout, stderr string) {
	t.Helper()
	var so, se bytes.Buffer
	if code := cli.Run(tool(), args, cli.Streams{Stdin: bytes.NewReader(stdin), Stdout: &so, Stderr: &se}); code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, se.String())
	}
	return so.String(), se.String()
}

// TestStreams: data from the given stdin, the adapter to the given stdout
// (the summary then on stderr); eval and bench JSON start with "schema".
func TestStreams(t *testing.T) {
	data := []byte("{\"input_ids\": [1, 5, 9, 13, 17, 21]}\n{\"input_ids\": [2, 4, 6, 8, 10, 12]}\n")
	out, summary := run(t, data, "--base", "../../examples/tiny-llama", "--data", "-", "-o", "-", "--max-steps", "2",
		"--batch", "2", "--seq", "16", "--device", "cpu", "--threads", "1")
	if _, _, err := safetensors.ReadHeader(strings.NewReader(out), int64(len(out))); err != nil {
		t.Fatalf("stdout is not an adapter: %v", err)
	}
	if !strings.Contains(summary, "trained 2 updates") {
		t.Errorf("summary %q", summary)
	}
	path := filepath.Join(t.TempDir(), "data.jsonl")
	os.WriteFile(path, data, 0o644)
	if out, _ = run(t, teststream.Stream(t, "../../examples/tiny-llama"), "eval", "--base", "-", "--data", path, "--json"); !testbin.StartsWithSchema(out) {
		t.Errorf("eval: %s", out)
	}
	if out, _ = run(t, nil, "bench", "--shape", "../../examples/tiny-llama/config.json", "--seq", "16", "--steps", "1", "--json"); !testbin.StartsWithSchema(out) {
		t.Errorf("bench: %s", out)
	}
}
