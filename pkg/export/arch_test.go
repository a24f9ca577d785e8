package export

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/randmodel"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/gguf"
)

// TestArchitectureExports exports the tiny model of every case of the llama.cpp
// interop test (without llama.cpp): the file holds exactly the registry's tensors
// under their GGUF names plus the generated ones, the registry's metadata, and
// every tensor's values are the checkpoint's with the registry's transform applied
// (checked value by value here); the adapter's tensors likewise, and the adapter
// planned against the base's GGUF file is the same file where the metadata says
// enough.
func TestArchitectureExports(t *testing.T) {
	for _, c := range archCases() {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := c.model.Arch()
			if err != nil {
				t.Fatal(err)
			}
			g, err := cfg.GGUF()
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			base, ad := filepath.Join(dir, "base"), filepath.Join(dir, "adapter")
			if err := c.model.Write(base); err != nil {
				t.Fatal(err)
			}
			if err := c.model.AdapterWith(ad, c.adapter); err != nil {
				t.Fatal(err)
			}
			b, p := exportModel(t, base, ModelOptions{Type: gguf.TypeF32})
			h := readGGUF(t, b)
			if a, _ := h.Metadata.String("general.architecture"); a != cfg.Arch.GGUFArch {
				t.Errorf("general.architecture %q", a)
			}
			for _, kv := range g.Metadata {
				if got, _ := h.Metadata.Get(kv.Key); fmt.Sprintf("%T %v", got, got) != fmt.Sprintf("%T %v", kv.Value, kv.Value) {
					t.Errorf("%s = %T %v, the registry says %T %v", kv.Key, got, got, kv.Value, kv.Value)
				}
			}
			tokens := c.model.Tokens
			if n, _ := h.Metadata.Uint32(g.Arch + ".vocab_size"); int(n) != tokens {
				t.Errorf("vocab_size %d, want the tokenizer's %d", n, tokens)
			}
			values := c.model.Loader()
			want := map[string]bool{}
			for _, x := range g.Extra {
				want[x.Name] = true
				got, _ := tensorF32(t, b, h, x.Name)
				if !slices.Equal(got, x.Data) {
					t.Errorf("%s differs from the registry's", x.Name)
				}
			}
			for _, x := range c.model.Tensors() {
				name, tr, err := g.TensorName(x.Name)
				if err != nil {
					t.Fatal(err)
				}
				if tr.Drop != "" {
					continue
				}
				want[name] = true
				src, shape, _ := values(x.Name)
				checkTransform(t, b, h, name, src, shape, tr, tokens)
			}
			var names []string
			for _, ti := range h.Tensors {
				names = append(names, ti.Name)
				if !want[ti.Name] {
					t.Errorf("unexpected tensor %s", ti.Name)
				}
			}
			if len(names) != len(want) {
				t.Errorf("%d tensors, want %d", len(names), len(want))
			}
			ctx, _ := h.Metadata.Uint32(g.Arch + ".context_length")
			if capped := ctx < uint32(cfg.MaxPositions); capped != (len(p.Warnings) == 1 && strings.Contains(p.Warnings[0], "sliding_window (context)")) {
				t.Errorf("context capped %v, warnings %q", capped, p.Warnings)
			}

			// The adapter: A and B with the registry's transforms of B (row order,
			// folded scale), the base given as a folder, a config.json or (where its
			// metadata says enough) its GGUF file.
			ab, _ := exportAdapter(t, ad, base, AdapterOptions{Type: gguf.TypeF32})
			checkAdapter(t, ab, ad, g)
			gb := writeFile(t, filepath.Join(dir, "base.gguf"), b)
			_, fromConfig := exportAdapter(t, ad, filepath.Join(base, "config.json"), AdapterOptions{Type: gguf.TypeF32})
			if len(fromConfig.Tensors) == 0 {
				t.Error("no adapter tensors with a config.json base")
			}
			src, _ := checkpoint.Open(ad, nil)
			defer src.Close()
			gbase, err := OpenBase(gb)
			switch {
			case cfg.QueryPreAttnScalar != 0:
				if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "query_pre_attn_scalar") {
					t.Errorf("GGUF base of %s: %v", cfg.Arch.ModelType, err)
				}
			case err != nil:
				t.Errorf("GGUF base: %v", err)
			default:
				p, err := PlanAdapter(src, gbase, AdapterOptions{Type: gguf.TypeF32})
				if err != nil {
					t.Fatal(err)
				}
				var buf bytes.Buffer
				p.Write(t.Context(), &buf, WriteOptions{})
				if !bytes.Equal(buf.Bytes(), ab) {
					t.Error("the adapter planned against the GGUF base differs")
				}
			}
		})
	}
}

// checkTransform compares a GGUF tensor with its source values under the registry's
// transform: (x + Add)·Scale, rows reordered for PermuteHeads, the vocabulary trimmed.
func checkTransform(t *testing.T, b []byte, h *gguf.Header, name string, src []float32, shape []int, tr arch.Transform, tokens int) {
	t.Helper()
	got, ti := tensorF32(t, b, h, name)
	rows := 1
	if len(shape) == 2 || tr.PermuteHeads > 0 { // a permuted bias: one value per row
		rows = shape[0]
	}
	want := make([]float32, len(src))
	for i, x := range src {
		want[i] = x + tr.Add
		if tr.Scale != 0 {
			want[i] *= tr.Scale
		}
	}
	if tr.PermuteHeads > 0 {
		perm := make([]float32, len(want))
		if err := gguf.PermuteLlamaQK(perm, want, rows, tr.PermuteHeads); err != nil {
			t.Fatal(err)
		}
		want = perm
	}
	if tr.TrimVocab {
		want = want[:tokens*(len(src)/rows)]
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d values (shape %v), want %d", name, len(got), ti.Shape, len(want))
	}
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-7*max(1, math.Abs(float64(want[i]))) {
			t.Fatalf("%s[%d] = %v, want %v (transform %+v)", name, i, got[i], want[i], tr)
		}
	}
}

// checkAdapter compares the adapter GGUF's lora_b tensors with the PEFT adapter's B:
// the registry's row order and folded scale applied.
func checkAdapter(t *testing.T, b []byte, dir string, g *arch.GGUF) {
	t.Helper()
	h := readGGUF(t, b)
	aw := loadWeights(t, filepath.Join(dir, "adapter_model.safetensors"))
	alpha, _ := h.Metadata.Float32("adapter.lora.alpha")
	n := 0
	for name, v := range aw {
		module, ok := strings.CutSuffix(strings.TrimPrefix(name, "base_model.model."), ".lora_B.weight")
		if !ok {
			continue
		}
		at, err := g.Adapter(module)
		if err != nil {
			t.Fatal(err)
		}
		got, ti := tensorF32(t, b, h, at.Base+".lora_b")
		rows := int(ti.Shape[1])
		if alpha == 0 {
			t.Fatal("the tests' adapters have one alpha: PEFT's scale is not folded into lora_b")
		}
		want := make([]float32, len(v))
		for i, x := range v {
			want[i] = x
			if at.B.Scale != 0 {
				want[i] *= at.B.Scale
			}
		}
		if at.B.PermuteHeads > 0 {
			perm := make([]float32, len(want))
			if err := gguf.PermuteLlamaQK(perm, want, rows, at.B.PermuteHeads); err != nil {
				t.Fatal(err)
			}
			want = perm
		}
		for i := range want {
			if math.Abs(float64(got[i]-want[i])) > 1e-7 {
				t.Fatalf("%s.lora_b[%d] = %v, want %v (transform %+v)", at.Base, i, got[i], want[i], at.B)
			}
		}
		n++
	}
	if n == 0 {
		t.Fatal("no lora_b checked")
	}
}

// TestArchitectureRefusals: a config llama.cpp cannot be made to compute as
// transformers does is refused before any output, in one line that names the field.
func TestArchitectureRefusals(t *testing.T) {
	for _, tc := range []struct {
		mt    string
		set   map[string]any
		field string
	}{
		{"gemma2", map[string]any{"final_logit_softcapping": "null"}, "final_logit_softcapping"},
		{"gemma3_text", map[string]any{"attn_logit_softcapping": 50.0}, "attn_logit_softcapping"},
		{"gemma", map[string]any{"attention_bias": true}, "attention_bias"},
		{"qwen3", map[string]any{"attention_bias": true}, "attention_bias"},
		{"qwen2", map[string]any{"head_dim": 32}, "head_dim"},
		{"phi3", map[string]any{"head_dim": 32}, "head_dim"},
		{"qwen2", map[string]any{"rope_parameters": map[string]any{"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}, "rope llama3"},
		{"gemma3_text", map[string]any{"layer_types": []string{"sliding_attention", "full_attention", "full_attention"}}, "layer_types"},
		{"llama", map[string]any{"hidden_act": "gelu_pytorch_tanh"}, "hidden_act"},
	} {
		t.Run(tc.mt+" "+tc.field, func(t *testing.T) {
			c := randmodel.Tiny(tc.mt, 1)
			dir := filepath.Join(t.TempDir(), "m")
			if err := c.Write(dir); err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.set {
				c.Extra[k] = v
			}
			js := strings.ReplaceAll(string(c.ConfigJSON()), `"null"`, "null")
			if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(js), 0o644); err != nil {
				t.Fatal(err)
			}
			src, err := checkpoint.Open(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			_, err = PlanModel(src, ModelOptions{Type: gguf.TypeF32})
			if !errors.Is(err, arch.ErrGGUF) || !strings.Contains(err.Error(), tc.field) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%v", err)
			}
		})
	}
}

// TestTrimmedEmbeddingAdapter: an embedding LoRA on an untied Gemma 3, whose GGUF
// embedding keeps only the tokenizer's tokens, gets its lora_a trimmed alike; with
// only a config.json as the base, the token count is unknown and it is refused.
func TestTrimmedEmbeddingAdapter(t *testing.T) {
	c := randmodel.Tiny("gemma3_text", 2)
	c.Tied = false
	dir := t.TempDir()
	base, ad := filepath.Join(dir, "base"), filepath.Join(dir, "adapter")
	if err := c.Write(base); err != nil {
		t.Fatal(err)
	}
	if err := c.AdapterWith(ad, randmodel.AdapterOptions{Rank: 4, Seed: 1, Targets: []string{"embed_tokens", "q_proj"}}); err != nil {
		t.Fatal(err)
	}
	b, _ := exportAdapter(t, ad, base, AdapterOptions{Type: gguf.TypeF32})
	h := readGGUF(t, b)
	got, ti := tensorF32(t, b, h, "token_embd.weight.lora_a")
	if !slices.Equal(ti.Shape, []int64{4, int64(c.Tokens)}) {
		t.Fatalf("token_embd.weight.lora_a ne %v, want [4 %d]", ti.Shape, c.Tokens)
	}
	a := loadWeights(t, filepath.Join(ad, "adapter_model.safetensors"))["base_model.model.model.embed_tokens.lora_embedding_A"] // (r, V)
	for v := range c.Tokens {
		for k := range 4 {
			if got[v*4+k] != a[k*c.Vocab+v] {
				t.Fatalf("lora_a[%d][%d] = %v, want A[%d][%d] = %v", v, k, got[v*4+k], k, v, a[k*c.Vocab+v])
			}
		}
	}
	src, _ := checkpoint.Open(ad, nil)
	defer src.Close()
	cb, err := OpenBase(filepath.Join(base, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PlanAdapter(src, cb, AdapterOptions{}); !errors.Is(err, ErrBase) || !strings.Contains(err.Error(), "tokenizer") {
		t.Errorf("config.json base: %v", err)
	}
}
