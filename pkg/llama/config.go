// Package llama is lorakit's decoder: one implementation of every
// architecture of the registry (pkg/arch: Llama, Mistral, Qwen2/2.5, Qwen3,
// Gemma 1/2/3, Phi-3), with LoRA, DoRA and (IA)³ adapters and trainable
// biases, forward and hand-written backward, over a compute.Backend.
//
// The model knows nothing of files: it is built from an *arch.Config, whose
// Features and per-layer Attention select what each layer computes (see
// plan), and its weights come through a Loader by the text model's Hugging
// Face names (Config.Tensors: "model.layers.0.self_attn.q_proj.weight");
// adapter tensors use PEFT's names without the "base_model.model." prefix.
// Adapters are keyed by the registry's module names ("q_proj", "qkv_proj",
// "gate_up_proj", ...). The base weights are frozen; only adapter tensors
// (and biases made trainable, PEFT's bias option) receive gradients. The
// numerics follow transformers' *ForCausalLM with eager attention and
// PEFT's adapter layers: the reference fixtures' Llama logits are
// reproduced to ~5e-7 and gradients to ~5e-7 relative, and tools/torchref's
// plain-torch transcription of every architecture to ~1e-6 (testdata).
//
// A decoder layer computes, with x the residual stream (arch.Features):
//
//	h  = x + PostAttnNorm?(o(Attn(Rope(QKNorm?(q(n)+b), …), …)))   n = InputNorm(x)
//	x' = h + PostFFNorm?(down(act(gate(m)) ⊙ up(m)))                m = PreFFNorm(h)
//
// where the norms are RMSNorm (Gemma: × (1 + w)), fused projections (Phi-3
// qkv_proj, gate_up_proj) are row slices of one weight, attention is causal
// with grouped KV heads, a per-layer sliding window, optional score
// soft-capping and the registry's scale, and the logits may be soft-capped.
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

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/compute"
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

// proj is one of the seven projections a decoder layer computes; fused
// modules provide several (qkv_proj: q, k, v; gate_up_proj: gate, up).
type proj uint8

const (
	pQ proj = iota
	pK
	pV
	pO
	pGate
	pUp
	pDown
	numProj
)

// maxModules bounds the Linear modules of a layer (7 unfused); the dropout
// stream of a module is layer·maxModules + its index.
const maxModules = int(numProj)

// group is the set of projections that read one input.
type group uint8

const (
	gQKV    group = iota // input_layernorm's output
	gO                   // attention's output
	gGateUp              // the pre-feed-forward norm's output
	gDown                // the gated activation
)

func (p proj) group() group {
	switch p {
	case pQ, pK, pV:
		return gQKV
	case pO:
		return gO
	case pGate, pUp:
		return gGateUp
	}
	return gDown
}

// part is the rows [off, off+rows) of a module's output that form a
// projection.
type part struct {
	p         proj
	off, rows int
}

// modulePlan is one Linear module of a layer as the registry lays it out.
type modulePlan struct {
	name    string // "q_proj", "qkv_proj", ...
	out, in int
	hasBias bool
	parts   []part
}

// plan is what the model computes, derived from the registry's config in
// this one place.
type plan struct {
	cfg     *arch.Config
	hd      int // head_dim
	eps     float32
	act     compute.Activation
	modules []modulePlan // a layer's Linears in PEFT's module order
	ropes   []*arch.Rope // distinct rotary embeddings (cfg.Ropes)
	ropeOf  []int        // layer → index in ropes
	offset  float32      // added to every norm weight (Gemma: 1)
}

// newPlan checks that the model implements cfg and derives its plan.
func newPlan(cfg *arch.Config) (*plan, error) {
	if cfg == nil || cfg.Arch == nil {
		return nil, fmt.Errorf("%w: no architecture config", ErrConfig)
	}
	if len(cfg.Attention) != cfg.Layers || cfg.Layers <= 0 || cfg.Hidden <= 0 || cfg.Intermediate <= 0 ||
		cfg.Heads <= 0 || cfg.KVHeads <= 0 || cfg.Heads%cfg.KVHeads != 0 || cfg.HeadDim <= 0 || cfg.Vocab <= 0 {
		return nil, fmt.Errorf("%w: %s: sizes out of range (%s)", ErrConfig, cfg.ModelType, cfg.Describe())
	}
	pl := &plan{cfg: cfg, hd: cfg.HeadDim, eps: float32(cfg.NormEps), offset: cfg.Norm.Offset()}
	switch cfg.Act {
	case arch.ActSiLU:
		pl.act = compute.SiLU
	case arch.ActGELUTanh:
		pl.act = compute.GELUTanh
	case arch.ActGELU:
		pl.act = compute.GELU
	default:
		return nil, fmt.Errorf("%w: activation %v", ErrConfig, cfg.Act)
	}
	if !(cfg.NormEps > 0) || !(cfg.AttnScale > 0) || cfg.AttnSoftcap < 0 || cfg.FinalSoftcap < 0 {
		return nil, fmt.Errorf("%w: rms_norm_eps %g, attention scale %g, soft-caps %g/%g", ErrConfig, cfg.NormEps,
			cfg.AttnScale, cfg.AttnSoftcap, cfg.FinalSoftcap)
	}
	pl.ropes = cfg.Ropes()
	pl.ropeOf = make([]int, cfg.Layers)
	for l, a := range cfg.Attention {
		for i, r := range pl.ropes {
			if r == a.Rope {
				pl.ropeOf[l] = i
			}
		}
		if a.Rope.Dims <= 0 || a.Rope.Dims%2 != 0 || a.Rope.Dims > cfg.HeadDim {
			return nil, fmt.Errorf("%w: layer %d rotates %d of %d dimensions", ErrConfig, l, a.Rope.Dims, cfg.HeadDim)
		}
		if a.Sliding && a.Window < 1 {
			return nil, fmt.Errorf("%w: layer %d: sliding window %d", ErrConfig, l, a.Window)
		}
	}
	hq, hkv, inter := cfg.Heads*cfg.HeadDim, cfg.KVHeads*cfg.HeadDim, cfg.Intermediate
	parts := map[string][]part{
		"q_proj":       {{pQ, 0, hq}},
		"k_proj":       {{pK, 0, hkv}},
		"v_proj":       {{pV, 0, hkv}},
		"o_proj":       {{pO, 0, cfg.Hidden}},
		"qkv_proj":     {{pQ, 0, hq}, {pK, hq, hkv}, {pV, hq + hkv, hkv}},
		"gate_proj":    {{pGate, 0, inter}},
		"up_proj":      {{pUp, 0, inter}},
		"gate_up_proj": {{pGate, 0, inter}, {pUp, inter, inter}},
		"down_proj":    {{pDown, 0, cfg.Hidden}},
	}
	var have [numProj]bool
	for _, t := range cfg.Tensors() {
		if t.Layer != 0 || t.Role != arch.RoleAttention && t.Role != arch.RoleMLP {
			continue
		}
		if t.Bias {
			pl.modules[len(pl.modules)-1].hasBias = true
			continue
		}
		ps, ok := parts[t.Module]
		if !ok || len(t.Shape) != 2 {
			return nil, fmt.Errorf("%w: %s: module %s is not implemented", ErrConfig, cfg.ModelType, t.Module)
		}
		mp := modulePlan{name: t.Module, out: int(t.Shape[0]), in: int(t.Shape[1]), parts: ps}
		rows := 0
		for _, p := range ps {
			rows += p.rows
			if have[p.p] {
				return nil, fmt.Errorf("%w: %s computes a projection twice", ErrConfig, t.Module)
			}
			have[p.p] = true
		}
		if rows != mp.out {
			return nil, fmt.Errorf("%w: %s has %d output rows, want %d", ErrConfig, t.Module, mp.out, rows)
		}
		pl.modules = append(pl.modules, mp)
	}
	for p, ok := range have {
		if !ok {
			return nil, fmt.Errorf("%w: %s: a layer lacks a projection (%d)", ErrConfig, cfg.ModelType, p)
		}
	}
	if len(pl.modules) > maxModules {
		return nil, fmt.Errorf("%w: %d modules per layer", ErrConfig, len(pl.modules))
	}
	return pl, nil
}

// module returns the index of a module by name in a layer, or −1.
func (pl *plan) module(name string) int {
	for i, mp := range pl.modules {
		if mp.name == name {
			return i
		}
	}
	return -1
}

// moduleNames lists the modules of a layer, for messages.
func (pl *plan) moduleNames() []string {
	var out []string
	for _, mp := range pl.modules {
		out = append(out, mp.name)
	}
	return out
}
