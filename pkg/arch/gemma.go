package arch

import (
	"fmt"
	"math"
)

// Gemma: GemmaForCausalLM (Gemma 1, CodeGemma).
//
// config.json: GemmaConfig. Defaults: vocab 256000, hidden 3072,
// intermediate 24576, 28 layers, 16 heads and kv heads, head_dim 256,
// context 8192, rms_norm_eps 1e-6, tied embeddings, rope_theta 10000,
// gelu_pytorch_tanh. Norms are (1 + w) (NormGemma), embeddings are scaled by
// √hidden rounded to the model dtype, the MLP is GeGLU. attention_bias puts
// a bias on q, k, v and o.
//
// Activation: transformers 4.38–4.4x read hidden_activation and fell back to
// gelu_pytorch_tanh with a warning; current releases read hidden_act, and
// the first Gemma configs say "gelu". Gemma was trained with the tanh form
// (Google's reference, and llama.cpp), so hidden_activation wins when set and
// hidden_act "gelu" alone is read as gelu_pytorch_tanh, with a note.
//
// GGUF: llama.cpp's "gemma" (NEOX rope), norms stored as w + 1; its graph
// always uses token_embd as the output layer.
func init() {
	register(&Arch{
		ModelType: "gemma",
		Name:      "Gemma",
		Classes:   []string{"GemmaForCausalLM"},
		GGUFArch:  "gemma",
		Summary:   "(1+w) RMSNorm, embeddings × √hidden, GeGLU, tied embeddings",
		defaults: defaults{Vocab: 256000, Hidden: 3072, Intermediate: 24576, Layers: 28, Heads: 16, KVHeads: 16, HeadDim: 256,
			MaxPositions: 8192, NormEps: 1e-6, Tied: true, Theta: 10000, Act: "gelu_pytorch_tanh"},
		parse: parseGemma,
		gguf:  ggufGemma,
	})
}

func parseGemma(o *object, c *Config) error {
	if o.present("hidden_activation") && !o.isNull("hidden_activation") {
		if err := c.activation(o, "hidden_activation"); err != nil {
			return err
		}
	} else {
		act, err := o.str("hidden_act", c.Arch.defaults.Act)
		if err != nil {
			return err
		}
		if act == "gelu" {
			c.Act = ActGELUTanh
			c.note(`hidden_act "gelu" without hidden_activation read as gelu_pytorch_tanh, as Gemma was trained and transformers 4.38–4.4x compute it (current transformers computes the exact erf GELU for this file)`)
		} else if err := c.activation(o, "hidden_act"); err != nil {
			return err
		}
	}
	if err := gemmaCommon(o, c); err != nil {
		return err
	}
	r, err := singleRope(o, c, ropeOptions{types: standardRopes})
	if err != nil {
		return err
	}
	c.uniformAttention(0, r)
	return nil
}

// gemmaCommon sets what all Gemma generations share.
func gemmaCommon(o *object, c *Config) error {
	c.Norm = NormGemma
	c.EmbedScale = true
	return c.attentionBias(o)
}

// gemmaSandwich reads what Gemma 2 and 3 add to Gemma: the attention scale,
// the soft-caps (defaults as given, null for none), the window and the
// sliding pattern (layer_types, else the class's rule).
func gemmaSandwich(o *object, c *Config, attnCap, finalCap float64, def func(l int) bool) (sliding []bool, window int, err error) {
	if err := gemmaCommon(o, c); err != nil {
		return nil, 0, err
	}
	c.SandwichNorms = true
	if err := queryPreAttnScalar(o, c); err != nil {
		return nil, 0, err
	}
	if c.AttnSoftcap, err = gemmaSoftcap(o, "attn_logit_softcapping", attnCap); err != nil {
		return nil, 0, err
	}
	if c.FinalSoftcap, err = gemmaSoftcap(o, "final_logit_softcapping", finalCap); err != nil {
		return nil, 0, err
	}
	if window, err = gemmaWindow(o, 4096); err != nil {
		return nil, 0, err
	}
	sliding, err = slidingPattern(o, c.Layers, def)
	return sliding, window, err
}

// gemmaSoftcap reads a soft-cap: def when absent, 0 (none) when null.
func gemmaSoftcap(o *object, key string, def float64) (float64, error) {
	if o.isNull(key) {
		return 0, nil
	}
	v, err := o.float(key, def, 0, 1e9)
	if err != nil {
		return 0, err
	}
	if v == 0 && o.present(key) {
		return 0, o.errorf(key, "0 would divide by zero (use null for none)")
	}
	return v, nil
}

// queryPreAttnScalar reads query_pre_attn_scalar and sets the attention scale.
func queryPreAttnScalar(o *object, c *Config) error {
	s, err := o.float("query_pre_attn_scalar", 256, 0, 1e9)
	if err != nil {
		return err
	}
	if !(s > 0) {
		return o.errorf("query_pre_attn_scalar", "%v must be positive", s)
	}
	c.QueryPreAttnScalar = s
	c.AttnScale = 1 / math.Sqrt(s)
	return nil
}

// gemmaWindow reads sliding_window: def when absent, 0 when null.
func gemmaWindow(o *object, def int) (int, error) {
	if o.isNull("sliding_window") {
		return 0, nil
	}
	return o.integer("sliding_window", def, 1, maxPositions)
}

// gemmaLayers applies the sliding pattern to the layers, local and global
// ropes as given.
func gemmaLayers(c *Config, sliding []bool, window int, global, local *Rope) error {
	c.Attention = make([]LayerAttention, c.Layers)
	for l, s := range sliding {
		if !s {
			c.Attention[l] = LayerAttention{Rope: global}
			continue
		}
		if window == 0 {
			return fmt.Errorf("%w: layer %d is sliding_attention but sliding_window is null", ErrConfig, l)
		}
		c.Attention[l] = LayerAttention{Sliding: true, Window: window, Rope: local}
	}
	return nil
}

func ggufGemma(c *Config, g *GGUF) {
	gemmaOutput(c, g)
	g.ropeSupport(RopeDefault, RopeLinear)
	g.gemmaNotes()
}

// gemmaOutput handles llama.cpp's gemma and gemma2 graphs, which always use
// token_embd as the output layer.
func gemmaOutput(c *Config, g *GGUF) {
	g.outputTied = true
	if !c.TiedEmbeddings {
		g.refuse("tie_word_embeddings", "uses a separate lm_head (tie_word_embeddings false)",
			g.Arch+" always uses token_embd as the output layer", "llama.cpp cannot load a separate output layer for "+g.Arch)
	}
}
