package quantize

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// fixtures returns the shared fixtures directory, walking up from the
// package directory; it skips the test when absent.
func fixtures(t testing.TB) string {
	t.Helper()
	return testbin.Fixtures(t)
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func open(t testing.TB, path string) *checkpoint.Source {
	t.Helper()
	src, err := checkpoint.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}

// stFile is a safetensors file read whole.
type stFile struct {
	set *safetensors.Set
}

func readST(t testing.TB, path string) *stFile {
	t.Helper()
	set, err := safetensors.OpenSet(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { set.Close() })
	return &stFile{set}
}

func (f *stFile) names() []string { return f.set.Names() }

func (f *stFile) info(name string) (safetensors.TensorInfo, bool) {
	ti, _, ok := f.set.Info(name)
	return ti, ok
}

func (f *stFile) data(t testing.TB, name string) []byte {
	t.Helper()
	b, err := f.set.Data(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// get adapts the file for nf4.ParseModule.
func (f *stFile) get(name string) (nf4.Tensor, bool) {
	ti, ok := f.info(name)
	if !ok {
		return nf4.Tensor{}, false
	}
	b, err := f.set.Data(name)
	if err != nil {
		return nf4.Tensor{}, false
	}
	return nf4.Tensor{DType: ti.DType, Shape: ti.Shape, Data: b}, true
}

// modelFile writes tensors (name → float32 values with a shape) as one
// safetensors file of dtype dt, with config.json (when cfg is non-nil) in
// the metadata, and returns its path.
type testTensor struct {
	name  string
	shape []int64
	vals  []float32
	dt    dtype.DType // "" means the file's dtype
}

func writeModel(t testing.TB, dir string, dt dtype.DType, cfg []byte, ts []testTensor) string {
	t.Helper()
	files := map[string][]byte{}
	if cfg != nil {
		files["config.json"] = cfg
	}
	var infos []safetensors.TensorInfo
	data := map[string][]byte{}
	for _, tt := range ts {
		d := dt
		if tt.dt != "" {
			d = tt.dt
		}
		infos = append(infos, safetensors.TensorInfo{Name: tt.name, DType: d, Shape: tt.shape})
		b := make([]byte, len(tt.vals)*d.Size())
		if d.IsFloat() {
			if err := dtype.FromF32(b, tt.vals, d); err != nil {
				t.Fatal(err)
			}
		}
		data[tt.name] = b
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w, err := checkpoint.Create(dir, files, []checkpoint.Shard{{Name: "model.safetensors", Tensors: infos}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range w.Order() {
		if err := w.WriteTensor(ti.Name, data[ti.Name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// randn returns n values ~ N(0, std²), deterministic for seed.
func randn(seed uint64, n int, std float64) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * std)
	}
	return v
}

func f32le(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

// quantizeDir runs Quantize from in to a fresh folder and returns it.
func quantizeDir(t testing.TB, in string, opts Options) (string, *Report) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	rep, err := Quantize(context.Background(), open(t, in), out, opts)
	if err != nil {
		t.Fatal(err)
	}
	return out, rep
}

func dequantizeDir(t testing.TB, in string, opts Options) (string, *Report) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	rep, err := Dequantize(context.Background(), open(t, in), out, opts)
	if err != nil {
		t.Fatal(err)
	}
	return out, rep
}

func sameFile(t testing.TB, a, b string) bool {
	t.Helper()
	return bytes.Equal(readFile(t, a), readFile(t, b))
}

// llamaConfig is a minimal Llama config.json.
func llamaConfig(dt string) []byte {
	return []byte(`{
  "architectures": [
    "LlamaForCausalLM"
  ],
  "dtype": "` + dt + `",
  "hidden_size": 64,
  "model_type": "llama",
  "num_attention_heads": 4,
  "num_hidden_layers": 1,
  "vocab_size": 32
}
`)
}
