package arch

import (
	"strings"
	"testing"
)

// layoutConfigs are small configs covering every layout variant, plus the
// built-in shapes.
func layoutConfigs(t *testing.T) map[string]*Config {
	t.Helper()
	out := map[string]*Config{}
	for _, s := range Shapes() {
		c, err := Shape(s)
		if err != nil {
			t.Fatal(err)
		}
		out[s] = c
	}
	small := `"hidden_size":64,"intermediate_size":96,"num_hidden_layers":3,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":100`
	for name, js := range map[string]string{
		"llama-biases":  `{"model_type":"llama",` + small + `,"attention_bias":true,"mlp_bias":true,"head_dim":32}`,
		"qwen2-tied":    `{"model_type":"qwen2",` + small + `,"tie_word_embeddings":true}`,
		"qwen3-bias":    `{"model_type":"qwen3",` + small + `,"head_dim":8,"attention_bias":true}`,
		"gemma-bias":    `{"model_type":"gemma",` + small + `,"head_dim":16,"attention_bias":true}`,
		"gemma2-small":  `{"model_type":"gemma2",` + small + `,"head_dim":16}`,
		"gemma3-small":  `{"model_type":"gemma3_text",` + small + `,"head_dim":16,"tie_word_embeddings":false}`,
		"phi3-small":    `{"model_type":"phi3",` + small + `}`,
		"mistral-small": `{"model_type":"mistral",` + small + `,"sliding_window":8}`,
	} {
		out[name] = mustParse(t, js)
	}
	return out
}

// TestTensorLayout checks each layout's consistency: unique names found
// again by Tensor, parameters adding up to Params, Linears and all-linear
// being modules of the layout with the shapes of their weights, fused
// shapes adding up, and every tensor mapping to exactly one GGUF name.
func TestTensorLayout(t *testing.T) {
	for name, c := range layoutConfigs(t) {
		t.Run(name, func(t *testing.T) {
			ts := c.Tensors()
			seen := map[string]bool{}
			var sum, quant int64
			weights := map[string][]int64{} // module → layer 0 weight shape
			for _, x := range ts {
				if seen[x.Name] {
					t.Fatalf("duplicate %s", x.Name)
				}
				seen[x.Name] = true
				got, ok := c.Tensor(x.Name)
				if !ok || got.Name != x.Name || got.Role != x.Role || got.Layer != x.Layer || got.Params() != x.Params() {
					t.Errorf("Tensor(%s) = %+v, %v; listed as %+v", x.Name, got, ok, x)
				}
				sum += x.Params()
				if x.Quantizable() {
					quant += x.Params()
				}
				if (x.Layer == 0 || x.Layer < 0) && !x.Bias {
					weights[x.Module] = x.Shape
				}
			}
			if p := c.Params(); sum != p.Total() {
				t.Errorf("Σ tensors %d, Params %d", sum, p.Total())
			}
			if quant != c.Quantizable() {
				t.Errorf("Σ quantizable %d, Quantizable %d", quant, c.Quantizable())
			}
			for _, l := range c.Linears() {
				w, ok := weights[l.Module]
				if l.Module == "lm_head" && c.TiedEmbeddings {
					w, ok = weights["embed_tokens"], true // the shared weight
				}
				if !ok {
					t.Errorf("Linear %s has no weight", l.Module)
					continue
				}
				out, in := w[0], w[1]
				if l.Embedding {
					in, out = w[0], w[1]
				}
				if l.In != in || l.Out != out {
					t.Errorf("%s: in %d out %d, weight %v", l.Module, l.In, l.Out, w)
				}
			}
			for _, m := range c.AllLinear() {
				if _, ok := weights[m]; !ok || m == "lm_head" {
					t.Errorf("all-linear selects %s", m)
				}
			}
			q, kv := int64(c.Heads*c.HeadDim), int64(c.KVHeads*c.HeadDim)
			if c.FusedQKV && weights["qkv_proj"][0] != q+2*kv {
				t.Errorf("qkv_proj %v, want %d rows", weights["qkv_proj"], q+2*kv)
			}
			if c.FusedGateUp && weights["gate_up_proj"][0] != 2*int64(c.Intermediate) {
				t.Errorf("gate_up_proj %v", weights["gate_up_proj"])
			}
			// Every tensor maps to one GGUF name, none shared.
			g, _ := c.GGUF()
			gnames := map[string]string{}
			for _, x := range ts {
				gn, tr, err := g.TensorName(x.Name)
				if err != nil || gn == "" || tr.Drop != "" {
					t.Errorf("%s: GGUF %q %+v %v", x.Name, gn, tr, err)
					continue
				}
				if prev, dup := gnames[gn]; dup {
					t.Errorf("%s and %s both map to %s", prev, x.Name, gn)
				}
				gnames[gn] = x.Name
				if strings.HasSuffix(gn, "_norm.weight") != (x.Role == RoleNorm) {
					t.Errorf("%s → %s: norm naming", x.Name, gn)
				}
			}
		})
	}
}

// TestTensorLookupRejects checks names outside the layout.
func TestTensorLookupRejects(t *testing.T) {
	c, err := Shape("llama3.2-1b")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{
		"lm_head.weight", // tied
		"model.layers.16.self_attn.q_proj.weight",
		"model.layers.01.self_attn.q_proj.weight",
		"model.layers.-1.self_attn.q_proj.weight",
		"model.layers.0.self_attn.q_proj.bias", // no attention_bias
		"model.layers.0.self_attn.q_norm.weight",
		"model.layers.0.self_attn.qkv_proj.weight",
		"model.layers.0",
		"model.embed_tokens",
	} {
		if x, ok := c.Tensor(n); ok {
			t.Errorf("Tensor(%q) = %+v", n, x)
		}
	}
	g, _ := c.GGUF()
	if _, _, err := g.TensorName("model.layers.0.mlp.gate_up_proj.weight"); err == nil {
		t.Error("TensorName accepted a Phi-3 tensor in a Llama")
	}
	for _, n := range []string{"lm_head.weight", "model.layers.0.self_attn.rotary_emb.inv_freq"} {
		if gn, tr, err := g.TensorName(n); err != nil || gn != "" || tr.Drop == "" {
			t.Errorf("%s: %q %+v %v, want dropped", n, gn, tr, err)
		}
	}
}

func TestModulePath(t *testing.T) {
	phi, _ := Shape("phi3.5-mini")
	llama, _ := Shape("llama3-8b")
	for _, tc := range []struct {
		c      *Config
		layer  int
		module string
		want   string
	}{
		{llama, 3, "q_proj", "model.layers.3.self_attn.q_proj"},
		{llama, 0, "down_proj", "model.layers.0.mlp.down_proj"},
		{phi, 31, "qkv_proj", "model.layers.31.self_attn.qkv_proj"},
		{phi, 1, "gate_up_proj", "model.layers.1.mlp.gate_up_proj"},
		{phi, 1, "q_proj", ""},
	} {
		if got := tc.c.ModulePath(tc.layer, tc.module); got != tc.want {
			t.Errorf("ModulePath(%d, %s) = %q, want %q", tc.layer, tc.module, got, tc.want)
		}
	}
}

func TestResolveTargets(t *testing.T) {
	phi, _ := Shape("phi3.5-mini")
	lin, err := phi.ResolveTargets([]string{"down_proj", "all-linear", "lm_head"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range lin {
		got = append(got, l.Module)
	}
	if strings.Join(got, " ") != "o_proj qkv_proj gate_up_proj down_proj lm_head" {
		t.Errorf("resolved %v", got)
	}
	if _, err := phi.ResolveTargets([]string{"q_proj"}); err == nil || !strings.Contains(err.Error(), "qkv_proj") {
		t.Errorf("q_proj on phi3: %v", err)
	}
	if _, err := phi.ResolveTargets(nil); err == nil {
		t.Error("no targets accepted")
	}
	if _, err := phi.LoRAParams(0, []string{"all-linear"}); err == nil {
		t.Error("rank 0 accepted")
	}
	if want := "o_proj qkv_proj gate_up_proj down_proj lm_head embed_tokens all-linear"; strings.Join(phi.Targets(), " ") != want {
		t.Errorf("targets %v", phi.Targets())
	}
}

func TestSmallHelpers(t *testing.T) {
	c, _ := Shape("gemma3-4b")
	if c.Layer(5).Sliding || !c.Layer(4).Sliding || len(c.RopeInvFreq(5, 1)) != 128 || c.RopeInvFreq(5, 1)[1] == c.RopeInvFreq(4, 1)[1] {
		t.Error("gemma3 layers 4 (local) and 5 (global)")
	}
	if NormGemma.Offset() != 1 || NormLlama.Offset() != 0 {
		t.Error("norm offsets")
	}
	if !(Transform{}).IsIdentity() || (Transform{Add: 1}).IsIdentity() || !(Transform{Scale: 1}).IsIdentity() {
		t.Error("IsIdentity")
	}
	for r := RoleEmbedding; r <= RoleLMHead; r++ {
		if strings.HasPrefix(r.String(), "Role(") {
			t.Errorf("role %d has no name", r)
		}
	}
}
