package llama

import (
	"testing"

	"github.com/lorakit/lorakit/pkg/arch"
)

// ownedBytes returns the bytes of the model's own buffers.
func ownedBytes(m *Model) int64 {
	var n int64
	for _, b := range m.owned {
		n += int64(b.Len()) * int64(b.DType().Size())
	}
	return n
}

// checkPlan builds the model of cfg and opt with the adapter specs, reserves
// rows×seq tokens, and requires the plan to be the allocation: the
// workspace byte for byte, the weights and adapters likewise (their
// gradients and values; the plan adds AdamW's two moments).
func checkPlan(t *testing.T, cfg *arch.Config, opt Options, specs []Adapter, load Loader, rows, seq int) MemoryPlan {
	t.Helper()
	m, err := New(newCPU(), cfg, nil, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	weights := ownedBytes(m)
	if err := m.AddAdapters(specs, load); err != nil {
		t.Fatal(err)
	}
	adapters := ownedBytes(m) - weights
	if err := m.Reserve(rows, seq); err != nil {
		t.Fatal(err)
	}
	plan, err := PlanMemory(cfg, opt, specs, rows, seq)
	if err != nil {
		t.Fatal(err)
	}
	var moments int64
	for _, p := range m.Params() {
		moments += 2 * 4 * int64(p.Value.Len())
	}
	if plan.Workspace != m.WorkspaceBytes() || plan.Weights != weights || plan.Adapters != adapters+moments {
		t.Errorf("%s %+v: plan %+v; allocated: weights %d, adapters %d + moments %d, workspace %d", cfg.ModelType, opt, plan,
			weights, adapters, moments, m.WorkspaceBytes())
	}
	return plan
}

// TestPlanMemory checks the plan against what a model allocates: the
// workspace byte for byte (Reserve), the weights and adapters likewise
// (their gradients and values; the plan adds AdamW's two moments).
func TestPlanMemory(t *testing.T) {
	for _, c := range []struct {
		name string
		opt  Options
		kind string
		nf4  bool
	}{
		{"f32", Options{}, "lora", false},
		{"bf16", Options{Precision: PrecisionBF16}, "mlp-only-below", false},
		{"bf16 checkpointing", Options{Precision: PrecisionBF16, GradCheckpoint: true}, "mixed", false},
		{"f32 nf4 checkpointing", Options{GradCheckpoint: true, LossChunk: 5}, "mixed", true},
		{"bf16 nf4", Options{Precision: PrecisionBF16}, "ia3", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			opt := c.opt
			opt.Synthetic = &Synthetic{Seed: 1, Scale: 0.02, NF4: c.nf4}
			plan := checkPlan(t, tinyConfig(), opt, gradSpecs(c.kind), randomAdapters(1), 3, 9)
			if plan.PerToken != float64(plan.Workspace)/27 || plan.Total() != plan.Weights+plan.Adapters+plan.Workspace {
				t.Errorf("per token %v", plan.PerToken)
			}
		})
	}
	if _, err := PlanMemory(tinyConfig(), Options{}, nil, 0, 9); err == nil {
		t.Error("0 rows accepted")
	}
}

// TestPlanMemoryLlama38B logs the plan of Llama-3-8B with the bench's LoRA
// (r 16 on q, k, v, o, dropout 0.05): bytes per token of the workspace in
// bf16 mixed precision, with and without checkpointing, and the weights
// dense and NF4 (docs/gpu.md quotes these figures).
func TestPlanMemoryLlama38B(t *testing.T) {
	cfg, err := arch.Shape("llama3-8b")
	if err != nil {
		t.Fatal(err)
	}
	var specs []Adapter
	for l := range cfg.Layers {
		for _, tg := range []string{Q, K, V, O} {
			specs = append(specs, Adapter{Layer: l, Module: tg, Rank: 16, Scale: 2, Dropout: 0.05})
		}
	}
	for _, c := range []struct {
		name string
		opt  Options
		seq  int
	}{
		{"bf16", Options{Precision: PrecisionBF16}, 2048},
		{"bf16 checkpointing", Options{Precision: PrecisionBF16, GradCheckpoint: true}, 2048},
		{"bf16 checkpointing 128k", Options{Precision: PrecisionBF16, GradCheckpoint: true}, 131072},
		{"bf16 nf4", Options{Precision: PrecisionBF16, Synthetic: &Synthetic{NF4: true}}, 2048},
		{"f32", Options{}, 2048},
	} {
		p, err := PlanMemory(cfg, c.opt, specs, 1, c.seq)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-24s seq %6d: weights %.2f GiB, adapters+AdamW %.3f GiB, workspace %.2f GiB = %.0f KiB/token, total %.2f GiB",
			c.name, c.seq, gib(p.Weights), gib(p.Adapters), gib(p.Workspace), p.PerToken/1024, gib(p.Total()))
	}
}

func gib(b int64) float64 { return float64(b) / (1 << 30) }
