package arch

// Llama: LlamaForCausalLM (Llama 2, 3, 3.1–3.3, and the many fine-tunes and
// derivatives in its layout).
//
// config.json: LlamaConfig. Defaults: vocab 32000, hidden 4096, intermediate
// 11008, 32 layers and heads, num_key_value_heads = heads, head_dim =
// hidden/heads, context 2048, rms_norm_eps 1e-6, untied, rope_theta 10000,
// silu. attention_bias puts a bias on q, k, v and o; mlp_bias on gate, up
// and down. RoPE: default, linear or llama3 (Llama 3.1); dynamic and yarn are
// refused. pretraining_tp only splits matrix products (same math), ignored.
//
// GGUF: llama.cpp's "llama" (NORM rope, so q and k rows are permuted);
// llama3 scaling becomes rope_freqs.weight, linear the rope.scaling keys.
func init() {
	register(&Arch{
		ModelType: "llama",
		Name:      "Llama 2 / 3.x",
		Classes:   []string{"LlamaForCausalLM"},
		GGUFArch:  "llama",
		Summary:   "attention_bias, mlp_bias; rope default, linear, llama3",
		defaults: defaults{Vocab: 32000, Hidden: 4096, Intermediate: 11008, Layers: 32, Heads: 32, KVHeads: -1,
			MaxPositions: 2048, NormEps: 1e-6, Theta: 10000, Act: "silu"},
		parse: parseLlama,
		gguf:  ggufLlama,
	})
}

func parseLlama(o *object, c *Config) error {
	if err := c.activation(o, "hidden_act"); err != nil {
		return err
	}
	if err := c.attentionBias(o); err != nil {
		return err
	}
	var err error
	if c.MLPBias, err = o.boolean("mlp_bias", false); err != nil {
		return err
	}
	r, err := singleRope(o, c, ropeOptions{types: standardRopes})
	if err != nil {
		return err
	}
	c.uniformAttention(0, r)
	return nil
}

// ggufLlama is shared by Llama and Mistral, which llama.cpp runs as "llama".
func ggufLlama(c *Config, g *GGUF) {
	g.permute = true
	g.needSiLU()
	g.ropeSupport(RopeDefault, RopeLinear, RopeLlama3)
	if r := c.globalRope(); r.Type == RopeLlama3 {
		g.Extra = append(g.Extra, ExtraTensor{Name: "rope_freqs.weight", Data: r.Llama3Factors()})
	}
	g.noSlidingWindow("the llama architecture has no sliding-window attention: every layer attends to all keys")
}
