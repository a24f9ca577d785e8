package arch

import (
	"math"

	"github.com/lorakit/lorakit/pkg/dtype"
)

// Features describe, as plain data, what a model implementation must compute
// for an architecture beyond the Llama baseline (pre-norm residual decoder,
// RMSNorm, rotary attention with grouped KV heads, gated MLP). Each field's
// doc comment is the numerics contract: the order of operations and
// roundings of transformers' eager implementation, which the reference
// fixtures reproduce.
//
// The decoder layer is, with x the residual stream:
//
//	h = x + PostAttnNorm?(Attn(InputNorm(x)))
//	x' = h + PostFFNorm?(MLP(PreFFNorm(h)))
//
// where PostAttnNorm and PostFFNorm exist only with SandwichNorms, and
// PreFFNorm is named post_attention_layernorm without them.
type Features struct {
	// QKVBias: q, k and v projections have a bias (added after the matrix
	// product, before q/k norm and RoPE). Qwen2 always; Llama, Qwen3 and Gemma
	// with attention_bias.
	QKVBias bool
	// OBias: the output projection has a bias (Llama, Qwen3, Gemma with
	// attention_bias).
	OBias bool
	// MLPBias: gate, up and down projections have a bias (Llama mlp_bias).
	MLPBias bool

	// QKNorm: q and k are RMS-normalized per head over head_dim (weights of
	// head_dim values, the same Norm style and NormEps) after the projection
	// and before RoPE (Qwen3, Gemma 3).
	QKNorm bool

	// Norm is the RMSNorm variant of every norm of the model.
	Norm NormStyle
	// NormEps is rms_norm_eps, added to the mean of squares.
	NormEps float64

	// Act is the gate activation of the MLP: down(Act(gate(x)) * up(x)).
	Act Activation

	// EmbedScale: the token embeddings are multiplied by
	// EmbedScaleValue(hidden, activation dtype) before the first layer:
	// √hidden computed in float64, rounded to float32, then to the dtype the
	// model runs in (bfloat16: √3072 = 55.4256… becomes 55.5), as
	// transformers' `torch.tensor(hidden_size**0.5, dtype=hidden.dtype)`.
	// An embed_tokens LoRA delta is scaled too: Gemma 1/2 scale the embedding
	// module's output, and PEFT applies Gemma 3's embed_scale to the delta.
	EmbedScale bool

	// SandwichNorms: besides input_layernorm, each layer normalizes the
	// attention output (post_attention_layernorm) before the residual add, and
	// has pre_feedforward_layernorm and post_feedforward_layernorm around the
	// MLP (Gemma 2, Gemma 3).
	SandwichNorms bool

	// AttnSoftcap (0: none) caps the attention scores after scaling and
	// before the mask: s = cap·tanh(s/cap), in the scores' dtype; the softmax
	// then runs in float32 (Gemma 2 attn_logit_softcapping; Gemma 3 if set).
	AttnSoftcap float64
	// FinalSoftcap (0: none) caps the logits: z = cap·tanh(z/cap), computed in
	// the logits' dtype, before the loss (Gemma 2 final_logit_softcapping,
	// Gemma 3 if set).
	FinalSoftcap float64

	// AttnScale multiplies q·k before the softmax: head_dim^-0.5, or
	// query_pre_attn_scalar^-0.5 for Gemma 2 and 3 (a Python float, applied
	// in the scores' dtype).
	AttnScale float64
	// QueryPreAttnScalar is query_pre_attn_scalar (Gemma 2/3), 0 elsewhere.
	QueryPreAttnScalar float64

	// FusedQKV: q, k and v are one projection, self_attn.qkv_proj, whose
	// output rows are q (heads·head_dim), then k, then v (kv_heads·head_dim
	// each); a LoRA on it has one A and one B over the fused output (Phi-3).
	FusedQKV bool
	// FusedGateUp: gate and up are one projection, mlp.gate_up_proj, whose
	// output rows are gate (intermediate) then up (intermediate) (Phi-3).
	FusedGateUp bool

	// TiedEmbeddings: lm_head shares embed_tokens' weight (tie_word_embeddings);
	// the checkpoint has no lm_head.weight and parameters count it once.
	TiedEmbeddings bool
}

// NormStyle is how an RMSNorm applies its weight.
type NormStyle uint8

const (
	// NormLlama computes in float32 and casts to the input dtype before
	// multiplying by the weight: w * (x·rsqrt(mean(x²)+eps)).to(dtype)
	// (LlamaRMSNorm, Qwen2/3, Mistral, Phi-3).
	NormLlama NormStyle = iota
	// NormGemma computes in float32, multiplies by (1 + w) in float32 and then
	// casts: (x·rsqrt(mean(x²)+eps) · (1 + w.float())).to(dtype). The weights
	// are stored as offsets from 1 (zeros initialise to identity); llama.cpp
	// stores w + 1 (GemmaRMSNorm, Gemma2/3RMSNorm).
	NormGemma
)

// Offset is the value added to a norm weight before it multiplies: 0 or 1.
func (s NormStyle) Offset() float32 {
	if s == NormGemma {
		return 1
	}
	return 0
}

func (s NormStyle) String() string {
	if s == NormGemma {
		return "gemma (1+w)"
	}
	return "llama (w)"
}

// Activation is the gate activation of the MLP.
type Activation uint8

const (
	// ActSiLU is x·sigmoid(x) (hidden_act "silu").
	ActSiLU Activation = iota
	// ActGELUTanh is 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), PyTorch's
	// gelu(approximate="tanh") (hidden_act "gelu_pytorch_tanh").
	ActGELUTanh
	// ActGELU is the exact 0.5·x·(1 + erf(x/√2)) (hidden_act "gelu").
	ActGELU
)

func (a Activation) String() string {
	switch a {
	case ActGELUTanh:
		return "gelu_pytorch_tanh"
	case ActGELU:
		return "gelu"
	}
	return "silu"
}

// parseActivation maps a transformers activation name to an Activation.
func parseActivation(s string) (Activation, bool) {
	switch s {
	case "silu", "swish":
		return ActSiLU, true
	case "gelu_pytorch_tanh":
		return ActGELUTanh, true
	case "gelu":
		return ActGELU, true
	}
	return 0, false
}

// EmbedScaleValue is the embedding multiplier of EmbedScale models for a model
// of the given hidden size running in dtype d (BF16, F16 or F32): √hidden in
// float64, rounded to float32, then to d, returned as the float32 it is.
func EmbedScaleValue(hidden int, d dtype.DType) float32 {
	v := float32(math.Sqrt(float64(hidden)))
	switch d {
	case dtype.BF16:
		return dtype.BF16ToF32(dtype.F32ToBF16(v))
	case dtype.F16:
		return dtype.F16ToF32(dtype.F32ToF16(v))
	}
	return v
}
