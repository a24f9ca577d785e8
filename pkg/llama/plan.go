package llama

import (
	"fmt"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/nf4"
)

// MemoryPlan is the device memory a training run of one batch shape needs,
// in bytes, as the model allocates it (PlanMemory). Backend scratch comes on
// top: the bf16 attention's chunk of scores (at most 1 GiB with the CUDA
// backend's default chunk), a GEMM's converted operand, the allocator's
// size classes (under 2 MiB per buffer) and cuBLAS's workspace.
type MemoryPlan struct {
	// Weights holds the frozen weights: dense, or NF4 codes with their
	// block scales plus the dequantization scratch of the largest
	// projection.
	Weights int64
	// Adapters holds the adapters' weights, gradients and AdamW moments
	// (all f32: four copies).
	Adapters int64
	// Workspace holds activations, gradients and scratch for the batch
	// (Model.Reserve).
	Workspace int64
	// PerToken is Workspace divided by the batch's tokens.
	PerToken float64
}

// Total returns Weights + Adapters + Workspace.
func (p MemoryPlan) Total() int64 { return p.Weights + p.Adapters + p.Workspace }

// PlanMemory returns what a model of cfg with opt and the adapter specs
// allocates to train on rows×seq tokens, without building it: the same
// code sizes the workspace, so the plan is the allocation, byte for byte.
// It counts every tensor of the architecture (biases, q/k norms, sandwich
// norms, fused modules, a tied lm_head once) and the activations its
// features keep. opt.Quantized (or Synthetic.NF4) counts the projections as
// NF4 with double quantization in blocks of 64.
func PlanMemory(cfg *arch.Config, opt Options, specs []Adapter, rows, seq int) (MemoryPlan, error) {
	pl, err := newPlan(cfg)
	if err != nil {
		return MemoryPlan{}, err
	}
	if rows <= 0 || seq <= 0 {
		return MemoryPlan{}, fmt.Errorf("%w: shape %d×%d", ErrBatch, rows, seq)
	}
	if opt, err = opt.resolve(); err != nil {
		return MemoryPlan{}, err
	}
	m := newModel(nil, pl, opt)
	var plan MemoryPlan
	wsize := int64(opt.WeightDType.Size())
	quant := opt.Quantized != nil || opt.Synthetic != nil && opt.Synthetic.NF4
	var largest int64
	for _, mp := range pl.modules {
		n := int64(mp.out) * int64(mp.in)
		if mp.hasBias {
			plan.Weights += 4 * int64(mp.out) * int64(cfg.Layers)
		}
		if !quant {
			plan.Weights += n * wsize * int64(cfg.Layers)
			continue
		}
		blocks := int64(nf4.NumBlocks(int(n), nf4.DefaultBlocksize))
		plan.Weights += (int64(nf4.PackedLen(int(n))) + blocks + 4*((blocks+nf4.NestedBlocksize-1)/nf4.NestedBlocksize) +
			4*(16+256)) * int64(cfg.Layers)
		largest = max(largest, n)
	}
	plan.Weights += largest * wsize // dequantization scratch
	emb := int64(cfg.Vocab) * int64(cfg.Hidden) * wsize
	plan.Weights += emb
	if !cfg.TiedEmbeddings {
		plan.Weights += emb
	}
	norms := int64(2) // input_layernorm, post_attention_layernorm
	if cfg.SandwichNorms {
		norms += 2
	}
	plan.Weights += 4 * (int64(cfg.Hidden)*(norms*int64(cfg.Layers)+1) + qkNorms(cfg))
	for _, s := range specs {
		mod, err := m.findModule(&s)
		if err != nil {
			return MemoryPlan{}, err
		}
		if err := checkSpec(&s, mod); err != nil {
			return MemoryPlan{}, err
		}
		ad := &adapter{Adapter: s, path: mod.path, out: mod.out, in: mod.in}
		mod.ad = ad
		m.adapters = append(m.adapters, ad)
		var n int64 // trainable values: value, gradient and two moments each
		switch {
		case s.IA3 && s.FeedForward:
			n = int64(mod.in)
		case s.IA3:
			n = int64(mod.out)
		case s.lora():
			n = int64(s.Rank) * int64(mod.in+mod.out)
			if s.DoRA {
				n += int64(mod.out)
				plan.Adapters += 4 * int64(mod.out) // the detached norm
			}
		}
		if s.Bias {
			n += int64(mod.out)
		}
		plan.Adapters += 4 * 4 * n
	}
	m.sortAdapters()
	ws, err := m.newWorkspace(rows, seq, true)
	if err != nil {
		return MemoryPlan{}, err
	}
	plan.Workspace = ws.bytes
	plan.PerToken = float64(ws.bytes) / float64(rows*seq)
	return plan, nil
}

// qkNorms is the number of q/k norm weights of the model.
func qkNorms(cfg *arch.Config) int64 {
	if !cfg.QKNorm {
		return 0
	}
	return 2 * int64(cfg.HeadDim) * int64(cfg.Layers)
}
