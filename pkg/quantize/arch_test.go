package quantize

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/randmodel"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
)

// TestEveryArchitecture quantizes a tiny random checkpoint of every architecture
// of the registry: exactly the weights the registry says QLoRA stores in 4 bits
// (every Linear of the decoder layers, Phi-3's fused qkv_proj and gate_up_proj
// included) become NF4, everything else (embeddings, lm_head, norms, q/k norms,
// biases) is carried unchanged, and dequantizing gives the weights back within
// NF4's step.
func TestEveryArchitecture(t *testing.T) {
	for _, mt := range randmodel.ModelTypes() {
		t.Run(mt, func(t *testing.T) {
			c := randmodel.Tiny(mt, 9)
			c.DType = dtype.BF16
			if mt == "llama" {
				c.Extra["attention_bias"], c.Extra["mlp_bias"] = true, true
			}
			cfg, err := c.Arch()
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			in, out, back := filepath.Join(dir, "in"), filepath.Join(dir, "nf4"), filepath.Join(dir, "back")
			if err := c.Write(in); err != nil {
				t.Fatal(err)
			}
			if _, err := Run(context.Background(), in, out, DefaultOptions()); err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, x := range cfg.Tensors() {
				if x.Quantizable() {
					want = append(want, x.Name)
				}
			}
			q := readST(t, filepath.Join(out, "model.safetensors"))
			var got []string
			orig := readST(t, filepath.Join(in, "model.safetensors"))
			for _, name := range q.names() {
				if _, _, state := nf4.SplitStateKey(name); state {
					continue
				}
				if ti, _ := q.info(name); ti.DType == dtype.U8 {
					n, _ := cfg.TextName(name)
					got = append(got, n)
				} else if string(q.data(t, name)) != string(orig.data(t, name)) {
					t.Errorf("%s changed", name)
				}
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("4-bit weights %v, the registry's quantizable ones %v", got, want)
			}
			if !slices.ContainsFunc(got, func(n string) bool { return strings.Contains(n, "_proj.") }) {
				t.Error("no projection quantized")
			}
			if _, err := Run(context.Background(), out, back, Options{Dequantize: true, DType: dtype.F32}); err != nil {
				t.Fatal(err)
			}
			deq := readST(t, filepath.Join(back, "model.safetensors"))
			for _, name := range orig.names() {
				a, b := f32(t, orig, name), f32(t, deq, name)
				absmax := 0.0
				for _, x := range a {
					absmax = max(absmax, math.Abs(float64(x)))
				}
				for i := range a {
					// NF4's largest gap between codes is 0.28 of the block's absmax.
					if d := math.Abs(float64(a[i] - b[i])); d > 0.15*absmax+1e-6 {
						t.Fatalf("%s[%d]: %v dequantized as %v", name, i, a[i], b[i])
					}
				}
			}
		})
	}
}

// f32 reads a float tensor of f as float32.
func f32(t *testing.T, f *stFile, name string) []float32 {
	t.Helper()
	ti, _ := f.info(name)
	v := make([]float32, ti.NumElements())
	if err := dtype.ToF32(v, f.data(t, name), ti.DType); err != nil {
		t.Fatal(err)
	}
	return v
}
