// Package llama is the Llama-family decoder (Llama 2/3.x, Mistral-style GQA)
// with LoRA, DoRA and (IA)³ adapters, forward and hand-written backward, over
// a compute.Backend.
//
// The model knows nothing of files: its configuration is a plain Config and
// its weights come through a Loader by their Hugging Face names
// ("model.layers.0.self_attn.q_proj.weight"); adapter tensors use PEFT's names
// without the "base_model.model." prefix. The base weights are frozen; only
// adapter tensors receive gradients. The numerics follow transformers'
// LlamaForCausalLM with eager attention and PEFT's adapter layers: the
// reference fixtures' logits are reproduced to ~5e-7 and gradients to ~5e-7
// relative.
//
// Batches are rows of equal length; shorter sequences must be right-padded
// (causal attention keeps real tokens from seeing the padding) with their
// labels set to −100, or packed several to a row (Batch.Segments or
// Batch.Positions): each packed example then computes exactly what it
// computes as a row of its own. The loss computes logits only for the
// positions that have a target.
//
// Frozen projection weights may be held in bitsandbytes' 4-bit form
// (Options.Quantized, QLoRA) and are then dequantized on the fly, bit for bit
// as bitsandbytes does, by the backend's Dequantize4: one projection at a
// time into a shared scratch buffer, never a dense copy of the model.
// Options.Precision selects f32 (the reference) or bf16 mixed precision
// (bf16 weights and activations, f32 statistics, loss and adapter state, as
// torch.autocast with PEFT); Options.GradCheckpoint keeps only each layer's
// input and recomputes the layer in the backward pass.
package llama

import (
	"fmt"
	"math"

	"github.com/lorakit/lorakit/pkg/errclass"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrConfig reports an invalid or unsupported configuration.
	ErrConfig = errclass.New(errclass.Invalid, "llama: invalid config")
	// ErrWeight reports a missing tensor or one of the wrong shape.
	ErrWeight = errclass.New(errclass.Invalid, "llama: invalid weight")
	// ErrNotFound is what a Loader wraps when it has no tensor of that name.
	ErrNotFound = errclass.New(errclass.Invalid, "llama: tensor not found")
	// ErrAdapter reports an invalid adapter specification.
	ErrAdapter = errclass.New(errclass.Invalid, "llama: invalid adapter")
	// ErrBatch reports token ids, labels or shapes the model cannot take.
	ErrBatch = errclass.New(errclass.Invalid, "llama: invalid batch")
)

// Config is the architecture of a Llama-family model, as in config.json.
type Config struct {
	Hidden        int // hidden_size
	Intermediate  int // intermediate_size
	Layers        int // num_hidden_layers
	Heads         int // num_attention_heads
	KVHeads       int // num_key_value_heads
	HeadDim       int // head_dim; 0 means Hidden/Heads
	Vocab         int // vocab_size
	RMSEps        float64
	RopeTheta     float64
	RopeScaling   *RopeScaling // nil: plain RoPE ("default")
	TieEmbeddings bool         // tie_word_embeddings: lm_head shares embed_tokens
}

// RopeScaling is the Llama 3.1 "llama3" frequency scaling of RoPE.
type RopeScaling struct {
	Type                 string // "llama3"
	Factor               float64
	LowFreqFactor        float64
	HighFreqFactor       float64
	OriginalMaxPositions int // original_max_position_embeddings
}

// headDim returns the effective head dimension.
func (c *Config) headDim() int {
	if c.HeadDim > 0 {
		return c.HeadDim
	}
	if c.Heads > 0 {
		return c.Hidden / c.Heads
	}
	return 0
}

// Validate checks that the configuration describes a model this package runs.
func (c *Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
	}
	const maxDim = 1 << 20
	for _, f := range []struct {
		name string
		v    int
	}{{"hidden_size", c.Hidden}, {"intermediate_size", c.Intermediate}, {"num_hidden_layers", c.Layers},
		{"num_attention_heads", c.Heads}, {"num_key_value_heads", c.KVHeads}, {"vocab_size", c.Vocab}} {
		if f.v <= 0 || f.v > maxDim*8 {
			return bad("%s = %d", f.name, f.v)
		}
	}
	hd := c.headDim()
	if hd <= 0 || hd%2 != 0 || hd > 4096 {
		return bad("head_dim = %d (must be even and positive)", hd)
	}
	if c.HeadDim == 0 && c.Hidden%c.Heads != 0 {
		return bad("hidden_size %d is not a multiple of num_attention_heads %d", c.Hidden, c.Heads)
	}
	if c.Heads%c.KVHeads != 0 {
		return bad("num_attention_heads %d is not a multiple of num_key_value_heads %d", c.Heads, c.KVHeads)
	}
	if !(c.RMSEps > 0) || !(c.RopeTheta > 0) || math.IsInf(c.RopeTheta, 0) {
		return bad("rms_norm_eps %g, rope_theta %g", c.RMSEps, c.RopeTheta)
	}
	if s := c.RopeScaling; s != nil {
		if s.Type != "llama3" {
			return bad("rope scaling type %q is not supported", s.Type)
		}
		if !(s.Factor > 0) || !(s.LowFreqFactor > 0) || !(s.HighFreqFactor > s.LowFreqFactor) || s.OriginalMaxPositions <= 0 {
			return bad("llama3 rope scaling %+v", *s)
		}
	}
	return nil
}

// RopeInvFreq returns the HeadDim/2 inverse frequencies of the rotary
// embedding, computed in float32 as transformers does
// (_compute_default_rope_parameters, then _compute_llama3_parameters when
// the llama3 scaling is set).
func (c *Config) RopeInvFreq() []float32 {
	hd := c.headDim()
	inv := make([]float32, hd/2)
	for i := range inv {
		e := float32(2*i) / float32(hd)
		inv[i] = 1 / float32(math.Pow(c.RopeTheta, float64(e)))
	}
	s := c.RopeScaling
	if s == nil {
		return inv
	}
	factor := float32(s.Factor)
	lowWave := float32(float64(s.OriginalMaxPositions) / s.LowFreqFactor)
	highWave := float32(float64(s.OriginalMaxPositions) / s.HighFreqFactor)
	old := float32(s.OriginalMaxPositions)
	lf, hf := float32(s.LowFreqFactor), float32(s.HighFreqFactor)
	for i, f := range inv {
		wave := float32(2*math.Pi) / f
		scaled := f
		if wave > lowWave {
			scaled = f / factor
		}
		if !(wave < highWave) && !(wave > lowWave) {
			smooth := (old/wave - lf) / (hf - lf)
			scaled = (1-smooth)*scaled/factor + smooth*scaled
		}
		inv[i] = scaled
	}
	return inv
}

// Target is one of the seven linear projections of a decoder layer.
type Target uint8

// The projections, in the order PEFT lists a layer's modules.
const (
	Q Target = iota
	K
	V
	O
	Gate
	Up
	Down
	numTargets
)

// AllTargets lists the seven projections in order ("all-linear").
var AllTargets = [...]Target{Q, K, V, O, Gate, Up, Down}

var targetNames = [numTargets]string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

// String returns the Hugging Face module name, e.g. "q_proj".
func (t Target) String() string {
	if t < numTargets {
		return targetNames[t]
	}
	return fmt.Sprintf("Target(%d)", uint8(t))
}

// ParseTarget parses a module name such as "q_proj".
func ParseTarget(s string) (Target, error) {
	for i, n := range targetNames {
		if n == s {
			return Target(i), nil
		}
	}
	return 0, fmt.Errorf("%w: unknown projection %q", ErrAdapter, s)
}

// ModulePath returns the Hugging Face path of projection t in layer l,
// e.g. "model.layers.3.self_attn.q_proj".
func ModulePath(l int, t Target) string {
	block := "self_attn"
	if t >= Gate {
		block = "mlp"
	}
	return fmt.Sprintf("model.layers.%d.%s.%s", l, block, t)
}

// ProjShape returns (out, in) of projection t.
func (c Config) ProjShape(t Target) (out, in int) { return c.shape(t) }

// shape returns (out, in) of projection t.
func (c *Config) shape(t Target) (out, in int) {
	hd := c.headDim()
	switch t {
	case Q:
		return c.Heads * hd, c.Hidden
	case K, V:
		return c.KVHeads * hd, c.Hidden
	case O:
		return c.Hidden, c.Heads * hd
	case Gate, Up:
		return c.Intermediate, c.Hidden
	}
	return c.Hidden, c.Intermediate
}
