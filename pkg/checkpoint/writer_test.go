package checkpoint

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

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
