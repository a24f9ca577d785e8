package train

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/llama"
	"github.com/lorakit/lorakit/pkg/tool"
)

// cpuBenchLimit is the base size above which bench refuses the CPU without
// --force.
const cpuBenchLimit = 3e9

// BenchOptions configure Bench: lora-train bench's flags. The recipe is
// lorakit's default LoRA (r 16, α 32, q/k/v/o, dropout 0.05, AdamW) on
// random weights made on the backend (llama.Synthetic) and random tokens.
type BenchOptions struct {
	// Env gives the CPU threads and progress in steps.
	tool.Env
	// Shape is a built-in shape (arch.Shapes) or a config.json path.
	Shape string
	// Batch rows of Seq tokens per step; Steps timed steps after Warmup
	// untimed ones.
	Batch, Seq    int
	Steps, Warmup int
	// Precision is "auto" (bf16 mixed precision on a GPU with bf16 tensor
	// cores, f32 elsewhere), "bf16" or "f32" (ResolvePrecision).
	Precision string
	// DType stores the frozen weights: "bf16" (default; required by bf16
	// precision) or "f32".
	DType          string
	QLoRA          bool
	GradCheckpoint bool
	// Force runs shapes above 3B parameters on the CPU.
	Force  bool
	Device string
	Seed   uint64
	// Backend and Config, when set, replace Device and Shape (a Go program
	// or a test with a backend and a model of its own); Params is then the
	// base's parameter count for the record.
	Backend compute.Backend
	Config  *arch.Config
	Params  int64
	// Ready, when set, is called once the model and the training workspace
	// are allocated, before the first step, with the result so far (memory
	// figures filled).
	Ready func(*BenchResult)
	// OnStep, when set, is called after every step (warm-up included) with
	// the number of steps in all.
	OnStep func(r StepResult, total int)
}

// DefaultBenchOptions returns lora-train bench's defaults.
func DefaultBenchOptions() BenchOptions {
	return BenchOptions{Batch: 1, Seq: 2048, Steps: 10, Warmup: 1, DType: "bf16", Precision: "auto", Device: "auto"}
}

// BenchResult is the --json output of bench.
type BenchResult struct {
	Schema int `json:"schema"` // 2: adds precision, MFU and device memory
	// Version repeats Schema under the key this report had before every
	// lorakit report used "schema"; it goes away in the next release.
	Version        int     `json:"version"`
	Shape          string  `json:"shape"`
	Device         string  `json:"device"`  // the backend's name
	Backend        string  `json:"backend"` // "cuda", "cpu"
	DeviceName     string  `json:"device_name,omitempty"`
	CC             int     `json:"compute_capability,omitempty"`
	Precision      string  `json:"precision"` // "bf16" (mixed) or "f32"
	Params         int64   `json:"params"`
	Trainable      int64   `json:"trainable"`
	Recipe         string  `json:"recipe"`
	Batch          int     `json:"batch"`
	Seq            int     `json:"seq"`
	Steps          int     `json:"steps"`
	DType          string  `json:"dtype"` // storage of the frozen weights
	QLoRA          bool    `json:"qlora"`
	GradCheckpoint bool    `json:"grad_checkpoint"`
	LoadSeconds    float64 `json:"load_s"`
	StepSeconds    float64 `json:"step_s"`     // mean over the timed steps
	StepSecondsMin float64 `json:"step_min_s"` // fastest timed step
	TokensPerS     float64 `json:"tokens_per_s"`
	// TokensPerCPUS is tokens per second of process CPU time (0 where not
	// measured): on a loaded machine, wall time overstates the cost.
	TokensPerCPUS float64 `json:"tokens_per_cpu_s"`
	CPUSeconds    float64 `json:"cpu_s"` // CPU time of the timed steps
	// FLOPPerStep is the model arithmetic of one step (StepFLOP without
	// recomputation); HardwareFLOPPerStep adds gradient checkpointing's
	// recomputed forward.
	FLOPPerStep         float64 `json:"flop_per_step"`
	HardwareFLOPPerStep float64 `json:"hw_flop_per_step"`
	FLOPPerS            float64 `json:"flop_per_s"`
	// PeakFLOPS is the device's dense peak for the precision in use
	// (DevicePeak; 0: unknown), MFU and HFU the model and hardware FLOP/s
	// over it.
	PeakFLOPS  float64 `json:"peak_flops"`
	PeakSource string  `json:"peak_source,omitempty"`
	MFU        float64 `json:"mfu"`
	HFU        float64 `json:"hfu"`
	// Device memory (backends with a caching allocator; 0 elsewhere): the
	// peak in use over the run, what the allocator reserved at most, the
	// weights and adapters, the training workspace, and the device's total.
	PeakMemory     int64   `json:"peak_memory_bytes"`
	PeakReserved   int64   `json:"peak_reserved_bytes"`
	WeightMemory   int64   `json:"weight_bytes"`
	WorkspaceBytes int64   `json:"workspace_bytes"`
	DeviceMemory   int64   `json:"device_memory_bytes,omitempty"`
	Loss           float64 `json:"loss"` // of the last step (about ln(vocab) on random weights)
}

// StepFLOP estimates the arithmetic of one LoRA training step of rows×seq
// tokens: the frozen base needs its forward and the gradients with respect
// to its inputs (2 × 2·P·T for the projections and lm_head, no weight
// gradients: the 6·P·T of full fine-tuning does not apply), causal
// attention 3 × 4·rows·H·hd·K per layer (forward + two backward products)
// with K the query-key pairs a sequence scores (seq²/2 causal, less with a
// sliding window), and the adapters 3 × 2·r·(in+out)·T; gradient
// checkpointing adds one forward.
func StepFLOP(c *arch.Config, specs []llama.Adapter, rows, seq int, ckpt bool) float64 {
	T := float64(rows * seq)
	var lin float64
	shape := map[string]arch.Linear{}
	for _, l := range c.Linears() {
		shape[l.Module] = l
		if l.Module != "lm_head" && !l.Embedding {
			lin += float64(l.Out * l.In)
		}
	}
	lin = lin*float64(c.Layers) + float64(c.Vocab*c.Hidden)
	var attn float64
	s := float64(seq)
	for _, a := range c.Attention {
		pairs := s * s / 2
		if w := float64(a.Window); a.Sliding && w < s {
			pairs -= (s - w) * (s - w) / 2
		}
		attn += 4 * float64(rows) * float64(c.Heads*c.HeadDim) * pairs
	}
	var lora float64
	for _, sp := range specs {
		l := shape[sp.Module]
		lora += 2 * float64(int64(sp.Rank)*(l.Out+l.In)) * T
	}
	fwd := 2*lin*T + attn + lora
	total := 2*2*lin*T + 3*attn + 3*lora
	if ckpt {
		total += fwd
	}
	return total
}

// benchRecipe is the adapter bench trains: r 16, α 32 on the attention
// projections, dropout 0.05.
func benchRecipe(cfg *arch.Config) AdapterOptions {
	return AdapterOptions{Rank: 16, Alpha: 32, Targets: cfg.AttentionTargets(), Dropout: 0.05}
}

// BenchConfig reads a bench shape: a built-in shape's name (arch.Shapes) or
// a config.json path.
func BenchConfig(shape string) (*arch.Config, error) {
	raw, err := arch.ShapeJSON(shape)
	if err != nil {
		var ferr error
		if raw, ferr = os.ReadFile(shape); ferr != nil {
			return nil, errclass.Usagef("--shape %q is neither a built-in shape (%s) nor a readable config.json: %v",
				shape, strings.Join(arch.Shapes(), ", "), ferr)
		}
	}
	cfg, err := arch.ParseConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", shape, err)
	}
	return cfg, nil
}

// Bench is lora-train bench as a function: it times training steps of
// opt's shape on the backend opt.Device names. The model is built from
// random weights on the backend (no host traffic, so an 8B shape starts in
// seconds on a GPU), the workspace is reserved, opt.Warmup steps run
// untimed and opt.Steps timed. It reports tokens/s, the model FLOP rate and
// MFU against the device's peak for the precision in use, and the peak
// device memory.
func Bench(ctx context.Context, opt BenchOptions) (*BenchResult, error) {
	if opt.Batch <= 0 || opt.Seq <= 1 || opt.Steps <= 0 || opt.Warmup < 0 {
		return nil, errclass.Usagef("--batch, --seq (> 1) and --steps must be positive, --warmup not negative")
	}
	cfg := opt.Config
	params := opt.Params
	if cfg == nil {
		var err error
		if cfg, err = BenchConfig(opt.Shape); err != nil {
			return nil, err
		}
		params = cfg.Params().Total()
	}
	be := opt.Backend
	if be == nil {
		var err error
		if be, err = NewBackend(opt.Device, opt.Threads); err != nil {
			return nil, err
		}
	}
	if _, onCPU := be.(*cpu.Backend); onCPU && float64(params) > cpuBenchLimit && !opt.Force {
		return nil, errclass.Requirementf("%s has %s parameters: a CPU step at this size takes hours and %s of weights; run it with --force, or use a smaller shape (a config.json)",
			opt.Shape, num.Thousands(params), num.Bytes(params*int64(map[string]int{"bf16": 2, "f32": 4}[opt.DType]), 1))
	}
	prec, err := ResolvePrecision(be, opt.Precision)
	if err != nil {
		return nil, err
	}
	wdt := compute.BF16
	if opt.DType == "f32" {
		if prec == llama.PrecisionBF16 {
			return nil, errclass.Usagef("--dtype f32 with bf16 precision: bf16 mixed precision keeps the frozen weights in bf16")
		}
		wdt = compute.F32
	}
	recipe := benchRecipe(cfg)
	ad, err := NewAdapter(cfg, recipe)
	if err != nil {
		return nil, err
	}
	res := &BenchResult{Schema: 2, Version: 2, Shape: opt.Shape, Device: be.Name(), Backend: "cuda", Precision: string(prec),
		Params: params, Batch: opt.Batch, Seq: opt.Seq, Steps: opt.Steps, DType: map[compute.DType]string{
			compute.F32: "f32", compute.BF16: "bf16"}[wdt], QLoRA: opt.QLoRA, GradCheckpoint: opt.GradCheckpoint,
		Recipe:         fmt.Sprintf("LoRA r=16, alpha=32, %s, dropout 0.05, AdamW", strings.Join(recipe.Targets, ",")),
		StepSecondsMin: math.Inf(1)}
	if _, ok := be.(*cpu.Backend); ok {
		res.Backend = "cpu"
	}
	if d, ok := be.(compute.Describer); ok {
		dev := d.Device()
		res.DeviceName, res.CC, res.DeviceMemory = dev.Name, dev.ComputeCapability, dev.Memory
		pk := DevicePeak(dev, prec)
		res.PeakFLOPS, res.PeakSource = pk.FLOPS, pk.Source
	}
	mem, _ := be.(compute.MemoryReporter)
	if mem != nil {
		mem.ResetPeakMemory()
	}
	t0 := time.Now()
	model, err := llama.New(be, cfg, nil, llama.Options{Precision: prec, WeightDType: wdt, GradCheckpoint: opt.GradCheckpoint,
		Synthetic: &llama.Synthetic{Seed: opt.Seed, Scale: 0.034, NF4: opt.QLoRA}})
	if err != nil {
		return nil, err
	}
	defer model.Close()
	if err := model.AddAdapters(ad.Specs, InitLoader(cfg, ad.Specs, 1, dtype.F32)); err != nil {
		return nil, err
	}
	for _, p := range model.Params() {
		res.Trainable += int64(p.Value.Len())
	}
	rows := make([]Row, opt.Batch)
	x := opt.Seed*0x9E3779B97F4A7C15 + 12345
	for r := range rows {
		ids := make([]int32, opt.Seq)
		for i := range ids {
			x = x*6364136223846793005 + 1442695040888963407
			ids[i] = int32((x >> 33) % uint64(cfg.Vocab))
		}
		rows[r] = Row{IDs: ids, Labels: ids, Segments: []int{opt.Seq}}
	}
	set := DefaultSettings()
	set.Schedule, set.MaxSteps, set.Batch, set.Shuffle, set.LR = ScheduleConstant, opt.Warmup+opt.Steps, opt.Batch, false, 1e-4
	tr, err := NewTrainer(model, rows, 0, set)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	if mem != nil {
		res.WeightMemory = mem.MemoryStats().InUse
	}
	if err := model.Reserve(opt.Batch, opt.Seq); err != nil {
		return nil, fmt.Errorf("%d×%d tokens: %w", opt.Batch, opt.Seq, err)
	}
	if err := be.Sync(); err != nil {
		return nil, err
	}
	res.LoadSeconds = time.Since(t0).Seconds()
	res.WorkspaceBytes = model.WorkspaceBytes()
	res.memory(mem)
	if opt.Ready != nil {
		opt.Ready(res)
	}
	var sum float64
	var cpu0 time.Duration
	for i := range opt.Warmup + opt.Steps {
		if err := ctx.Err(); err != nil {
			return nil, errclass.Wrap(errclass.Interrupted, err)
		}
		if i == opt.Warmup {
			cpu0 = cpuTime()
		}
		s0 := time.Now()
		r, err := tr.Step()
		if err != nil {
			return nil, err
		}
		el := time.Since(s0).Seconds()
		if opt.OnStep != nil {
			opt.OnStep(r, opt.Warmup+opt.Steps)
		}
		opt.Report(int64(i+1), int64(opt.Warmup+opt.Steps))
		res.Loss = r.Loss
		if i >= opt.Warmup {
			sum += el
			res.StepSecondsMin = min(res.StepSecondsMin, el)
		}
	}
	if cpu0 > 0 {
		res.CPUSeconds = (cpuTime() - cpu0).Seconds()
		res.TokensPerCPUS = float64(opt.Steps*opt.Batch*opt.Seq) / res.CPUSeconds
	}
	res.memory(mem)
	res.StepSeconds = sum / float64(opt.Steps)
	res.TokensPerS = float64(opt.Batch*opt.Seq) / res.StepSeconds
	res.FLOPPerStep = StepFLOP(cfg, ad.Specs, opt.Batch, opt.Seq, false)
	res.HardwareFLOPPerStep = StepFLOP(cfg, ad.Specs, opt.Batch, opt.Seq, opt.GradCheckpoint)
	res.FLOPPerS = res.FLOPPerStep / res.StepSeconds
	if res.PeakFLOPS > 0 {
		res.MFU = res.FLOPPerS / res.PeakFLOPS
		res.HFU = res.HardwareFLOPPerStep / res.StepSeconds / res.PeakFLOPS
	}
	return res, nil
}

// memory records the allocator's peaks.
func (r *BenchResult) memory(mem compute.MemoryReporter) {
	if mem == nil {
		return
	}
	st := mem.MemoryStats()
	r.PeakMemory, r.PeakReserved = st.Peak, st.PeakReserved
}

// WriteText prints r for a person: the same figures as the JSON.
func (r *BenchResult) WriteText(w io.Writer) {
	gib := func(n int64) string { return num.Bytes(n, 1) }
	fmt.Fprintf(w, "shape          %s (%s parameters; %s trainable)\n", r.Shape, num.Thousands(r.Params), num.Thousands(r.Trainable))
	fmt.Fprintf(w, "recipe         %s\n", r.Recipe)
	fmt.Fprintf(w, "device         %s\n", r.Device)
	fmt.Fprintf(w, "precision      %s (%s weights%s%s)\n", map[string]string{"bf16": "bf16 mixed", "f32": "f32"}[r.Precision], r.DType,
		map[bool]string{true: ", NF4 projections"}[r.QLoRA], map[bool]string{true: ", gradient checkpointing"}[r.GradCheckpoint])
	fmt.Fprintf(w, "batch x seq    %d x %d\n", r.Batch, r.Seq)
	fmt.Fprintf(w, "step           %.3f s mean, %.3f s min over %d steps (load %.1f s)\n", r.StepSeconds, r.StepSecondsMin, r.Steps, r.LoadSeconds)
	fmt.Fprintf(w, "tokens/s       %.1f (%.1f per CPU-second)\n", r.TokensPerS, r.TokensPerCPUS)
	fmt.Fprintf(w, "model FLOP/s   %.4g TFLOP/s (%.4g TFLOP per step", r.FLOPPerS/1e12, r.FLOPPerStep/1e12)
	if r.HardwareFLOPPerStep != r.FLOPPerStep {
		fmt.Fprintf(w, ", %.4g with recomputation", r.HardwareFLOPPerStep/1e12)
	}
	fmt.Fprintln(w, ")")
	if r.PeakFLOPS > 0 {
		fmt.Fprintf(w, "MFU            %.1f%% (HFU %.1f%%) of %.0f TFLOP/s, %s\n", 100*r.MFU, 100*r.HFU, r.PeakFLOPS/1e12, r.PeakSource)
	} else {
		fmt.Fprintf(w, "MFU            n/a (no peak known for this device)\n")
	}
	if r.PeakMemory > 0 {
		fmt.Fprintf(w, "device memory  %s peak (%s reserved); weights and adapters %s, workspace %s", gib(r.PeakMemory),
			gib(r.PeakReserved), gib(r.WeightMemory), gib(r.WorkspaceBytes))
		if r.DeviceMemory > 0 {
			fmt.Fprintf(w, "; device %s", gib(r.DeviceMemory))
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "device memory  n/a (workspace %s)\n", gib(r.WorkspaceBytes))
	}
	fmt.Fprintf(w, "loss           %.4f\n", r.Loss)
}
