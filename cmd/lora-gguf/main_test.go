package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/internal/teststream"
	"github.com/lorakit/lorakit/pkg/gguf"
)

// TestStreams: a model from the given stdin, the GGUF to the given stdout,
// the report on stderr as JSON starting with "schema".
func TestStreams(t *testing.T) {
	var so, se bytes.Buffer
	code := cli.Run(tool(), []string{"-", "-o", "-", "-t", "q8_0", "--json"},
		cli.Streams{Stdin: bytes.NewReader(teststream.Stream(t, "../../examples/tiny-llama")), Stdout: &so, Stderr: &se})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, se.String())
	}
	if !strings.HasPrefix(so.String(), gguf.Magic) {
		t.Error("stdout is not a GGUF file")
	}
	// After the warning about the missing tokenizer, the report.
	if report := se.String()[strings.Index(se.String(), "{"):]; !testbin.StartsWithSchema(report) {
		t.Errorf("report: %s", se.String())
	}
}
