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

func run(stdin []byte, args ...string) (code int, stdout, stderr string) {
	var so, se bytes.Buffer
	code = cli.Run(tool(), args, cli.Streams{Stdin: bytes.NewReader(stdin), Stdout: &so, Stderr: &se})
	return code, so.String(), se.String()
}

// TestStreams: the base from the given stdin, the merge to the given
// stdout, byte for byte what a file output holds.
func TestStreams(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "merged.safetensors")
	if code, _, e := run(nil, "--base", "../../examples/tiny-llama", "--adapter", "../../examples/tiny-lora", "-o", file, "-q"); code != 0 {
		t.Fatalf("exit %d: %s", code, e)
	}
	code, out, e := run(teststream.Stream(t, "../../examples/tiny-llama"), "--base", "-", "--adapter", "../../examples/tiny-lora", "-o", "-", "-q")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, e)
	}
	want, _ := os.ReadFile(file)
	if _, _, err := safetensors.ReadHeader(strings.NewReader(out), int64(len(out))); err != nil || out != string(want) {
		t.Errorf("stdout differs from the file output (%v)", err)
	}
}

// TestJSONAndWorkers: --json starts with "schema"; --workers still works,
// with a deprecation warning.
func TestJSONAndWorkers(t *testing.T) {
	out := filepath.Join(t.TempDir(), "m")
	code, so, se := run(nil, "--base", "../../examples/tiny-llama", "--adapter", "../../examples/tiny-lora", "-o", out, "--json", "--workers", "2")
	if code != 0 || !testbin.StartsWithSchema(so) {
		t.Fatalf("exit %d, stdout %s, stderr %s", code, so, se)
	}
	if !strings.Contains(se, "--workers is deprecated") || !strings.Contains(se, "--threads") {
		t.Errorf("no deprecation warning: %q", se)
	}
	if code, _, se = run(nil, "--base", "../../examples/tiny-llama", "--adapter", "../../examples/tiny-lora", "-o", out, "--threads", "2", "-q"); code != 0 || se != "" {
		t.Errorf("--threads: exit %d, stderr %q", code, se)
	}
}
