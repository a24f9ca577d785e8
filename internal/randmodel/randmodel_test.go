package randmodel

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/model"
)

// TestWrite checks that a model is a pure function of its Config (whatever
// the core count), that Bytes is its data size, that the defaults fill
// config.json, and that Adapter makes an adapter the openers accept.
func TestWrite(t *testing.T) {
	c := Config{Hidden: 32, Intermediate: 48, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 64, DType: dtype.BF16, Shards: 2, Seed: 7}
	dir := t.TempDir()
	write := func(name string, procs int) string {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		out := filepath.Join(dir, name)
		if err := c.Write(out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	a, b := write("a", 1), write("b", 4)
	for _, f := range []string{"config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"} {
		x, err := os.ReadFile(filepath.Join(a, f))
		if err != nil {
			t.Fatal(err)
		}
		if y, _ := os.ReadFile(filepath.Join(b, f)); !bytes.Equal(x, y) {
			t.Errorf("%s differs between 1 and 4 cores", f)
		}
	}
	base, err := model.OpenBase(a, nil, model.BaseOptions{Config: true})
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	var n int64
	for _, ti := range base.Source.Tensors {
		n += ti.NumBytes()
	}
	if n != c.Bytes() {
		t.Errorf("data %d bytes, Bytes() = %d", n, c.Bytes())
	}
	if cfg := base.Config; cfg.HeadDim != 8 || cfg.KVHeads != 2 || cfg.MaxPositions != 2048 {
		t.Errorf("config: head_dim %d, kv heads %d, max positions %d", cfg.HeadDim, cfg.KVHeads, cfg.MaxPositions)
	}
	ad := filepath.Join(dir, "adapter")
	if err := c.Adapter(ad, 4, 1, "q_proj", "down_proj"); err != nil {
		t.Fatal(err)
	}
	an, err := model.OpenAdapter(ad, nil, model.AdapterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer an.Close()
	if got := len(an.Analysis.Modules); got != 2*c.Layers {
		t.Errorf("%d adapter modules, want %d", got, 2*c.Layers)
	}
}
