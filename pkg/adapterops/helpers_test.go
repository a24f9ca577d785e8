package adapterops

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/linalg"
	"github.com/lorakit/lorakit/pkg/merge"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// tmod is a module of a test adapter, in PEFT layout.
type tmod struct {
	path      string
	in, out   int
	a, b      []float32 // A r×in, B out×r
	embedding bool
}

func (m tmod) rank() int { return len(m.a) / m.in }

func randVec(rng *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * scale)
	}
	return v
}

// randModule returns a module of rank r with random A and B.
func randModule(rng *rand.Rand, path string, in, out, r int) tmod {
	return tmod{path: path, in: in, out: out, a: randVec(rng, r*in, 0.3), b: randVec(rng, out*r, 0.2)}
}

func f32bytes(v []float32) []byte {
	b, err := encode(v, dtype.F32)
	if err != nil {
		panic(err)
	}
	return b
}

// f32Tensor is a float32 tensor to write.
func f32Tensor(shape []int64, v []float32) safetensors.Tensor {
	return safetensors.Tensor{DType: dtype.F32, Shape: shape, Data: f32bytes(v)}
}

// writeAdapter writes a PEFT adapter folder: adapter_config.json from cfg
// (merged over r, lora_alpha, target_modules and peft_type defaults) and the
// modules' tensors plus extra ones.
func writeAdapter(t testing.TB, dir string, cfg map[string]any, mods []tmod, extra map[string]safetensors.Tensor) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	full := map[string]any{"peft_type": "LORA", "r": 8, "lora_alpha": 8, "target_modules": []string{"q_proj", "v_proj"}}
	for k, v := range cfg {
		full[k] = v
	}
	js, _ := json.MarshalIndent(full, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}
	ts := map[string]safetensors.Tensor{}
	for _, m := range mods {
		r := m.rank()
		an, bn := outNames(m.path, peft.KindLinear)
		if m.embedding {
			an, bn = outNames(m.path, peft.KindEmbedding)
		}
		ts[an] = safetensors.Tensor{DType: dtype.F32, Shape: []int64{int64(r), int64(m.in)}, Data: f32bytes(m.a)}
		ts[bn] = safetensors.Tensor{DType: dtype.F32, Shape: []int64{int64(m.out), int64(r)}, Data: f32bytes(m.b)}
	}
	for k, v := range extra {
		ts[k] = v
	}
	var buf bytes.Buffer
	if err := safetensors.Encode(&buf, map[string]string{"format": "pt"}, ts); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, AdapterFile), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// loaded is an adapter read back for checks.
type loaded struct {
	src  source
	cfg  *peft.Config
	mods map[string]*factors
}

func load(t testing.TB, path string) *loaded {
	t.Helper()
	src, err := openAdapter(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	l := &loaded{src: src, cfg: src.Config(), mods: map[string]*factors{}}
	for _, w := range src.Analysis().Warnings {
		t.Errorf("%s: %s", path, w)
	}
	for _, m := range src.Analysis().Modules {
		f, err := readFactors(src, m)
		if err != nil {
			t.Fatal(err)
		}
		l.mods[m.Path] = f
	}
	return l
}

// delta returns the dense ΔW = s·B·A of a module in float64 (out×in).
func (f *factors) delta() *linalg.Dense {
	b, a := f.matrices()
	return linalg.Mul(b, a)
}

// tmodDelta is s·B·A of a test module.
func tmodDelta(m tmod, s float64) *linalg.Dense {
	r := m.rank()
	return linalg.Mul(dense64(m.b, m.out, r, s), dense64(m.a, r, m.in, 1))
}

// addScaled sets x += c·y.
func addScaled(x *linalg.Dense, c float64, y *linalg.Dense) {
	for i, v := range y.Data {
		x.Data[i] += c * v
	}
}

// relErr returns ‖x − y‖_F/‖y‖_F.
func relErr(x, y *linalg.Dense) float64 {
	var d, n float64
	for i := range x.Data {
		e := x.Data[i] - y.Data[i]
		d += e * e
		n += y.Data[i] * y.Data[i]
	}
	return math.Sqrt(d / n)
}

// bestRankK returns the best rank-k approximation of x from its dense SVD.
func bestRankK(x *linalg.Dense, k int) (*linalg.Dense, []float64) {
	s := linalg.ComputeSVD(x)
	out := linalg.NewDense(x.Rows, x.Cols, nil)
	for j := 0; j < k && j < len(s.S); j++ {
		for i := 0; i < x.Rows; i++ {
			for l := 0; l < x.Cols; l++ {
				out.Data[i*x.Cols+l] += s.U.At(i, j) * s.S[j] * s.V.At(l, j)
			}
		}
	}
	return out, s.S
}

// mustCombine runs Combine and fails the test on error.
func mustCombine(t testing.TB, o CombineOptions) *CombineReport {
	t.Helper()
	rep, err := Combine(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// mergeBase merges adapters into a base model with pkg/merge and returns
// the merged tensors.
func mergeBase(t testing.TB, base string, ins []Input) map[string][]float32 {
	t.Helper()
	src, err := checkpoint.Open(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var ads []*merge.Adapter
	defer func() {
		for _, a := range ads {
			a.Close()
		}
	}()
	for _, in := range ins {
		a, err := merge.OpenAdapter(in.Path, nil, in.Weight, merge.AdapterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ads = append(ads, a)
	}
	p, err := merge.Prepare(src, ads, merge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	out := filepath.Join(t.TempDir(), "merged")
	if _, err := p.Run(context.Background(), out); err != nil {
		t.Fatal(err)
	}
	vals, _ := readTensors(t, out)
	return vals
}

// fileBytes returns a file's contents.
func fileBytes(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o644) }
