package arch

// Mistral: MistralForCausalLM (Mistral 7B v0.1–v0.3, Mistral NeMo, ...).
//
// config.json: MistralConfig. Defaults: vocab 32000, hidden 4096,
// intermediate 14336, 32 layers and heads, num_key_value_heads 8 (null:
// heads), head_dim = hidden/heads, context 131072, rms_norm_eps 1e-6,
// untied, rope_theta 10000, silu, sliding_window 4096 (null: none). No
// biases. Every layer uses the window when it is set (v0.1: 4096; v0.3:
// null). layer_types is not read by MistralForCausalLM (transformers warns
// and ignores it), so it is ignored here too.
//
// GGUF: llama.cpp's "llama" like Llama (the converter registers
// MistralForCausalLM as LlamaModel). llama.cpp's llama graph has no sliding
// window: a window smaller than the context caps context_length.
func init() {
	register(&Arch{
		ModelType: "mistral",
		Name:      "Mistral",
		Classes:   []string{"MistralForCausalLM"},
		GGUFArch:  "llama",
		Summary:   "sliding_window on every layer",
		defaults: defaults{Vocab: 32000, Hidden: 4096, Intermediate: 14336, Layers: 32, Heads: 32, KVHeads: 8,
			MaxPositions: 131072, NormEps: 1e-6, Theta: 10000, Act: "silu"},
		parse: parseMistral,
		gguf:  ggufLlama,
	})
}

func parseMistral(o *object, c *Config) error {
	if err := c.activation(o, "hidden_act"); err != nil {
		return err
	}
	window := 4096
	if o.isNull("sliding_window") {
		window = 0
	}
	window, err := o.integer("sliding_window", window, 1, maxPositions)
	if err != nil {
		return err
	}
	r, err := singleRope(o, c, ropeOptions{types: standardRopes})
	if err != nil {
		return err
	}
	c.uniformAttention(window, r)
	return nil
}
