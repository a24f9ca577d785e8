package export

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/gguf"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// ggufName is the GGUF name of a tensor of the fixtures' tiny Llama.
func ggufName(t testing.TB, hf string) string {
	t.Helper()
	cfg, err := checkpoint.LoadConfig(filepath.Join(testbin.Fixtures(t), "peft", "tiny", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := cfg.GGUF()
	if err != nil {
		t.Fatal(err)
	}
	name, _, err := g.TensorName(hf)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// exportModel plans and writes a model export of path into memory.
func exportModel(t testing.TB, path string, o ModelOptions) ([]byte, *Plan) {
	t.Helper()
	src, err := checkpoint.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p, err := PlanModel(src, o)
	if err != nil {
		t.Fatalf("PlanModel(%s): %v", path, err)
	}
	var buf bytes.Buffer
	if _, err := p.Write(context.Background(), &buf, WriteOptions{}); err != nil {
		t.Fatalf("Write(%s): %v", path, err)
	}
	return buf.Bytes(), p
}

// exportAdapter plans and writes an adapter export into memory.
func exportAdapter(t testing.TB, path, base string, o AdapterOptions) ([]byte, *Plan) {
	t.Helper()
	src, err := checkpoint.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	b, err := OpenBase(base)
	if err != nil {
		t.Fatal(err)
	}
	p, err := PlanAdapter(src, b, o)
	if err != nil {
		t.Fatalf("PlanAdapter(%s): %v", path, err)
	}
	var buf bytes.Buffer
	if _, err := p.Write(context.Background(), &buf, WriteOptions{}); err != nil {
		t.Fatalf("Write(%s): %v", path, err)
	}
	return buf.Bytes(), p
}

func writeFile(t testing.TB, path string, b []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// readGGUF parses a GGUF file held in memory.
func readGGUF(t testing.TB, b []byte) *gguf.Header {
	t.Helper()
	h, err := gguf.ReadHeader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// tensorF32 decodes a tensor of a GGUF file held in memory.
func tensorF32(t testing.TB, b []byte, h *gguf.Header, name string) ([]float32, gguf.TensorInfo) {
	t.Helper()
	ti, ok := h.Tensor(name)
	if !ok {
		t.Fatalf("no tensor %s", name)
	}
	start := h.DataOffset + ti.Offset
	out := make([]float32, ti.NumElements())
	if err := gguf.Dequantize(out, b[start:start+ti.NumBytes()], ti.Type); err != nil {
		t.Fatal(err)
	}
	return out, ti
}

// modifiedJSON returns a JSON object file with some keys replaced.
func modifiedJSON(t testing.TB, path string, set map[string]any) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// copyDir makes a folder holding the files of src, with some replaced.
func copyDir(t testing.TB, src, dst string, replace map[string][]byte) string {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dst, e.Name()), b)
	}
	for name, b := range replace {
		writeFile(t, filepath.Join(dst, name), b)
	}
	return dst
}

// mergeAdapter returns w with every LoRA module of the adapter folder merged in as
// W + s·B·A, s given per module path.
func mergeAdapter(t testing.TB, w refWeights, adapterDir string, scale func(m peft.Module) float64) refWeights {
	t.Helper()
	aw := loadWeights(t, filepath.Join(adapterDir, "adapter_model.safetensors"))
	f, err := safetensors.Open(filepath.Join(adapterDir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []peft.Tensor
	for _, ti := range f.Header.Tensors {
		ts = append(ts, peft.Tensor{Name: ti.Name, Shape: ti.Shape})
	}
	cfg, err := peft.Parse(mustRead(t, filepath.Join(adapterDir, "adapter_config.json")))
	if err != nil {
		t.Fatal(err)
	}
	an, err := peft.Analyze(ts, cfg)
	if err != nil {
		t.Fatal(err)
	}
	out := w.clone()
	for _, m := range an.Modules {
		s := scale(m)
		W := out[m.BaseName()]
		A, B := aw[m.A], aw[m.B]
		r, in, o := m.Rank, int(m.In), int(m.Out)
		for i := range o {
			for j := range in {
				var d float64
				for k := range r {
					d += float64(B[i*r+k]) * float64(A[k*in+j])
				}
				W[i*in+j] = float32(float64(W[i*in+j]) + s*d)
			}
		}
	}
	return out
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeModel writes a model folder: config.json and model.safetensors with the given
// float32 weights stored as dt.
func writeModel(t testing.TB, dir string, config []byte, w refWeights, shapes map[string][]int64, dt dtype.DType) string {
	t.Helper()
	ts := map[string]safetensors.Tensor{}
	for name, v := range w {
		b := make([]byte, len(v)*dt.Size())
		if err := dtype.FromF32(b, v, dt); err != nil {
			t.Fatal(err)
		}
		ts[name] = safetensors.Tensor{DType: dt, Shape: shapes[name], Data: b}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := safetensors.Encode(&buf, map[string]string{"format": "pt"}, ts); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "model.safetensors"), buf.Bytes())
	writeFile(t, filepath.Join(dir, "config.json"), config)
	return dir
}

// shapesOf reads the tensor shapes of a safetensors file.
func shapesOf(t testing.TB, path string) map[string][]int64 {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string][]int64{}
	for _, ti := range f.Header.Tensors {
		m[ti.Name] = ti.Shape
	}
	return m
}

// unpermuteRows undoes the q/k row permutation of a row-major matrix.
func unpermuteRows(t testing.TB, v []float32, rows, heads int) []float32 {
	t.Helper()
	order, err := gguf.LlamaQKRowOrder(rows, heads)
	if err != nil {
		t.Fatal(err)
	}
	cols := len(v) / rows
	out := make([]float32, len(v))
	for r, from := range order {
		copy(out[from*cols:(from+1)*cols], v[r*cols:(r+1)*cols])
	}
	return out
}

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

func hasWarning(ws []string, sub string) bool {
	for _, w := range ws {
		if strings.Contains(w, sub) {
			return true
		}
	}
	return false
}
