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

// TestSubcommands: --help lists the commands and keeps the merge as the
// default; combine, resize and convert run, with their exit codes.
func TestSubcommands(t *testing.T) {
	code, so, _ := run(nil, "--help")
	for _, c := range []string{"merge", "combine", "resize", "convert", "Exit codes:"} {
		if code != 0 || !strings.Contains(so, c) {
			t.Errorf("--help (exit %d) does not list %q:\n%s", code, c, so)
		}
	}
	for _, sub := range []string{"merge", "combine", "resize", "convert"} {
		if code, so, _ := run(nil, sub, "--help"); code != 0 || !strings.Contains(so, "--output") {
			t.Errorf("%s --help: exit %d\n%s", sub, code, so)
		}
	}
	dir := t.TempDir()
	a := "../../examples/tiny-lora"
	bin := "../../pkg/torchbin/testdata/tiny-lora"
	cases := []struct {
		args []string
		code int
		out  string // in stdout
		err  string // in stderr
	}{
		{[]string{"combine", "--adapter", a + ":0.6", "--adapter", bin + ":0.4", "--method", "cat", "-o", filepath.Join(dir, "cat")}, 0, "r = lora_alpha = 16", ""},
		{[]string{"combine", "--adapter", a, "--adapter", bin, "--weight", "0.5,0.5", "--method", "ties_svd", "--density", "0.5", "--svd-rank", "4", "-o", filepath.Join(dir, "t.safetensors"), "--json"}, 0, `"method": "ties_svd"`, ""},
		{[]string{"combine", "--adapter", a + ":2", "--adapter", a, "--weight", "1,1", "--method", "cat", "-o", filepath.Join(dir, "x")}, 2, "", "--weight"},
		{[]string{"combine", "--adapter", a, "--adapter", a, "--method", "nope", "-o", filepath.Join(dir, "x")}, 2, "", "unknown method"},
		{[]string{"combine", "--adapter", a, "--adapter", a, "--method", "ties", "-o", filepath.Join(dir, "x")}, 2, "", "density"},
		{[]string{"combine", "--adapter", a, "--adapter", "../../examples/tiny-llama", "--method", "cat", "-o", filepath.Join(dir, "x")}, 3, "", "tiny-llama"},
		{[]string{"resize", "--adapter", bin, "--rank", "2", "-o", filepath.Join(dir, "r2")}, 0, "new rank", ""},
		{[]string{"resize", "--adapter", a, "--energy", "0.9", "--rank", "6", "-o", filepath.Join(dir, "re"), "--json"}, 0, `"method": "energy"`, ""},
		{[]string{"resize", "--adapter", a, "--energy", "0.9", "--threshold", "0.1", "-o", filepath.Join(dir, "x")}, 2, "", "one rank rule"},
		{[]string{"resize", "--adapter", a, "-o", filepath.Join(dir, "x")}, 2, "", "--rank"},
		{[]string{"resize", "--adapter", a, "--rank", "2", "-o", "-", "--json"}, 2, "", "--json"},
		{[]string{"convert", bin, "-o", filepath.Join(dir, "conv")}, 0, "adapter (pytorch)", ""},
		{[]string{"convert", "../../pkg/torchbin/testdata/evil/os_system.bin", "-o", filepath.Join(dir, "x")}, 3, "", "os.system"},
		{[]string{"--base", "../../pkg/torchbin/testdata/evil/eval.bin", "--adapter", a, "-o", filepath.Join(dir, "x")}, 3, "", "builtins.eval"},
		{[]string{"--base", "../../examples/tiny-llama", "--adapter", "../../pkg/torchbin/testdata/legacy.bin", "-o", filepath.Join(dir, "x")}, 3, "", "legacy.bin"},
	}
	for _, c := range cases {
		code, so, se := run(nil, c.args...)
		if code != c.code || !strings.Contains(so, c.out) || !strings.Contains(se, c.err) {
			t.Errorf("%v: exit %d (want %d)\nstdout %s\nstderr %s", c.args, code, c.code, so, se)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Error("a failed command left an output")
	}
}
