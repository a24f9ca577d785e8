package checkpoint

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

func fixtures(t testing.TB) string {
	t.Helper()
	return testbin.Fixtures(t)
}

// TestLoadConfig reads a built-in shape by name and a config.json by path
// through the registry, and names the path and the shapes when it fails.
func TestLoadConfig(t *testing.T) {
	cfg, err := LoadConfig("llama3-8b")
	if err != nil || cfg.Params().Total() != 8_030_261_248 || cfg.KVHeads != 8 {
		t.Fatalf("llama3-8b: %v %+v", err, cfg)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "config.json")
	os.WriteFile(good, []byte(`{"model_type":"qwen3","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":32,"vocab_size":256}`), 0o644)
	if cfg, err := LoadConfig(good); err != nil || cfg.Arch.ModelType != "qwen3" || !cfg.QKNorm || cfg.HeadDim != 32 {
		t.Fatalf("qwen3 config: %v %+v", err, cfg)
	}
	bad := filepath.Join(dir, "gpt2.json")
	os.WriteFile(bad, []byte(`{"model_type":"gpt2"}`), 0o644)
	if _, err := LoadConfig(bad); !errors.Is(err, arch.ErrUnsupported) || !strings.Contains(err.Error(), bad) {
		t.Errorf("gpt2: %v", err)
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "qwen3-8b") {
		t.Errorf("missing: %v", err)
	}
}

func TestOpenFolderFileStream(t *testing.T) {
	dir := fixtures(t)
	tiny := filepath.Join(dir, "peft/tiny")
	folder, err := Open(tiny, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer folder.Close()
	if folder.Kind != KindFolder || folder.IsAdapter() || folder.IsQuantized() || len(folder.Tensors) != 21 {
		t.Fatalf("folder: kind %v adapter %v tensors %d", folder.Kind, folder.IsAdapter(), len(folder.Tensors))
	}
	cfg, err := folder.Config()
	if err != nil || cfg.Params().Total() != folder.paramCount() {
		t.Fatalf("config %v: %d params vs %d in tensors", err, cfg.Params().Total(), folder.paramCount())
	}

	// A self-describing single file, then the same as a zstd stream on stdin.
	var buf bytes.Buffer
	w, err := safetensors.NewWriter(&buf, Metadata(folder.Files), folder.Tensors)
	if err != nil {
		t.Fatal(err)
	}
	folder.Each(func(ti safetensors.TensorInfo, data []byte) error { return nil })
	for _, ti := range w.Order() {
		d, _ := folder.Data(ti.Name)
		w.WriteTensor(ti.Name, d)
	}
	w.Close()
	single := filepath.Join(t.TempDir(), "m.safetensors")
	os.WriteFile(single, buf.Bytes(), 0o644)
	file, err := Open(single, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if file.Kind != KindFile || !bytes.Equal(file.Files["config.json"], folder.Files["config.json"]) {
		t.Fatal("single file did not carry config.json")
	}
	var z bytes.Buffer
	zw, _ := safetensors.Compress(&z, safetensors.Zstd)
	zw.Write(buf.Bytes())
	zw.Close()
	stream, err := Open("-", &z)
	if err != nil {
		t.Fatal(err)
	}
	if stream.Kind != KindStream || stream.Random() {
		t.Fatal("stdin is not a stream")
	}
	n := 0
	err = stream.Each(func(ti safetensors.TensorInfo, data []byte) error {
		want, _ := folder.Data(ti.Name)
		if !bytes.Equal(data, want) {
			t.Errorf("tensor %s differs through the stream", ti.Name)
		}
		n++
		return nil
	})
	if err != nil || n != 21 {
		t.Fatalf("streamed %d tensors: %v", n, err)
	}
	if err := stream.Each(func(safetensors.TensorInfo, []byte) error { return nil }); err == nil {
		t.Fatal("a stream was read twice")
	}
}

func (s *Source) paramCount() int64 {
	var n int64
	for _, t := range s.Tensors {
		n += t.NumElements()
	}
	return n
}

func TestOpenAdapterAndQuantized(t *testing.T) {
	dir := fixtures(t)
	a, err := Open(filepath.Join(dir, "peft/lora"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if !a.IsAdapter() || a.Files["adapter_config.json"] == nil {
		t.Fatal("lora fixture not recognized as an adapter")
	}
	q, err := Open(filepath.Join(dir, "bnb/tiny-nf4"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if !q.IsQuantized() || q.IsAdapter() {
		t.Fatal("nf4 fixture not recognized as quantized")
	}
	if _, err := Open(t.TempDir(), nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty folder: %v", err)
	}
}
