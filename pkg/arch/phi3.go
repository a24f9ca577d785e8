package arch

import "fmt"

// Phi-3: Phi3ForCausalLM (Phi-3 and Phi-3.5 mini/medium, Phi-4, Phi-4-mini).
//
// config.json: Phi3Config. Defaults: vocab 32064, hidden 3072, intermediate
// 8192, 32 layers and heads, num_key_value_heads = heads, context 4096,
// original_max_position_embeddings 4096, rms_norm_eps 1e-5, untied (Phi-4-mini
// ties), rope_theta 10000, silu, no sliding window. q, k and v are one
// projection (self_attn.qkv_proj) and gate and up another (mlp.gate_up_proj),
// no biases. RoPE: default or longrope (legacy types "su" and "yarn" mean
// longrope, as Phi3Config maps them): short and long factors of rotary/2
// values each; the long ones apply when the batch's largest position reaches
// original_max_position_embeddings; cos and sin are multiplied by
// rope_scaling.attention_factor, or √(1 + ln(s)/ln(original)) with s =
// max_position_embeddings / original_max_position_embeddings (1 if s ≤ 1).
// partial_rotary_factor rotates int(head_dim·factor) dimensions (Phi-4-mini:
// 0.75). resid_pdrop, embd_pdrop and attention_dropout must be 0.
//
// GGUF: llama.cpp's "phi3": attn_qkv and ffn_up (gate|up) fused as in the
// checkpoint, rope_factors_long/short tensors and rope.scaling.attn_factor
// for LongRoPE. llama.cpp disables Phi-3's sliding window and picks long or
// short factors by context size, not sequence length.
func init() {
	register(&Arch{
		ModelType: "phi3",
		Name:      "Phi-3 / Phi-3.5 / Phi-4",
		Classes:   []string{"Phi3ForCausalLM"},
		GGUFArch:  "phi3",
		Summary:   "fused qkv_proj and gate_up_proj, LongRoPE, partial rotary, sliding_window",
		defaults: defaults{Vocab: 32064, Hidden: 3072, Intermediate: 8192, Layers: 32, Heads: 32, KVHeads: -1,
			MaxPositions: 4096, NormEps: 1e-5, Theta: 10000, Act: "silu"},
		parse: parsePhi3,
		gguf:  ggufPhi3,
	})
}

func parsePhi3(o *object, c *Config) error {
	if err := c.activation(o, "hidden_act"); err != nil {
		return err
	}
	if err := noDropout(o, "resid_pdrop", "embd_pdrop"); err != nil {
		return err
	}
	c.FusedQKV, c.FusedGateUp = true, true
	orig, err := o.integer("original_max_position_embeddings", 4096, 1, maxPositions)
	if err != nil {
		return err
	}
	r, err := singleRope(o, c, ropeOptions{
		types:       []RopeType{RopeDefault, RopeLongRoPE},
		partial:     true,
		aliases:     map[string]string{"su": "longrope", "yarn": "longrope"},
		originalMax: orig,
	})
	if err != nil {
		return err
	}
	window := 0
	if window, err = o.integer("sliding_window", 0, 1, maxPositions); err != nil {
		return err
	}
	c.uniformAttention(window, r)
	return nil
}

func ggufPhi3(c *Config, g *GGUF) {
	g.needSiLU()
	g.needQDimHidden()
	g.ropeSupport(RopeDefault, RopeLongRoPE)
	g.key("attention.sliding_window", u32(c.firstWindow()))
	g.noSlidingWindow(`disables Phi-3's sliding window ("Phi SWA is currently disabled"): every layer attends to all keys`)
	r := c.globalRope()
	if r.Type != RopeLongRoPE {
		return
	}
	g.key("rope.scaling.attn_factor", float32(r.AttentionFactor))
	g.key("rope.scaling.original_context_length", u32(r.OriginalMaxPositions))
	g.Extra = append(g.Extra,
		ExtraTensor{Name: "rope_factors_long.weight", Data: f32s(r.LongFactor)},
		ExtraTensor{Name: "rope_factors_short.weight", Data: f32s(r.ShortFactor)})
	if def := longRopeAttentionFactor(r.Factor, r.OriginalMaxPositions); r.AttentionFactor != def {
		g.diverge(Divergence{Field: "rope_scaling.attention_factor",
			Transformers: fmt.Sprintf("multiplies cos and sin by attention_factor %g", r.AttentionFactor),
			LlamaCpp:     fmt.Sprintf("uses rope.scaling.attn_factor (the converter writes the default %.6g, ignoring the config)", def),
			Remedy:       RemedyKey, Action: fmt.Sprintf("rope.scaling.attn_factor = %g", r.AttentionFactor)})
	}
	g.diverge(Divergence{Field: "rope_scaling.long_factor",
		Transformers: fmt.Sprintf("uses the long factors when a batch's positions reach %d, the short ones otherwise", r.OriginalMaxPositions),
		LlamaCpp:     fmt.Sprintf("uses the long factors whenever the context (n_ctx) exceeds %d, whatever the sequence length", r.OriginalMaxPositions),
		Remedy:       RemedyNote,
		Action:       fmt.Sprintf("both tensors written; run llama.cpp with a context of at most %d to match transformers on shorter sequences (llama.cpp rounds the context up to a multiple of 256, so below 256 it always takes the long factors)", r.OriginalMaxPositions)})
}

func f32s(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}
