package arch

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/gguf")

// renderGGUF writes a GGUF plan as text: metadata with types, generated
// tensors, divergences, the tensors of the globals and of layer 0, and the
// adapter mapping of every LoRA target.
func renderGGUF(c *Config, g *GGUF, err error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "config: %s\nfeatures: %+v\n", c.Describe(), c.Features)
	for _, n := range c.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	fmt.Fprintf(&b, "general.architecture = %s\n", g.Arch)
	if err != nil {
		fmt.Fprintf(&b, "refused: %v\n", err)
	}
	for _, kv := range g.Metadata {
		fmt.Fprintf(&b, "%s %T %v\n", kv.Key, kv.Value, kv.Value)
	}
	for _, x := range g.Extra {
		fmt.Fprintf(&b, "extra %s [%d] %v\n", x.Name, len(x.Data), x.Data)
	}
	if g.TrimVocab {
		b.WriteString("trim vocabulary to the tokenizer\n")
	}
	for _, d := range g.Divergences {
		fmt.Fprintf(&b, "divergence %s\n", d)
	}
	for _, t := range c.Tensors() {
		if t.Layer > 0 {
			continue
		}
		n, tr, err := g.TensorName(t.Name)
		fmt.Fprintf(&b, "tensor %s %v -> %s %s%v\n", t.Name, t.Shape, n, transformString(tr), errString(err))
	}
	for _, l := range c.Linears() {
		module := c.ModulePath(0, l.Module)
		switch {
		case l.Module == "lm_head":
			module = "lm_head"
		case l.Embedding:
			module = "model.embed_tokens"
		}
		a, err := g.Adapter(module)
		if err != nil {
			fmt.Fprintf(&b, "adapter %s: %v\n", module, err)
			continue
		}
		fmt.Fprintf(&b, "adapter %s -> %s A%s B%s\n", module, a.Base, transformString(a.A), transformString(a.B))
	}
	return b.String()
}

func transformString(t Transform) string {
	var parts []string
	if t.Drop != "" {
		parts = append(parts, "drop: "+t.Drop)
	}
	if t.Add != 0 {
		parts = append(parts, fmt.Sprintf("+%g", t.Add))
	}
	if t.Scale != 0 {
		parts = append(parts, fmt.Sprintf("×%.9g", t.Scale))
	}
	if t.PermuteHeads != 0 {
		parts = append(parts, fmt.Sprintf("permute %d heads", t.PermuteHeads))
	}
	if t.TrimVocab {
		parts = append(parts, "trim vocabulary")
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return " error: " + err.Error()
}

// TestGGUFGolden compares each built-in shape's GGUF plan with its golden
// file (go test -run GGUFGolden -update rewrites them).
func TestGGUFGolden(t *testing.T) {
	for _, s := range Shapes() {
		c, err := Shape(s)
		if err != nil {
			t.Fatal(err)
		}
		g, err := c.GGUF()
		got := renderGGUF(c, g, err)
		path := filepath.Join("testdata", "gguf", s+".golden")
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create)", err)
		}
		if got != string(want) {
			t.Errorf("%s: GGUF plan differs from %s:\n%s", s, path, got)
		}
	}
}

// metadata returns a plan's key → value.
func metadata(g *GGUF) map[string]any {
	m := map[string]any{}
	for _, kv := range g.Metadata {
		m[kv.Key] = kv.Value
	}
	return m
}

func divergence(g *GGUF, field string) (Divergence, bool) {
	for _, d := range g.Divergences {
		if d.Field == field {
			return d, true
		}
	}
	return Divergence{}, false
}

// TestGGUFDivergences checks, config by config, each difference between
// llama.cpp and transformers and its remedy.
func TestGGUFDivergences(t *testing.T) {
	small := `"hidden_size":64,"intermediate_size":96,"num_hidden_layers":4,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":100`
	for _, tc := range []struct {
		name, js string
		field    string
		remedy   Remedy
		keys     map[string]any
		check    func(t *testing.T, g *GGUF)
	}{
		{name: "mistral window smaller than the context", js: `{"model_type":"mistral",` + small + `,"sliding_window":16,"max_position_embeddings":64}`,
			field: "sliding_window", remedy: RemedyContext, keys: map[string]any{"llama.context_length": uint32(16)}},
		{name: "mistral window at the context", js: `{"model_type":"mistral",` + small + `,"sliding_window":64,"max_position_embeddings":64}`,
			field: "sliding_window", remedy: RemedyNote, keys: map[string]any{"llama.context_length": uint32(64)}},
		{name: "qwen2 windowed layers", js: `{"model_type":"qwen2",` + small + `,"use_sliding_window":true,"sliding_window":8,"max_window_layers":2}`,
			field: "sliding_window", remedy: RemedyContext, keys: map[string]any{"qwen2.context_length": uint32(8)}},
		{name: "qwen2 head_dim", js: `{"model_type":"qwen2",` + small + `,"head_dim":32}`, field: "head_dim", remedy: RemedyRefuse},
		{name: "qwen2 llama3 rope", js: `{"model_type":"qwen2",` + small + `,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0}}`,
			field: "rope llama3", remedy: RemedyRefuse},
		{name: "qwen3 o bias", js: `{"model_type":"qwen3",` + small + `,"head_dim":8,"attention_bias":true}`, field: "attention_bias", remedy: RemedyRefuse},
		{name: "llama gelu", js: `{"model_type":"llama",` + small + `,"hidden_act":"gelu"}`, field: "hidden_act", remedy: RemedyRefuse},
		{name: "llama linear rope", js: `{"model_type":"llama",` + small + `,"rope_scaling":{"type":"linear","factor":4.0}}`,
			keys: map[string]any{"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": float32(4)}},
		{name: "gemma untied", js: `{"model_type":"gemma",` + small + `,"head_dim":16,"tie_word_embeddings":false}`, field: "tie_word_embeddings", remedy: RemedyRefuse},
		{name: "gemma o bias", js: `{"model_type":"gemma",` + small + `,"head_dim":16,"attention_bias":true}`, field: "attention_bias", remedy: RemedyRefuse},
		{name: "gemma bf16 embedding scale", js: `{"model_type":"gemma",` + small + `,"head_dim":16,"hidden_size":3072,"torch_dtype":"bfloat16"}`,
			field: "embedding scale", remedy: RemedyNote},
		{name: "gemma2 query_pre_attn_scalar folded into q", js: `{"model_type":"gemma2",` + small + `,"head_dim":16,"query_pre_attn_scalar":64}`,
			field: "query_pre_attn_scalar", remedy: RemedyFold,
			check: func(t *testing.T, g *GGUF) {
				// transformers: 1/√64; llama.cpp: 1/√16 → q × √(16/64) = 0.5.
				for _, n := range []string{"model.layers.1.self_attn.q_proj.weight"} {
					if _, tr, _ := g.TensorName(n); tr.Scale != 0.5 {
						t.Errorf("%s: %+v", n, tr)
					}
				}
				if _, tr, _ := g.TensorName("model.layers.1.self_attn.k_proj.weight"); tr.Scale != 0 {
					t.Errorf("k scaled: %+v", tr)
				}
				if a, err := g.Adapter("model.layers.2.self_attn.q_proj"); err != nil || a.B.Scale != 0.5 || a.A.Scale != 0 {
					t.Errorf("adapter q: %+v %v", a, err)
				}
			}},
		{name: "gemma2 27B layer count", js: `{"model_type":"gemma2","hidden_size":4608,"num_attention_heads":32,"num_key_value_heads":16,"head_dim":128,"num_hidden_layers":46,"query_pre_attn_scalar":144}`,
			check: func(t *testing.T, g *GGUF) {
				// llama.cpp's 1/√(4608/32) is transformers' 1/√144: nothing to fold.
				if d, ok := divergence(g, "query_pre_attn_scalar"); ok {
					t.Errorf("folded: %v", d)
				}
			}},
		{name: "gemma2 no soft-cap", js: `{"model_type":"gemma2",` + small + `,"head_dim":16,"final_logit_softcapping":null}`, field: "final_logit_softcapping", remedy: RemedyRefuse},
		{name: "gemma2 period 3", js: `{"model_type":"gemma2",` + small + `,"head_dim":16,"num_hidden_layers":6,
			"layer_types":["sliding_attention","sliding_attention","full_attention","sliding_attention","sliding_attention","full_attention"]}`,
			field: "layer_types", remedy: RemedyKey, keys: map[string]any{"gemma2.attention.sliding_window_pattern": uint32(3)}},
		{name: "gemma2 aperiodic", js: `{"model_type":"gemma2",` + small + `,"head_dim":16,
			"layer_types":["full_attention","sliding_attention","sliding_attention","full_attention"]}`, field: "layer_types", remedy: RemedyRefuse},
		{name: "gemma3 query_pre_attn_scalar folded into q_norm", js: `{"model_type":"gemma3_text",` + small + `,"head_dim":16,"query_pre_attn_scalar":64}`,
			field: "query_pre_attn_scalar", remedy: RemedyFold,
			check: func(t *testing.T, g *GGUF) {
				if _, tr, _ := g.TensorName("model.layers.0.self_attn.q_norm.weight"); tr.Add != 1 || tr.Scale != 0.5 {
					t.Errorf("q_norm: %+v", tr)
				}
				if _, tr, _ := g.TensorName("model.layers.0.self_attn.k_norm.weight"); tr.Add != 1 || tr.Scale != 0 {
					t.Errorf("k_norm: %+v", tr)
				}
				if a, err := g.Adapter("model.layers.0.self_attn.q_proj"); err != nil || a.B.Scale != 0 {
					t.Errorf("adapter q: %+v %v", a, err)
				}
			}},
		{name: "gemma3 attention soft-cap", js: `{"model_type":"gemma3_text",` + small + `,"head_dim":16,"attn_logit_softcapping":50.0}`,
			field: "attn_logit_softcapping", remedy: RemedyRefuse},
		{name: "gemma3 all global", js: `{"model_type":"gemma3_text",` + small + `,"head_dim":16,"sliding_window_pattern":1,"final_logit_softcapping":30.0}`,
			keys: map[string]any{"gemma3.final_logit_softcapping": float32(30)},
			check: func(t *testing.T, g *GGUF) {
				if _, ok := metadata(g)["gemma3.attention.sliding_window"]; ok {
					t.Error("sliding window written for a model without sliding layers")
				}
			}},
		{name: "gemma3 period 4", js: `{"model_type":"gemma3_text",` + small + `,"head_dim":16,"sliding_window":8,"sliding_window_pattern":4}`,
			field: "layer_types", remedy: RemedyKey,
			keys: map[string]any{"gemma3.attention.sliding_window_pattern": uint32(4), "gemma3.attention.sliding_window": uint32(8), "gemma3.rope.freq_base_swa": float32(10000)}},
		{name: "gemma3 scaled local rope", js: `{"model_type":"gemma3_text",` + small + `,"head_dim":16,
			"rope_parameters":{"full_attention":{"rope_type":"default"},"sliding_attention":{"rope_type":"linear","factor":2.0}}}`,
			field: "rope_parameters.sliding_attention", remedy: RemedyRefuse},
		{name: "phi3 head_dim", js: `{"model_type":"phi3",` + small + `,"head_dim":32}`, field: "head_dim", remedy: RemedyRefuse},
		{name: "phi3 window", js: `{"model_type":"phi3",` + small + `,"sliding_window":32,"max_position_embeddings":128}`,
			field: "sliding_window", remedy: RemedyContext, keys: map[string]any{"phi3.context_length": uint32(32), "phi3.attention.sliding_window": uint32(32)}},
		{name: "phi3 attention_factor", js: `{"model_type":"phi3",` + small + `,"max_position_embeddings":8192,
			"rope_scaling":{"type":"longrope","attention_factor":1.5,"short_factor":` + ones(8) + `,"long_factor":` + ones(8) + `}}`,
			field: "rope_scaling.attention_factor", remedy: RemedyKey,
			keys: map[string]any{"phi3.rope.scaling.attn_factor": float32(1.5), "phi3.rope.scaling.original_context_length": uint32(4096)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, tc.js)
			g, err := c.GGUF()
			if tc.field != "" {
				d, ok := divergence(g, tc.field)
				if !ok || d.Remedy != tc.remedy {
					t.Fatalf("divergence %s: %+v %v; all: %v", tc.field, d, ok, g.Divergences)
				}
			}
			refused := tc.remedy == RemedyRefuse
			if refused != (err != nil) || err != nil && (!errors.Is(err, ErrGGUF) || !strings.Contains(err.Error(), tc.field)) {
				t.Errorf("GGUF error %v", err)
			}
			m := metadata(g)
			for k, v := range tc.keys {
				if m[k] != v {
					t.Errorf("%s = %v (%T), want %v", k, m[k], m[k], v)
				}
			}
			if tc.check != nil {
				tc.check(t, g)
			}
			if tc.field == "" && len(g.Divergences) > 0 && !strings.HasPrefix(c.Arch.ModelType, "gemma") {
				t.Errorf("unexpected divergences %v", g.Divergences)
			}
			if tc.field == "" && err != nil {
				t.Errorf("refused: %v", err)
			}
		})
	}
}

// TestGGUFAdapters checks which LoRA modules llama.cpp can apply.
func TestGGUFAdapters(t *testing.T) {
	tied, _ := Shape("llama3.2-1b")
	untied, _ := Shape("llama3-8b")
	gemma3, _ := Shape("gemma3-4b")
	for _, tc := range []struct {
		c      *Config
		module string
		base   string
		err    string
	}{
		{untied, "model.layers.3.self_attn.k_proj", "blk.3.attn_k.weight", ""},
		{untied, "lm_head", "output.weight", ""},
		{untied, "model.embed_tokens", "token_embd.weight", ""},
		{tied, "lm_head", "", "ties embeddings"},
		{tied, "model.embed_tokens", "", "reuses token_embd as the output layer"},
		{tied, "model.layers.0.input_layernorm", "", "linear layers and embeddings only"},
		{tied, "model.layers.99.self_attn.q_proj", "", "not a tensor"},
		{gemma3, "model.language_model.layers.2.mlp.down_proj", "blk.2.ffn_down.weight", ""},
		{gemma3, "language_model.model.layers.2.self_attn.o_proj", "blk.2.attn_output.weight", ""},
		{gemma3, "model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj", "", "not part of the language model"},
	} {
		g, _ := tc.c.GGUF()
		a, err := g.Adapter(tc.module)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %+v %v, want an error containing %q", tc.module, a, err, tc.err)
			}
			continue
		}
		if err != nil || a.Base != tc.base {
			t.Errorf("%s: %+v %v, want base %s", tc.module, a, err, tc.base)
		}
	}
	g, _ := untied.GGUF()
	for _, tc := range []struct {
		module string
		heads  int
	}{{"model.layers.0.self_attn.q_proj", 32}, {"model.layers.0.self_attn.k_proj", 8}, {"model.layers.0.self_attn.v_proj", 0}} {
		a, err := g.Adapter(tc.module)
		if err != nil || a.B.PermuteHeads != tc.heads || a.A.PermuteHeads != 0 {
			t.Errorf("%s: %+v %v: B permutes %d heads, A none", tc.module, a, err, tc.heads)
		}
	}
}

// TestGGUFPermuteAndShift checks the per-tensor transforms that exist for
// every config of an architecture: Llama's q/k permutation (weights and
// biases), no permutation elsewhere, and the Gemma norm shift.
func TestGGUFPermuteAndShift(t *testing.T) {
	bias := mustParse(t, `{"model_type":"llama","hidden_size":64,"intermediate_size":96,"num_hidden_layers":1,"num_attention_heads":4,
		"num_key_value_heads":2,"vocab_size":100,"attention_bias":true}`)
	g, _ := bias.GGUF()
	for n, heads := range map[string]int{
		"model.layers.0.self_attn.q_proj.bias": 4, "model.layers.0.self_attn.k_proj.bias": 2,
		"model.layers.0.self_attn.v_proj.bias": 0, "model.layers.0.self_attn.o_proj.bias": 0,
	} {
		if _, tr, err := g.TensorName(n); err != nil || tr.PermuteHeads != heads {
			t.Errorf("%s: %+v %v, want %d heads", n, tr, err, heads)
		}
	}
	for _, s := range Shapes() {
		c, _ := Shape(s)
		g, _ := c.GGUF()
		_, q, _ := g.TensorName("model.layers.0.self_attn.q_proj.weight")
		if c.FusedQKV {
			_, q, _ = g.TensorName("model.layers.0.self_attn.qkv_proj.weight")
		}
		if (q.PermuteHeads != 0) != (g.Arch == "llama") {
			t.Errorf("%s: q transform %+v", s, q)
		}
		_, n, _ := g.TensorName("model.norm.weight")
		if (n.Add == 1) != strings.HasPrefix(g.Arch, "gemma") {
			t.Errorf("%s: norm transform %+v", s, n)
		}
	}
}

func TestSWAPattern(t *testing.T) {
	for _, tc := range []struct {
		sliding string
		p       int
		ok      bool
	}{
		{"SG", 2, true}, {"SGSG", 2, true}, {"SSSSSG", 6, true}, {"SSSSSGSSS", 6, true},
		{"SSS", 0, true}, {"GGG", 1, true}, {"SSG", 3, true}, {"GS", 0, false}, {"SGG", 0, false},
	} {
		c := &Config{Layers: len(tc.sliding)}
		for _, ch := range tc.sliding {
			c.Attention = append(c.Attention, LayerAttention{Sliding: ch == 'S'})
		}
		p, ok := swaPattern(c)
		if p != tc.p || ok != tc.ok {
			t.Errorf("%s: period %d %v, want %d %v", tc.sliding, p, ok, tc.p, tc.ok)
		}
	}
}
