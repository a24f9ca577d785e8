package merge

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/lorakit/lorakit/internal/kernels/fma"
	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// fixtures finds shared/fixtures by walking up from the package folder.
func fixtures(t testing.TB) string {
	t.Helper()
	return testbin.Fixtures(t)
}

// f32bytes encodes float32 values little-endian.
func f32bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func tf32(shape []int64, v []float32) safetensors.Tensor {
	return safetensors.Tensor{DType: dtype.F32, Shape: shape, Data: f32bytes(v)}
}

// tensorsOf reads every tensor of a checkpoint as float32 (4-bit tensors
// and other non-float ones are skipped), keyed by name, with dtypes.
func tensorsOf(t testing.TB, path string) (map[string][]float32, map[string]safetensors.TensorInfo) {
	t.Helper()
	src, err := checkpoint.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	vals := map[string][]float32{}
	infos := map[string]safetensors.TensorInfo{}
	err = src.Each(func(ti safetensors.TensorInfo, data []byte) error {
		infos[ti.Name] = ti
		if !ti.DType.IsFloat() {
			return nil
		}
		v := make([]float32, ti.NumElements())
		if err := dtype.ToF32(v, data, ti.DType); err != nil {
			return err
		}
		vals[ti.Name] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return vals, infos
}

// writeModel writes a model folder: config.json and model.safetensors.
func writeModel(t testing.TB, dir string, config map[string]any, tensors map[string]safetensors.Tensor) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if config != nil {
		b, _ := json.MarshalIndent(config, "", "  ")
		if err := os.WriteFile(filepath.Join(dir, "config.json"), append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := safetensors.Encode(&buf, map[string]string{"format": "pt"}, tensors); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeAdapter writes a PEFT adapter folder.
func writeAdapter(t testing.TB, dir string, config map[string]any, tensors map[string]safetensors.Tensor) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	full := map[string]any{"peft_type": "LORA", "r": 8, "lora_alpha": 8, "target_modules": []string{"q_proj"}}
	if _, ok := config["peft_type"]; ok {
		full = map[string]any{}
	}
	for k, v := range config {
		full[k] = v
	}
	b, _ := json.MarshalIndent(full, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := safetensors.Encode(&buf, map[string]string{"format": "pt"}, tensors); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// adapterIn is one --adapter with its weight.
type adapterIn struct {
	path   string
	weight float64
}

// mergeTo merges adapters into base at out and returns the summary.
func mergeTo(t testing.TB, base string, ads []adapterIn, out string, opts Options) *Summary {
	t.Helper()
	s, err := tryMerge(base, ads, out, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tryMerge(base string, ads []adapterIn, out string, opts Options, stdin []byte) (*Summary, error) {
	var in *bytes.Reader
	if stdin != nil {
		in = bytes.NewReader(stdin)
	}
	src, err := checkpoint.Open(base, in)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	var list []*Adapter
	defer func() {
		for _, a := range list {
			a.Close()
		}
	}()
	for _, a := range ads {
		ad, err := OpenAdapter(a.path, in, a.weight, AdapterOptions{})
		if err != nil {
			return nil, err
		}
		list = append(list, ad)
	}
	p, err := Prepare(src, list, opts)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	return p.Run(context.Background(), out)
}

func one(path string) []adapterIn { return []adapterIn{{path, 1}} }

// rng32 is a small deterministic generator of float32 values.
type rng32 struct{ s uint64 }

func (r *rng32) next() float32 {
	r.s = r.s*6364136223846793005 + 1442695040888963407
	// Uniform in [-1, 1) with 24 random bits.
	return float32(int32(r.s>>40)-(1<<23)) / (1 << 23)
}

func (r *rng32) vec(n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = r.next() * scale
	}
	return v
}

// refLoRA is the spec's definition of one LoRA delta element, computed with
// the exact float32 FMA of big.Float: acc = fma chain over k, then
// f32(acc·scale).
func refDelta(b func(k int) float32, a func(k int) float32, r int, scale float32) float32 {
	var acc float32
	for k := 0; k < r; k++ {
		acc = fma.F32(b(k), a(k), acc)
	}
	return float32(acc * scale)
}
