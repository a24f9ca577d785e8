package llama

import (
	"fmt"

	"github.com/lorakit/lorakit/pkg/compute"
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

// PlanMemory returns what a model of cfg with opt and the adapters specs
// allocates to train on rows×seq tokens, without building it: the same
// code sizes the workspace, so the plan is the allocation, byte for byte.
// opt.Quantized (or Synthetic.NF4) counts the projections as NF4 with double
// quantization in blocks of 64.
func PlanMemory(cfg Config, opt Options, specs []Adapter, rows, seq int) (MemoryPlan, error) {
	if err := cfg.Validate(); err != nil {
		return MemoryPlan{}, err
	}
	if rows <= 0 || seq <= 0 {
		return MemoryPlan{}, fmt.Errorf("%w: shape %d×%d", ErrBatch, rows, seq)
	}
	var err error
	if opt.Precision, err = ParsePrecision(string(opt.Precision)); err != nil {
		return MemoryPlan{}, err
	}
	if opt.WeightDType == 0 {
		opt.WeightDType = compute.F32
		if opt.Precision == PrecisionBF16 {
			opt.WeightDType = compute.BF16
		}
	}
	m := &Model{cfg: cfg, opt: opt, hd: cfg.headDim(), layers: make([]layer, cfg.Layers)}
	var plan MemoryPlan
	wsize := int64(opt.WeightDType.Size())
	quant := opt.Quantized != nil || opt.Synthetic != nil && opt.Synthetic.NF4
	var largest int64
	for l := range m.layers {
		for t := range numTargets {
			out, in := cfg.shape(t)
			n := int64(out) * int64(in)
			m.layers[l].proj[t] = linear{out: out, in: in}
			if !quant {
				plan.Weights += n * wsize
				continue
			}
			blocks := int64(nf4.NumBlocks(int(n), nf4.DefaultBlocksize))
			plan.Weights += int64(nf4.PackedLen(int(n))) + blocks + 4*((blocks+nf4.NestedBlocksize-1)/nf4.NestedBlocksize) + 4*(16+256)
			largest = max(largest, n)
		}
	}
	plan.Weights += largest * wsize // dequantization scratch
	emb := int64(cfg.Vocab) * int64(cfg.Hidden) * wsize
	plan.Weights += emb + 4*int64(cfg.Hidden)*int64(2*cfg.Layers+1) // norms
	if !cfg.TieEmbeddings {
		plan.Weights += emb
	}
	for _, s := range specs {
		if s.Layer < 0 || s.Layer >= cfg.Layers || s.Target >= numTargets {
			return MemoryPlan{}, fmt.Errorf("%w: layer %d, target %v", ErrAdapter, s.Layer, s.Target)
		}
		out, in := cfg.shape(s.Target)
		ad := &adapter{Adapter: s, out: out, in: in}
		m.layers[s.Layer].proj[s.Target].ad = ad
		m.adapters = append(m.adapters, ad)
		var n int64 // trainable values: value, gradient and two moments each
		switch {
		case s.IA3 && s.FeedForward:
			n = int64(in)
		case s.IA3:
			n = int64(out)
		default:
			n = int64(s.Rank) * int64(in+out)
			if s.DoRA {
				n += int64(out)
				plan.Adapters += 4 * int64(out) // the detached norm
			}
		}
		plan.Adapters += 4 * 4 * n
	}
	ws, err := m.newWorkspace(rows, seq, true)
	if err != nil {
		return MemoryPlan{}, err
	}
	plan.Workspace = ws.bytes
	plan.PerToken = float64(ws.bytes) / float64(rows*seq)
	return plan, nil
}
