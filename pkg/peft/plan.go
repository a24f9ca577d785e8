package peft

import (
	"fmt"
	"strings"

	"github.com/lorakit/lorakit/internal/num"
)

// LlamaDims are the sizes of a Llama-family decoder (bias-free linears,
// RMSNorm) that parameter plans need. HeadDim 0 means Hidden/Heads;
// KVHeads 0 means Heads.
type LlamaDims struct {
	Hidden, Intermediate, Layers, Heads, KVHeads, HeadDim, Vocab int
	TiedEmbeddings                                               bool
}

// Linear is one adaptable weight type of a model: the module type, its
// (in, out) features and how many modules have it.
type Linear struct {
	Type      string // "q_proj", ..., "lm_head", "embed_tokens"
	In, Out   int64  // in/out features; for an embedding (num_embeddings, embedding_dim)
	Count     int    // number of such modules (one per layer for projections)
	Embedding bool   // an nn.Embedding (embed_tokens), not a Linear
}

// LlamaProjections are the seven per-layer linear module types of a Llama
// decoder layer: what "all-linear" selects.
var LlamaProjections = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

func (d LlamaDims) normalized() (LlamaDims, error) {
	if d.KVHeads == 0 {
		d.KVHeads = d.Heads
	}
	if d.HeadDim == 0 && d.Heads > 0 {
		d.HeadDim = d.Hidden / d.Heads
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"hidden", d.Hidden}, {"intermediate", d.Intermediate}, {"layers", d.Layers},
		{"heads", d.Heads}, {"kv heads", d.KVHeads}, {"head_dim", d.HeadDim}, {"vocab", d.Vocab}} {
		if v.n <= 0 || v.n > 1<<24 {
			return d, fmt.Errorf("llama dims: %s = %d out of range: %w", v.name, v.n, ErrInvalidConfig)
		}
	}
	return d, nil
}

// LlamaLinears returns the adaptable weights of a Llama-family model:
// q (hidden→heads·head_dim), k and v (hidden→kv_heads·head_dim),
// o (heads·head_dim→hidden), gate and up (hidden→intermediate), down
// (intermediate→hidden), one each per layer, then lm_head
// (hidden→vocab) and embed_tokens (vocab×hidden embedding).
func LlamaLinears(d LlamaDims) ([]Linear, error) {
	d, err := d.normalized()
	if err != nil {
		return nil, err
	}
	h, i := int64(d.Hidden), int64(d.Intermediate)
	q, kv := int64(d.Heads*d.HeadDim), int64(d.KVHeads*d.HeadDim)
	L := d.Layers
	return []Linear{
		{Type: "q_proj", In: h, Out: q, Count: L},
		{Type: "k_proj", In: h, Out: kv, Count: L},
		{Type: "v_proj", In: h, Out: kv, Count: L},
		{Type: "o_proj", In: q, Out: h, Count: L},
		{Type: "gate_proj", In: h, Out: i, Count: L},
		{Type: "up_proj", In: h, Out: i, Count: L},
		{Type: "down_proj", In: i, Out: h, Count: L},
		{Type: "lm_head", In: h, Out: int64(d.Vocab), Count: 1},
		{Type: "embed_tokens", In: int64(d.Vocab), Out: h, Count: 1, Embedding: true},
	}, nil
}

// LlamaParams returns the model's parameter count as PEFT's "all params"
// sees the base (named_parameters, tied embeddings counted once): the
// embeddings, every projection, two RMSNorm weights per layer and the final
// norm.
func LlamaParams(d LlamaDims) (int64, error) {
	lin, err := LlamaLinears(d)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, l := range lin {
		if l.Type == "lm_head" && d.TiedEmbeddings {
			continue
		}
		n += l.In * l.Out * int64(l.Count)
	}
	h := int64(d.Hidden)
	n += h * int64(2*d.Layers+1)
	return n, nil
}

// PlanOptions are the LoRA settings of a plan.
type PlanOptions struct {
	Rank     int
	Alpha    float64
	Targets  []string // module types, or "all-linear"
	DoRA     bool
	LoraBias bool
	RSLoRA   bool
}

// PlanEntry is the trainable-parameter count of one module type.
type PlanEntry struct {
	Linear
	PerModule int64 // r·(in+out) (+out for DoRA, +out for lora_bias)
	Params    int64 // PerModule·Count
}

// Plan is the trainable-parameter plan of a LoRA on a model.
type Plan struct {
	Entries   []PlanEntry // in model order
	Trainable int64
	Base      int64   // base model parameters
	Scaling   float32 // alpha/r (or alpha/√r)
}

// All is PEFT's "all params": base plus trainable.
func (p *Plan) All() int64 { return p.Base + p.Trainable }

// String is PEFT's print_trainable_parameters line.
func (p *Plan) String() string { return FormatTrainable(p.Trainable, p.All()) }

// PlanLlama computes per-module-type and total trainable parameters of a
// LoRA with the given options on a Llama-family model.
func PlanLlama(d LlamaDims, o PlanOptions) (*Plan, error) {
	if o.Rank <= 0 {
		return nil, fmt.Errorf("plan: rank %d must be positive: %w", o.Rank, ErrInvalidConfig)
	}
	lin, err := LlamaLinears(d)
	if err != nil {
		return nil, err
	}
	base, err := LlamaParams(d)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, t := range o.Targets {
		if strings.ToLower(t) == "all-linear" {
			for _, p := range LlamaProjections {
				want[p] = true
			}
			continue
		}
		known := false
		for _, l := range lin {
			known = known || l.Type == t
		}
		if !known {
			return nil, fmt.Errorf("plan: target %q is not a Llama module (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head, embed_tokens, all-linear): %w", t, ErrUnknownTarget)
		}
		want[t] = true
	}
	if len(want) == 0 {
		return nil, fmt.Errorf("plan: no targets: %w", ErrUnknownTarget)
	}
	p := &Plan{Base: base, Scaling: Scaling(o.Alpha, o.Rank, o.RSLoRA)}
	for _, l := range lin {
		if !want[l.Type] {
			continue
		}
		per := Count(o.Rank, l.In, l.Out, o.DoRA, o.LoraBias && !l.Embedding)
		e := PlanEntry{Linear: l, PerModule: per, Params: per * int64(l.Count)}
		p.Entries = append(p.Entries, e)
		p.Trainable += e.Params
	}
	return p, nil
}

// FormatTrainable renders PEFT's (≥ 0.11) print_trainable_parameters line:
// "trainable params: 13,631,488 || all params: 8,043,892,736 || trainable%: 0.1695".
func FormatTrainable(trainable, all int64) string {
	pct := 0.0
	if all != 0 {
		pct = 100 * float64(trainable) / float64(all)
	}
	return fmt.Sprintf("trainable params: %s || all params: %s || trainable%%: %.4f",
		num.Thousands(trainable), num.Thousands(all), pct)
}
