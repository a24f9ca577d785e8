package arch

import "fmt"

// Qwen2: Qwen2ForCausalLM (Qwen2, Qwen2.5, their Coder and Math models).
//
// config.json: Qwen2Config. Defaults: vocab 151936, hidden 4096,
// intermediate 22016, 32 layers and heads, num_key_value_heads 32 (null:
// heads), head_dim = hidden/heads unless the file sets it, context 32768,
// rms_norm_eps 1e-6, untied (the small Qwen2.5 tie), rope_theta 10000, silu.
// q, k and v always have a bias (attention_bias is not read); o and the MLP
// never do. Sliding window: sliding_window (default 4096) only counts when
// use_sliding_window is true (default false), and then on layers ≥
// max_window_layers (default 28) unless layer_types says otherwise.
//
// GGUF: llama.cpp's "qwen2" (NEOX rope: no permutation), q/k/v biases as
// attn_*.bias. Its graph has no sliding window and no rope_freqs.
func init() {
	register(&Arch{
		ModelType: "qwen2",
		Name:      "Qwen2 / Qwen2.5",
		Classes:   []string{"Qwen2ForCausalLM"},
		GGUFArch:  "qwen2",
		Summary:   "q/k/v biases; use_sliding_window above max_window_layers",
		defaults: defaults{Vocab: 151936, Hidden: 4096, Intermediate: 22016, Layers: 32, Heads: 32, KVHeads: 32,
			MaxPositions: 32768, NormEps: 1e-6, Theta: 10000, Act: "silu"},
		parse: parseQwen2,
		gguf:  ggufQwen2,
	})
}

func parseQwen2(o *object, c *Config) error {
	if err := c.activation(o, "hidden_act"); err != nil {
		return err
	}
	c.QKVBias = true
	return qwenAttention(o, c)
}

// qwenAttention reads the rope and Qwen2/Qwen3's sliding-window fields.
func qwenAttention(o *object, c *Config) error {
	use, err := o.boolean("use_sliding_window", false)
	if err != nil {
		return err
	}
	window := 4096
	if o.isNull("sliding_window") {
		window = 0
	}
	if window, err = o.integer("sliding_window", window, 1, maxPositions); err != nil {
		return err
	}
	if !use {
		window = 0 // Qwen2Config: sliding_window = sliding_window if use_sliding_window else None
	}
	mwl, err := o.integer("max_window_layers", 28, 0, maxLayers)
	if err != nil {
		return err
	}
	sliding, err := slidingPattern(o, c.Layers, func(l int) bool { return window > 0 && l >= mwl })
	if err != nil {
		return err
	}
	r, err := singleRope(o, c, ropeOptions{types: standardRopes})
	if err != nil {
		return err
	}
	c.Attention = make([]LayerAttention, c.Layers)
	for l, s := range sliding {
		if s && window == 0 {
			return fmt.Errorf("%w: layer_types marks layer %d sliding_attention but use_sliding_window is false or sliding_window is null", ErrConfig, l)
		}
		c.Attention[l] = LayerAttention{Rope: r}
		if s {
			c.Attention[l].Sliding, c.Attention[l].Window = true, window
		}
	}
	if c.SlidingLayers() > 0 {
		c.note("sliding window %d on %d layers, as current transformers computes it in every attention implementation (releases before 4.48 applied it with flash-attention only)", window, c.SlidingLayers())
	}
	return nil
}

func ggufQwen2(c *Config, g *GGUF) {
	g.needSiLU()
	g.needQDimHidden()
	g.ropeSupport(RopeDefault, RopeLinear)
	g.noSlidingWindow("the qwen2 architecture has no sliding-window attention: every layer attends to all keys")
}
