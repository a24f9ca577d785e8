package inspect

import (
	"math"
	"slices"
	"strings"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/peft"
)

// PlanOptions describe a planned LoRA training run.
type PlanOptions struct {
	Rank    int
	Alpha   float64
	Targets []string // module names (q_proj, ...) or "all-linear"
	DoRA    bool
	RSLoRA  bool
	QLoRA   bool
	Batch   int
	Seq     int
	// GradCheckpoint keeps only each layer's input during the forward pass.
	GradCheckpoint bool
}

// DefaultPlanOptions is the everyday LoRA: rank 16, alpha 32 on the
// attention projections, one sequence of 2048 tokens.
func DefaultPlanOptions() PlanOptions {
	return PlanOptions{Rank: 16, Alpha: 32, Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj"}, Batch: 1, Seq: 2048}
}

// MemoryPlan is a training memory estimate in bytes, for LoRA on a bf16
// base and for QLoRA on an NF4 + double-quantized base.
type MemoryPlan struct {
	LoRA  MemoryParts `json:"lora"`
	QLoRA MemoryParts `json:"qlora"`
}

// MemoryParts splits an estimate; Total is their sum.
type MemoryParts struct {
	Weights     int64 `json:"weights"`
	Adapter     int64 `json:"adapter"`
	Gradients   int64 `json:"gradients"`
	Optimizer   int64 `json:"optimizer"`
	Activations int64 `json:"activations"`
	Total       int64 `json:"total"`
}

// MemoryFormula documents the estimate (shown by `lora-inspect plan --help`).
const MemoryFormula = `Memory estimate (bytes), with P the base's parameters, Q those of its decoder
layers' linear projections (fused ones included), T the adapter's trainable
parameters, B×S the tokens of a micro-batch, L layers, h hidden, q = heads·head_dim,
k = kv_heads·head_dim, i intermediate, V vocab:
  weights      LoRA: 2·P (bf16).  QLoRA: Q·(4 + 8/64 + 32/(64·256))/8 (NF4 +
               double quant, block 64) + 2·(P − Q) (embeddings, head, norms, biases bf16)
  adapter      4·T (f32 master weights)
  gradients    4·T (f32)
  optimizer    8·T (AdamW m and v, f32)
  activations  2·B·S·L·(6h + 2q + 2k + 5i) saved bf16 tensors per layer (norm inputs,
               q/k/v, attention output, o/gate/up/down inputs; flash attention keeps
               no S×S scores, soft-capped or windowed alike), + q + k per layer with
               q/k norms, + 2h with sandwich norms (Gemma 2/3), plus
               4·B·S·(h + min(V, 8192)) for the final norm and a chunked f32
               cross-entropy. With --grad-checkpoint, per layer only its input
               (2·B·S·h) is kept, plus one layer's full set for the recompute.
It is an estimate of what a fused trainer needs, excluding allocator slack and
the CUDA context (~0.5 GiB).`

// Plan computes a training plan from a config alone. Invalid options (a
// rank that is not positive, a target the architecture does not have) are
// errors of class usage.
func Plan(cfg *arch.Config, o PlanOptions) (*Report, error) {
	var targets []string
	for _, t := range o.Targets {
		for _, t := range strings.Split(t, ",") {
			if t = strings.TrimSpace(t); t != "" {
				targets = append(targets, t)
			}
		}
	}
	if slices.Equal(targets, DefaultPlanOptions().Targets) {
		targets = cfg.AttentionTargets() // the default names the architecture's own (Phi-3: qkv_proj, o_proj)
	}
	if o.Alpha == 0 {
		o.Alpha = float64(o.Rank)
	}
	p, err := peft.NewPlan(cfg, peft.PlanOptions{Rank: o.Rank, Alpha: o.Alpha, Targets: targets, DoRA: o.DoRA, RSLoRA: o.RSLoRA})
	if err != nil {
		return nil, errclass.Wrap(errclass.Usage, err)
	}
	r := &Report{Schema: Schema, Kind: "plan", PEFTType: "LORA", DoRA: o.DoRA, RSLoRA: o.RSLoRA,
		Config: summarizeConfig(cfg), ModelType: cfg.ModelType, TotalParams: p.Base, TrainableParams: p.Trainable}
	r.Config.GGUF, r.Config.Targets = cfg.Arch.GGUFArch, cfg.Targets()
	if len(cfg.Architectures) > 0 {
		r.Architecture = cfg.Architectures[0]
	}
	for _, e := range p.Entries {
		r.Modules = append(r.Modules, Module{Name: e.Module, Rank: o.Rank, Alpha: o.Alpha, Scaling: float64(p.Scaling),
			Count: e.Count, Params: e.Params, DoRA: o.DoRA, In: int(e.In), Out: int(e.Out)})
	}
	for i := 0; i < cfg.Layers; i++ {
		r.Layers = append(r.Layers, i)
	}
	r.Percent = 100 * float64(r.TrainableParams) / float64(r.TotalParams)
	r.AdapterBytes = map[string]int64{"bf16": 2 * r.TrainableParams, "f32": 4 * r.TrainableParams}
	r.Bytes = 2 * r.TotalParams
	r.Memory = memory(cfg, o, r.TotalParams, cfg.Quantizable(), r.TrainableParams)
	return r, nil
}

func memory(cfg *arch.Config, o PlanOptions, total, quantizable, trainable int64) *MemoryPlan {
	batch, seq := int64(max(o.Batch, 1)), int64(max(o.Seq, 1))
	tokens := batch * seq
	h, i := int64(cfg.Hidden), int64(cfg.Intermediate)
	q, k := int64(cfg.Heads*cfg.HeadDim), int64(cfg.KVHeads*cfg.HeadDim)
	L := int64(cfg.Layers)
	saved := 6*h + 2*q + 2*k + 5*i
	if cfg.QKNorm {
		saved += q + k
	}
	if cfg.SandwichNorms {
		saved += 2 * h
	}
	perLayer := 2 * tokens * saved
	acts := perLayer * L
	if o.GradCheckpoint {
		acts = 2*tokens*h*L + perLayer
	}
	acts += 4 * tokens * (h + min(int64(cfg.Vocab), 8192))
	opt := MemoryParts{Adapter: 4 * trainable, Gradients: 4 * trainable, Optimizer: 8 * trainable, Activations: acts}
	lora, qlora := opt, opt
	lora.Weights = 2 * total
	qlora.Weights = int64(math.Ceil(float64(quantizable)*(4+8.0/64+32.0/(64*256))/8)) + 2*(total-quantizable)
	for _, p := range []*MemoryParts{&lora, &qlora} {
		p.Total = p.Weights + p.Adapter + p.Gradients + p.Optimizer + p.Activations
	}
	return &MemoryPlan{LoRA: lora, QLoRA: qlora}
}
