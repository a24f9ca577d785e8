package arch

// Qwen3: Qwen3ForCausalLM (dense Qwen3 models).
//
// config.json: Qwen3Config. Defaults as Qwen2 but head_dim 128 (independent
// of hidden/heads) and no q/k/v bias: attention_bias (default false) puts a
// bias on q, k, v and o. q and k are RMS-normalized per head (q_norm,
// k_norm: head_dim weights, Llama-style) after the projection and before
// RoPE. Sliding window as Qwen2 (use_sliding_window, max_window_layers,
// layer_types). Small sizes tie embeddings.
//
// GGUF: llama.cpp's "qwen3" (NEOX rope, attn_q_norm/attn_k_norm, key_length
// for the independent head_dim). Its loader has no attn_output bias and its
// graph no sliding window and no rope_freqs.
func init() {
	register(&Arch{
		ModelType: "qwen3",
		Name:      "Qwen3",
		Classes:   []string{"Qwen3ForCausalLM"},
		GGUFArch:  "qwen3",
		Summary:   "per-head q/k RMSNorm before RoPE; head_dim independent of hidden",
		defaults: defaults{Vocab: 151936, Hidden: 4096, Intermediate: 22016, Layers: 32, Heads: 32, KVHeads: 32, HeadDim: 128,
			MaxPositions: 32768, NormEps: 1e-6, Theta: 10000, Act: "silu"},
		parse: parseQwen3,
		gguf:  ggufQwen3,
	})
}

func parseQwen3(o *object, c *Config) error {
	if err := c.activation(o, "hidden_act"); err != nil {
		return err
	}
	if err := c.attentionBias(o); err != nil {
		return err
	}
	c.QKNorm = true
	return qwenAttention(o, c)
}

func ggufQwen3(c *Config, g *GGUF) {
	g.needSiLU()
	g.ropeSupport(RopeDefault, RopeLinear)
	if c.OBias {
		g.refuse("attention_bias", "adds a bias to o_proj", "qwen3 loads no attn_output bias", "llama.cpp would reject the extra tensor")
	}
	g.noSlidingWindow("the qwen3 architecture has no sliding-window attention: every layer attends to all keys")
}
