package train

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/internal/randmodel"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/llama"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/tool"
)

// cpuBenchLimit is the base size above which bench refuses the CPU without
// --force.
const cpuBenchLimit = 3e9

// BenchOptions configure Bench: lora-train bench's flags.
type BenchOptions struct {
	// Env gives the CPU threads and progress in steps.
	tool.Env
	// Shape is a built-in shape (llama3-8b, llama3.2-1b) or a config.json.
	Shape string
	// Batch rows of Seq tokens per step; Steps timed steps after one
	// untimed warm-up step.
	Batch, Seq, Steps int
	// DType stores the random base weights: "bf16" or "f32".
	DType string
	// QLoRA passes the projections through NF4.
	QLoRA          bool
	GradCheckpoint bool
	// Force runs shapes above 3B parameters on the CPU.
	Force  bool
	Device string
	// OnStep, when set, is called after every step (the warm-up included).
	OnStep func(r StepResult, total int)
}

// DefaultBenchOptions returns lora-train bench's defaults.
func DefaultBenchOptions() BenchOptions {
	return BenchOptions{Batch: 1, Seq: 2048, Steps: 10, DType: "bf16", Device: "auto"}
}

// BenchResult is the --json output of bench.
type BenchResult struct {
	Schema int `json:"schema"`
	// Version repeats Schema under the key this report had before every
	// lorakit report used "schema"; it goes away in the next release.
	Version        int     `json:"version"`
	Shape          string  `json:"shape"`
	Device         string  `json:"device"`
	Params         int64   `json:"params"`
	Trainable      int64   `json:"trainable"`
	Recipe         string  `json:"recipe"`
	Batch          int     `json:"batch"`
	Seq            int     `json:"seq"`
	Steps          int     `json:"steps"`
	DType          string  `json:"dtype"`
	QLoRA          bool    `json:"qlora"`
	GradCheckpoint bool    `json:"grad_checkpoint"`
	LoadSeconds    float64 `json:"load_s"`
	StepSeconds    float64 `json:"step_s"`     // mean over the timed steps
	StepSecondsMin float64 `json:"step_min_s"` // fastest timed step
	TokensPerS     float64 `json:"tokens_per_s"`
	// TokensPerCPUS is tokens per second of process CPU time (0 where not
	// measured): on a loaded machine, wall time overstates the cost.
	TokensPerCPUS float64 `json:"tokens_per_cpu_s"`
	CPUSeconds    float64 `json:"cpu_s"`         // CPU time of the timed steps
	FLOPPerStep   float64 `json:"flop_per_step"` // model FLOP of one step (see StepFLOP)
	FLOPPerS      float64 `json:"flop_per_s"`
	Loss          float64 `json:"loss"` // of the last step (about ln(vocab) on random weights)
}

// StepFLOP estimates the arithmetic of one LoRA training step of rows×seq
// tokens: the frozen base needs its forward and the gradients with respect
// to its inputs (2 × 2·P·T for the projections and lm_head, no weight
// gradients: the 6·P·T of full fine-tuning does not apply), causal
// attention 3 × 2·L·rows·H·hd·seq² (forward + two backward products), and
// the adapters 3 × 2·r·(in+out)·T; gradient checkpointing adds one forward.
func StepFLOP(c llama.Config, specs []llama.Adapter, rows, seq int, ckpt bool) float64 {
	T := float64(rows * seq)
	var lin float64
	for _, t := range llama.AllTargets {
		o, i := c.ProjShape(t)
		lin += float64(o * i)
	}
	lin = lin*float64(c.Layers) + float64(c.Vocab*c.Hidden)
	hd := c.HeadDim
	if hd == 0 {
		hd = c.Hidden / c.Heads
	}
	attn := 2 * float64(c.Layers) * float64(rows) * float64(c.Heads*hd) * float64(seq) * float64(seq)
	var lora float64
	for _, s := range specs {
		o, i := c.ProjShape(s.Target)
		lora += 2 * float64(s.Rank*(o+i)) * T
	}
	fwd := 2*lin*T + attn + lora
	total := 2*2*lin*T + 3*attn + 3*lora
	if ckpt {
		total += fwd
	}
	return total
}

// randomLoader serves the random weights of internal/randmodel (normal,
// std 0.02; norms 1) for the model c, optionally passed through NF4.
func randomLoader(c llama.Config, qlora bool) llama.Loader {
	rm := randmodel.Config{Hidden: c.Hidden, Intermediate: c.Intermediate, Layers: c.Layers, Heads: c.Heads,
		KVHeads: c.KVHeads, HeadDim: c.HeadDim, Vocab: c.Vocab, Tied: c.TieEmbeddings, Seed: 1, Std: 0.02}
	load := rm.Loader()
	return func(name string) ([]float32, []int, error) {
		v, shape, err := load(name)
		if err != nil {
			return nil, nil, fmt.Errorf("%q: %w", name, llama.ErrNotFound)
		}
		if qlora && strings.HasSuffix(name, "_proj.weight") {
			q, err := nf4.QuantizeTensor(v, []int64{int64(shape[0]), int64(shape[1])}, nf4.DefaultOptions())
			if err != nil {
				return nil, nil, err
			}
			if err := q.State.Dequantize(v, q.Packed); err != nil {
				return nil, nil, err
			}
		}
		return v, shape, nil
	}
}

// Bench is lora-train bench as a function: it times training steps of a
// model shape on deterministic random weights.
func Bench(ctx context.Context, c BenchOptions) (*BenchResult, error) {
	if c.Batch <= 0 || c.Seq <= 1 || c.Steps <= 0 {
		return nil, errclass.Usagef("--batch, --seq (> 1) and --steps must be positive")
	}
	ck, err := checkpoint.LoadConfig(c.Shape)
	if err != nil {
		return nil, err
	}
	cfg, err := LlamaConfig(ck)
	if err != nil {
		return nil, err
	}
	params := ck.Params().Total()
	be, err := NewBackend(c.Device, c.Threads)
	if err != nil {
		return nil, err
	}
	if float64(params) > cpuBenchLimit && !c.Force {
		return nil, errclass.Requirementf("%s has %s parameters: a CPU step at this size takes hours and %s of weights; run it with --force, or use a smaller shape (a config.json)",
			c.Shape, num.Thousands(params), num.Bytes(params*int64(map[string]int{"bf16": 2, "f32": 4}[c.DType]), 1))
	}
	ad, err := NewAdapter(cfg, AdapterOptions{Rank: 16, Alpha: 32, Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj"}, Dropout: 0.05})
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	wdt := compute.F32
	if c.DType == "bf16" {
		wdt = compute.BF16
	}
	model, err := llama.New(be, cfg, randomLoader(cfg, c.QLoRA), llama.Options{WeightDType: wdt, GradCheckpoint: c.GradCheckpoint})
	if err != nil {
		return nil, err
	}
	defer model.Close()
	if err := model.AddAdapters(ad.Specs, InitLoader(cfg, ad.Specs, 1, dtype.F32)); err != nil {
		return nil, err
	}
	load := time.Since(t0)
	rows := make([]Row, c.Batch)
	x := uint64(12345)
	for r := range rows {
		ids := make([]int32, c.Seq)
		for i := range ids {
			x = x*6364136223846793005 + 1442695040888963407
			ids[i] = int32((x >> 33) % uint64(cfg.Vocab))
		}
		rows[r] = Row{IDs: ids, Labels: ids, Segments: []int{c.Seq}}
	}
	set := DefaultSettings()
	set.Schedule, set.MaxSteps, set.Batch, set.Shuffle, set.LR = ScheduleConstant, c.Steps+1, c.Batch, false, 1e-4
	tr, err := NewTrainer(model, rows, 0, set)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	res := &BenchResult{Schema: 1, Version: 1, Shape: c.Shape, Device: be.Name(), Params: params, Batch: c.Batch, Seq: c.Seq,
		Steps: c.Steps, DType: c.DType, QLoRA: c.QLoRA, GradCheckpoint: c.GradCheckpoint, LoadSeconds: load.Seconds(),
		Recipe: "LoRA r=16, alpha=32, q_proj,k_proj,v_proj,o_proj, dropout 0.05, AdamW", StepSecondsMin: math.Inf(1)}
	for _, p := range model.Params() {
		res.Trainable += int64(p.Value.Len())
	}
	var sum float64
	var cpu0 time.Duration
	for i := 0; i <= c.Steps; i++ {
		if err := ctx.Err(); err != nil {
			return nil, errclass.Wrap(errclass.Interrupted, err)
		}
		s0 := time.Now()
		r, err := tr.Step()
		if err != nil {
			return nil, err
		}
		el := time.Since(s0).Seconds()
		if c.OnStep != nil {
			c.OnStep(r, c.Steps+1)
		}
		c.Report(int64(i+1), int64(c.Steps+1))
		res.Loss = r.Loss
		if i == 0 {
			cpu0 = cpuTime()
			continue // warm-up: workspace allocation
		}
		sum += el
		res.StepSecondsMin = min(res.StepSecondsMin, el)
	}
	if cpu0 > 0 {
		res.CPUSeconds = (cpuTime() - cpu0).Seconds()
		res.TokensPerCPUS = float64(c.Steps*c.Batch*c.Seq) / res.CPUSeconds
	}
	res.StepSeconds = sum / float64(c.Steps)
	res.TokensPerS = float64(c.Batch*c.Seq) / res.StepSeconds
	res.FLOPPerStep = StepFLOP(cfg, ad.Specs, c.Batch, c.Seq, c.GradCheckpoint)
	res.FLOPPerS = res.FLOPPerStep / res.StepSeconds
	return res, nil
}
