package peft

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
)

// fixtures returns shared/fixtures/peft, walking up from the package dir.
func fixtures(t testing.TB) string {
	t.Helper()
	return filepath.Join(testbin.Fixtures(t), "peft")
}

// readTensors reads the names and shapes of a safetensors header
// (8-byte little-endian length, then JSON), sorted by name.
func readTensors(t testing.TB, path string) []Tensor {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(b[:8])
	var h map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &h); err != nil {
		t.Fatal(err)
	}
	var ts []Tensor
	for name, raw := range h {
		if name == "__metadata__" {
			continue
		}
		var e struct{ Shape []int64 }
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		ts = append(ts, Tensor{Name: name, Shape: e.Shape})
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Name < ts[j].Name })
	return ts
}
