package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/internal/teststream"
)

// TestStreams: '-' is read from the stdin the CLI is given; every --json
// report starts with "schema".
func TestStreams(t *testing.T) {
	run := func(stdin []byte, args ...string) (int, string) {
		var so, se bytes.Buffer
		code := cli.Run(tool(), args, cli.Streams{Stdin: bytes.NewReader(stdin), Stdout: &so, Stderr: &se})
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, se.String())
		}
		return code, so.String()
	}
	_, out := run(teststream.Stream(t, "../../examples/tiny-lora"), "--json", "-")
	if !testbin.StartsWithSchema(out) || !strings.Contains(out, `"kind": "adapter"`) || !strings.Contains(out, `"source": "stream"`) {
		t.Errorf("adapter from stdin: %s", out)
	}
	_, out = run(nil, "plan", "--config", "llama3.2-1b", "--json")
	if !testbin.StartsWithSchema(out) {
		t.Errorf("plan: %s", out)
	}
}
