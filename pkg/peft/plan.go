package peft

import (
	"fmt"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/arch"
)

// PlanOptions are the LoRA settings of a plan.
type PlanOptions struct {
	Rank     int
	Alpha    float64
	Targets  []string // module types, or "all-linear" (arch.Config.ResolveTargets)
	DoRA     bool
	LoraBias bool
	RSLoRA   bool
}

// PlanEntry is the trainable-parameter count of one module type.
type PlanEntry struct {
	arch.Linear
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

// NewPlan computes per-module-type and total trainable parameters of a LoRA
// with the given options on the model a config describes, as PEFT counts
// them (Count): a fused module (Phi-3's qkv_proj, gate_up_proj) is one
// module with one A and one B over its whole output. Unknown targets give
// an error wrapping arch.ErrTarget that lists the architecture's targets.
func NewPlan(cfg *arch.Config, o PlanOptions) (*Plan, error) {
	if o.Rank <= 0 {
		return nil, fmt.Errorf("plan: rank %d must be positive: %w", o.Rank, ErrInvalidConfig)
	}
	lin, err := cfg.ResolveTargets(o.Targets)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	p := &Plan{Base: cfg.Params().Total(), Scaling: Scaling(o.Alpha, o.Rank, o.RSLoRA)}
	for _, l := range lin {
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
