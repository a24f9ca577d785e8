package checkpoint

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

func fixtures(t testing.TB) string {
	t.Helper()
	return testbin.Fixtures(t)
}

func TestBuiltinShapes(t *testing.T) {
	cases := []struct {
		name  string
		total int64
		kv    int
		tied  bool
		rope  float64
	}{
		{"llama3-8b", 8_030_261_248, 8, false, 8},
		{"llama3.2-1b", 1_235_814_400, 8, true, 32},
	}
	for _, c := range cases {
		cfg, err := LoadConfig(c.name)
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Params().Total(); got != c.total {
			t.Errorf("%s: %d parameters, want %d", c.name, got, c.total)
		}
		if cfg.NumKVHeads != c.kv || cfg.TieWordEmbeddings != c.tied || cfg.RopeScaling == nil || cfg.RopeScaling.Factor != c.rope || cfg.RopeTheta != 500000 {
			t.Errorf("%s: parsed %+v", c.name, cfg)
		}
	}
}

func TestConfigLayouts(t *testing.T) {
	v5 := `{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":256,
	"rope_parameters":{"rope_type":"llama3","rope_theta":500000.0,"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}}`
	c, err := ParseConfig([]byte(v5))
	if err != nil {
		t.Fatal(err)
	}
	if c.RopeTheta != 500000 || c.RopeScaling == nil || c.RopeScaling.OriginalMaxPositionEmbeddings != 8192 || c.NumKVHeads != 4 || c.HeadDim != 16 {
		t.Fatalf("v5 layout parsed as %+v %+v", c, c.RopeScaling)
	}
	v4legacy := strings.Replace(v5, `"rope_parameters":{"rope_type":"llama3","rope_theta":500000.0,`, `"rope_theta":1e6,"rope_scaling":{"type":"llama3",`, 1)
	c, err = ParseConfig([]byte(v4legacy))
	if err != nil || c.RopeTheta != 1e6 || c.RopeScaling == nil {
		t.Fatalf("v4 layout: %v %+v", err, c)
	}
	bad := []struct {
		js   string
		want error
	}{
		{`{"model_type":"gpt2"}`, ErrUnsupported},
		{`{}`, ErrConfig},
		{`{"model_type":"llama","hidden_size":64}`, ErrConfig},
		{strings.Replace(v5, `"vocab_size":256`, `"vocab_size":256,"num_key_value_heads":3`, 1), ErrConfig},
		{strings.Replace(v5, `"llama3"`, `"yarn"`, 1), ErrUnsupported},
		{`[`, ErrConfig},
	}
	for _, b := range bad {
		if _, err := ParseConfig([]byte(b.js)); !errors.Is(err, b.want) {
			t.Errorf("%s: got %v, want %v", b.js, err, b.want)
		}
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

func FuzzParseConfig(f *testing.F) {
	for _, name := range Shapes() {
		b, _ := shapeFiles.ReadFile("shapes/" + name + ".json")
		f.Add(b)
	}
	f.Add([]byte(`{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":256,"rope_parameters":{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4,"original_max_position_embeddings":8}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		if c.HiddenSize <= 0 || c.NumKVHeads <= 0 || c.NumHeads%c.NumKVHeads != 0 || c.HeadDim <= 0 {
			t.Fatalf("invalid config accepted: %+v", c)
		}
		_ = c.Params().Total()
	})
}
