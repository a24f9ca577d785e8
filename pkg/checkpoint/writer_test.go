package checkpoint

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// copyTo rewrites src through a Writer at path with the given shards.
func copyTo(t *testing.T, src *Source, path string, shards []Shard) {
	t.Helper()
	w, err := Create(path, src.Files, shards)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range w.Order() {
		d, err := src.Data(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteTensor(ti.Name, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestWriterLayouts(t *testing.T) {
	src, err := Open(filepath.Join(fixtures(t), "peft/tiny"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	half := len(src.Tensors) / 2
	sharded := []Shard{
		{Name: "model-00001-of-00002.safetensors", Tensors: src.Tensors[:half]},
		{Name: "model-00002-of-00002.safetensors", Tensors: src.Tensors[half:]},
	}
	dir := t.TempDir()
	for _, c := range []struct {
		path   string
		shards []Shard
		kind   Kind
		n      int
	}{
		{filepath.Join(dir, "sharded"), sharded, KindFolder, 2},
		{filepath.Join(dir, "folder"), src.Shards, KindFolder, 1},
		{filepath.Join(dir, "one.safetensors"), sharded, KindFile, 1},
		{filepath.Join(dir, "one.safetensors.zst"), sharded, KindStream, 1},
	} {
		copyTo(t, src, c.path, c.shards)
		got, err := Open(c.path, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		if got.Kind != c.kind || len(got.Shards) != c.n || len(got.Tensors) != len(src.Tensors) {
			t.Fatalf("%s: kind %v, %d shards, %d tensors", c.path, got.Kind, len(got.Shards), len(got.Tensors))
		}
		if !bytes.Equal(got.Files["config.json"], src.Files["config.json"]) {
			t.Fatalf("%s: config.json not carried", c.path)
		}
		got.Each(func(ti safetensors.TensorInfo, data []byte) error {
			want, _ := src.Data(ti.Name)
			if !bytes.Equal(data, want) {
				t.Errorf("%s: tensor %s differs", c.path, ti.Name)
			}
			return nil
		})
		got.Close()
	}
	// The single-shard folder reproduces the fixture's model.safetensors byte for byte.
	a, _ := os.ReadFile(filepath.Join(dir, "folder", "model.safetensors"))
	b, _ := os.ReadFile(filepath.Join(fixtures(t), "peft/tiny/model.safetensors"))
	if !bytes.Equal(a, b) {
		t.Fatal("folder output differs from the transformers-written file")
	}
	// No temporary files are left beside the outputs.
	es, _ := os.ReadDir(dir)
	if len(es) != 4 {
		t.Fatalf("output folder holds %d entries", len(es))
	}
}

// TestWriterPieces: tensors written in pieces of any size, across tensor
// and shard boundaries, with zero-byte tensors and a shard holding only
// those, give the same files as whole-tensor writes.
func TestWriterPieces(t *testing.T) {
	mk := func(name string, n int64) safetensors.TensorInfo {
		return safetensors.TensorInfo{Name: name, DType: dtype.F32, Shape: []int64{n}}
	}
	shards := func() []Shard {
		return []Shard{
			{Name: "a.safetensors", Tensors: []safetensors.TensorInfo{mk("a1", 3), mk("a0", 0), mk("a2", 5)}},
			{Name: "b.safetensors", Tensors: []safetensors.TensorInfo{mk("b0", 0)}},
			{Name: "c.safetensors", Tensors: []safetensors.TensorInfo{mk("c1", 7), mk("c2", 0)}},
		}
	}
	data := func(t safetensors.TensorInfo) []byte {
		b := make([]byte, dataSize(t))
		for i := range b {
			b[i] = byte(len(t.Name)*31 + i)
		}
		return b
	}
	dir := t.TempDir()
	files := map[string][]byte{"config.json": []byte("{}")}
	whole, err := Create(filepath.Join(dir, "whole"), files, shards())
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, ti := range whole.Order() {
		if err := whole.WriteTensor(ti.Name, data(ti)); err != nil {
			t.Fatal(err)
		}
		all = append(all, data(ti)...)
	}
	if err := whole.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, piece := range []int{1, 2, 5, 100} {
		out := filepath.Join(dir, fmt.Sprint("pieces", piece))
		w, err := Create(out, files, shards())
		if err != nil {
			t.Fatal(err)
		}
		for p := all; len(p) > 0; {
			k := min(piece, len(p))
			if _, err := w.Write(p[:k]); err != nil {
				t.Fatal(err)
			}
			p = p[k:]
		}
		if _, err := w.Write([]byte{1}); err == nil {
			t.Error("a byte beyond the last tensor was accepted")
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"a.safetensors", "b.safetensors", "c.safetensors", safetensors.IndexFile} {
			a, _ := os.ReadFile(filepath.Join(dir, "whole", name))
			b, _ := os.ReadFile(filepath.Join(out, name))
			if len(a) == 0 || !bytes.Equal(a, b) {
				t.Errorf("pieces of %d: %s differs", piece, name)
			}
		}
	}
}
