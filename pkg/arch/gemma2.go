package arch

import "fmt"

// Gemma 2: Gemma2ForCausalLM.
//
// config.json: Gemma2Config. Defaults: vocab 256000, hidden 2304,
// intermediate 9216, 26 layers, 8 heads, 4 kv heads, head_dim 256, context
// 8192, rms_norm_eps 1e-6, tied, rope_theta 10000, hidden_activation
// gelu_pytorch_tanh (hidden_act is not read), query_pre_attn_scalar 256,
// sliding_window 4096, attn_logit_softcapping 50, final_logit_softcapping 30
// (null: none), layer_types alternating sliding (even layers) and global.
// Everything of Gemma, plus sandwich norms (post-attention, pre- and
// post-feed-forward), attention scale query_pre_attn_scalar^-0.5, and
// soft-capping of attention scores and logits.
//
// GGUF: llama.cpp's "gemma2": soft-caps, window and (when not 2) the swa
// period as keys. llama.cpp infers the attention scale from the model size
// (1/√head_dim, or 1/√(hidden/heads) at 46 layers), so a different
// query_pre_attn_scalar is folded into attn_q; it has no way to turn a
// soft-cap off, and only periodic layer patterns.
func init() {
	register(&Arch{
		ModelType: "gemma2",
		Name:      "Gemma 2",
		Classes:   []string{"Gemma2ForCausalLM"},
		GGUFArch:  "gemma2",
		Summary:   "Gemma + sandwich norms, soft-capping, query_pre_attn_scalar, local/global layers",
		defaults: defaults{Vocab: 256000, Hidden: 2304, Intermediate: 9216, Layers: 26, Heads: 8, KVHeads: 4, HeadDim: 256,
			MaxPositions: 8192, NormEps: 1e-6, Tied: true, Theta: 10000, Act: "gelu_pytorch_tanh"},
		parse: parseGemma2,
		gguf:  ggufGemma2,
	})
}

func parseGemma2(o *object, c *Config) error {
	if err := c.activation(o, "hidden_activation"); err != nil {
		return err
	}
	sliding, window, err := gemmaSandwich(o, c, 50, 30, func(l int) bool { return (l+1)%2 != 0 })
	if err != nil {
		return err
	}
	r, err := singleRope(o, c, ropeOptions{types: standardRopes})
	if err != nil {
		return err
	}
	return gemmaLayers(c, sliding, window, r, r)
}

func ggufGemma2(c *Config, g *GGUF) {
	gemmaOutput(c, g)
	g.ropeSupport(RopeDefault, RopeLinear)
	g.gemmaNotes()
	g.foldQueryScale(46, false)
	for _, s := range []struct {
		field string
		v     float64
		def   string
	}{{"attn_logit_softcapping", c.AttnSoftcap, "50"}, {"final_logit_softcapping", c.FinalSoftcap, "30"}} {
		if s.v == 0 {
			g.refuse(s.field, "applies no soft-cap (null)", "gemma2 always soft-caps (default "+s.def+")", "llama.cpp's gemma2 graph cannot turn the soft-cap off")
			continue
		}
		g.key(s.field, float32(s.v))
	}
	if w := c.firstWindow(); w > 0 {
		g.key("attention.sliding_window", u32(w))
	}
	gemmaPattern(c, g, 2)
}

// gemmaPattern writes llama.cpp's sliding-window period, or refuses a
// layer pattern it cannot express (one period for the whole model).
func gemmaPattern(c *Config, g *GGUF, def int) {
	p, ok := swaPattern(c)
	if !ok {
		g.refuse("layer_types", "uses an aperiodic pattern of sliding and global layers",
			"reads one period (layer l is sliding iff l mod p < p−1)", "llama.cpp cannot express this layer pattern")
		return
	}
	if p != def {
		g.key("attention.sliding_window_pattern", u32(p))
		g.diverge(Divergence{Field: "layer_types", Transformers: fmt.Sprintf("%d of %d layers sliding", c.SlidingLayers(), c.Layers),
			LlamaCpp: fmt.Sprintf("assumes period %d unless told", def), Remedy: RemedyKey,
			Action: fmt.Sprintf("attention.sliding_window_pattern = %d", p)})
	}
}
