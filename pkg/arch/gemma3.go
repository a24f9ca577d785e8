package arch

import "fmt"

// Gemma 3 text: Gemma3ForCausalLM (model_type gemma3_text: Gemma 3 270M and
// 1B) and the language model of Gemma3ForConditionalGeneration (model_type
// gemma3: 4B, 12B, 27B), whose text_config this reads and whose tensors live
// under language_model (Config.TextName).
//
// config.json: Gemma3TextConfig. Defaults: vocab 262208, hidden 2304,
// intermediate 9216, 26 layers, 8 heads, 4 kv heads, head_dim 256, context
// 131072, rms_norm_eps 1e-6, tied, hidden_activation gelu_pytorch_tanh,
// query_pre_attn_scalar 256, sliding_window 4096, no soft-caps, rope_theta
// 1e6 for global layers and rope_local_base_freq 1e4 for sliding ones.
// Layers: layer_types, else sliding_window_pattern (default 6): layer l is
// sliding unless (l+1) is a multiple of it. rope_scaling (v4) applies to the
// global layers only; v5's rope_parameters is keyed by layer type
// ("full_attention", "sliding_attention"). Everything of Gemma 2 plus
// per-head q/k norms ((1 + w) style) before RoPE.
//
// GGUF: llama.cpp's "gemma3": rope.freq_base (global) and freq_base_swa
// (local), the window and period as keys, linear scaling of the global rope
// as keys. The converter trims token_embd to the tokenizer's tokens (262144
// of 262208 on the multimodal sizes). llama.cpp infers the attention scale
// from the model size (1/√head_dim, or 1/√(hidden/heads) at 62 layers); q is
// normalized after q_proj, so a different query_pre_attn_scalar is folded
// into attn_q_norm. It never applies attn_logit_softcapping.
func init() {
	register(&Arch{
		ModelType: "gemma3_text",
		Name:      "Gemma 3 (text)",
		Classes:   []string{"Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"},
		GGUFArch:  "gemma3",
		Summary:   "Gemma 2 + q/k norms, 5:1 local/global layers, local rope base; gemma3: the language model",
		defaults: defaults{Vocab: 262208, Hidden: 2304, Intermediate: 9216, Layers: 26, Heads: 8, KVHeads: 4, HeadDim: 256,
			MaxPositions: 131072, NormEps: 1e-6, Tied: true, Theta: 1e6, Act: "gelu_pytorch_tanh"},
		parse: parseGemma3,
		gguf:  ggufGemma3,
	})
}

func parseGemma3(o *object, c *Config) error {
	if err := c.activation(o, "hidden_activation"); err != nil {
		return err
	}
	// transformers keeps the old integer pattern for configs that have it.
	pattern, err := o.integer("sliding_window_pattern", 6, 1, maxLayers+1)
	if err != nil {
		return err
	}
	sliding, window, err := gemmaSandwich(o, c, 0, 0, func(l int) bool { return (l+1)%pattern != 0 })
	if err != nil {
		return err
	}
	c.QKNorm = true
	global, local, err := gemma3Ropes(o, c)
	if err != nil {
		return err
	}
	return gemmaLayers(c, sliding, window, global, local)
}

// gemma3Ropes reads the global and local rotary embeddings in both layouts:
// v4 rope_theta + rope_scaling (global) and rope_local_base_freq (local,
// unscaled); v5 rope_parameters {"full_attention": {...}, "sliding_attention":
// {...}}, where a v4 rope_scaling, if also present, updates full_attention.
func gemma3Ropes(o *object, c *Config) (global, local *Rope, err error) {
	scaling, err := o.sub("rope_scaling")
	if err != nil {
		return nil, nil, err
	}
	params, err := o.sub("rope_parameters")
	if err != nil {
		return nil, nil, err
	}
	var fullBlock, slidingBlock *object
	if params != nil {
		if !params.present("full_attention") && !params.present("sliding_attention") {
			return nil, nil, fmt.Errorf("%w: %s: gemma3_text rope_parameters must be keyed by layer type (full_attention, sliding_attention)", ErrUnsupported, params.where)
		}
		if fullBlock, err = params.sub("full_attention"); err != nil {
			return nil, nil, err
		}
		if slidingBlock, err = params.sub("sliding_attention"); err != nil {
			return nil, nil, err
		}
	}
	if scaling != nil {
		if fullBlock != nil {
			return nil, nil, fmt.Errorf("%w: both rope_scaling and rope_parameters.full_attention are set", ErrUnsupported)
		}
		fullBlock = scaling
	}
	opt := ropeOptions{types: []RopeType{RopeDefault, RopeLinear, RopeLlama3}, headDim: c.HeadDim, maxPos: c.MaxPositions}
	theta, err := o.float("rope_theta", 1e6, 0, 1e30)
	if err != nil {
		return nil, nil, err
	}
	if global, err = parseRope(o, fullBlock, opt, theta); err != nil {
		return nil, nil, err
	}
	localTheta, err := o.float("rope_local_base_freq", 10000, 0, 1e30)
	if err != nil {
		return nil, nil, err
	}
	if local, err = parseRope(o, slidingBlock, opt, localTheta); err != nil {
		return nil, nil, err
	}
	return global, local, nil
}

func ggufGemma3(c *Config, g *GGUF) {
	g.ropeSupport(RopeDefault, RopeLinear)
	g.gemmaNotes()
	g.foldQueryScale(62, true)
	if c.AttnSoftcap != 0 {
		g.refuse("attn_logit_softcapping", fmt.Sprintf("soft-caps attention scores at %g", c.AttnSoftcap),
			"gemma3 never soft-caps attention scores", "llama.cpp's gemma3 graph has no attention soft-cap")
	}
	if c.FinalSoftcap != 0 {
		g.key("final_logit_softcapping", float32(c.FinalSoftcap))
	}
	if local := c.localRope(); local != nil {
		if local.Type != RopeDefault {
			g.refuse("rope_parameters.sliding_attention", "scales the local rope ("+local.String()+")",
				"never scales sliding layers' rope", "llama.cpp's gemma3 cannot scale the local rope")
		}
		g.key("rope.freq_base_swa", float32(local.Theta))
		g.key("attention.sliding_window", u32(c.firstWindow()))
		gemmaPattern(c, g, 6)
	}
	g.TrimVocab = true
	g.diverge(Divergence{Field: "vocab_size", Transformers: fmt.Sprintf("computes logits for all %d embedding rows", c.Vocab),
		LlamaCpp: "has only the tokenizer's tokens (the converter trims token_embd)", Remedy: RemedyNote,
		Action: "token_embd keeps the tokenizer's tokens; the padding rows beyond them (never produced by the tokenizer) get no logits"})
}
