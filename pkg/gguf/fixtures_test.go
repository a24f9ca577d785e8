package gguf

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
)

// fixtures returns the shared fixtures directory, walking up from the package
// directory; it skips the test if there is none.
func fixtures(t *testing.T) string {
	t.Helper()
	return testbin.Fixtures(t)
}

// safetensorsNames reads the tensor names of a safetensors file (header only).
func safetensorsNames(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n uint64
	if err := binary.Read(f, binary.LittleEndian, &n); err != nil || n > 1<<24 {
		t.Fatalf("header length %d: %v", n, err)
	}
	var hdr map[string]json.RawMessage
	if err := json.NewDecoder(&limited{f, int64(n)}).Decode(&hdr); err != nil {
		t.Fatal(err)
	}
	var names []string
	for k := range hdr {
		if k != "__metadata__" {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return names
}

type limited struct {
	f *os.File
	n int64
}

func (l *limited) Read(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	k, err := l.f.Read(p)
	l.n -= int64(k)
	return k, err
}

// TestLlamaNamesFixture maps every tensor of the tiny Llama fixture (2 layers, untied):
// 2 + 9 per layer + 1 GGUF tensors, all distinct.
func TestLlamaNamesFixture(t *testing.T) {
	names := safetensorsNames(t, filepath.Join(fixtures(t), "peft", "tiny", "model.safetensors"))
	seen := map[string]bool{}
	for _, hf := range names {
		g, err := LlamaTensorName(hf)
		if err != nil {
			t.Fatal(err)
		}
		if g == "" {
			continue
		}
		if seen[g] {
			t.Fatalf("%s: duplicate GGUF name %s", hf, g)
		}
		seen[g] = true
	}
	if len(seen) != 3+2*9 {
		t.Errorf("%d GGUF tensors from %d HF tensors, want 21", len(seen), len(names))
	}
	for _, want := range []string{"token_embd.weight", "output.weight", "output_norm.weight", "blk.1.ffn_down.weight", "blk.0.attn_k.weight"} {
		if !seen[want] {
			t.Errorf("missing %s", want)
		}
	}
}
