package train

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/cli"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
	"github.com/lorakit/lorakit/pkg/compute/cuda"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/llama"
)

// Description is lora-train's --help text.
const Description = `Train a LoRA, DoRA or IA3 adapter on a Llama-family model from JSONL data.

The base is an HF folder, a .safetensors file or '-' (bf16/f16/f32 weights, or a
bitsandbytes NF4/FP4 checkpoint: QLoRA, dequantized on the fly). The data is JSONL,
one example per line: {"text": ...}, {"prompt": ..., "completion": ...} (loss on the
completion), {"messages": [...]} (the model's chat template; loss on assistant turns)
or {"input_ids": [...], "labels": [...]} (pre-tokenized; -100 masks). A bad line is an
error naming it. The output is a PEFT adapter: a folder, a .safetensors file or '-'.

Optimizer and schedule follow transformers' Trainer exactly (AdamW, warmup with the
one-step lag, clipping, gradient accumulation with the token-count denominator).
Same inputs, flags and seed give the same adapter bytes, whatever the thread count.

Examples:
  lora-train --base ./Llama-3.2-1B --data train.jsonl -o my-adapter
  lora-train --base ./tiny --data ids.jsonl -o a.safetensors --max-steps 100 --log log.jsonl
  lora-train --base M --data d.jsonl -o A --method ia3          # (IA)3 vectors on k, v, down_proj
  lora-train --base M --data d.jsonl -o A --save-every 50       # checkpoints in A.checkpoints/
  lora-train --base M --data d.jsonl -o A --resume A.checkpoints
  lora-train eval --base M --adapter A --data test.jsonl --json
  lora-train bench --shape llama3.2-1b --batch 1 --seq 512 --steps 3`

// Command is lora-train's command line.
type Command struct {
	cli.Globals
	Train TrainCmd `cmd:"" default:"withargs" help:"Train an adapter (the default command)."`
	Eval  EvalCmd  `cmd:"" help:"Mean loss of a model (and adapter) on JSONL data, without training."`
	Bench BenchCmd `cmd:"" help:"Time training steps of a model shape on random weights."`
}

// DeviceFlags choose the compute backend.
type DeviceFlags struct {
	Device  string `default:"auto" enum:"auto,cpu,cuda" help:"Compute device: auto (GPU when usable, else CPU), cpu, cuda."`
	Threads int    `default:"0" help:"CPU threads (0: all cores). Results do not depend on it."`
}

// Backend returns the backend the flags select.
func (d DeviceFlags) Backend() (compute.Backend, error) {
	switch d.Device {
	case "cuda":
		be, err := cuda.New(cuda.Options{})
		if err != nil {
			return nil, errclass.Requirementf("--device cuda: no usable GPU: %v; use --device cpu", err)
		}
		return be, nil
	case "", "auto", "cpu":
		// auto stays on the CPU until the CUDA backend has been validated
		// on a GPU against this reference (see scripts/gpu-check.sh).
		if d.Threads < 0 {
			return nil, errclass.Usagef("--threads %d", d.Threads)
		}
		return cpu.New(d.Threads), nil
	}
	return nil, errclass.Usagef("--device %q (auto, cpu, cuda)", d.Device)
}

// TrainCmd is `lora-train --base M --data FILE -o ADAPTER`.
type TrainCmd struct {
	Base   string `required:"" help:"Base model: HF folder, .safetensors file, or '-' (stdin)." placeholder:"MODEL"`
	Data   string `required:"" help:"Training data (JSONL)." placeholder:"FILE"`
	Output string `short:"o" required:"" help:"Output adapter: a folder (PEFT), FILE.safetensors, or '-' (stdout)." placeholder:"ADAPTER"`

	Method   string   `default:"lora" enum:"lora,ia3" help:"Adapter method: lora (LoRA; DoRA with --dora), or ia3 ((IA)3 scaling vectors on k_proj, v_proj and down_proj, as PEFT's IA3Config defaults; takes no --rank, --alpha, --dropout, --dora, --rslora or --targets)."`
	Rank     int      `short:"r" default:"16" help:"LoRA rank r."`
	Alpha    float64  `default:"32" help:"LoRA alpha (scaling alpha/r, or alpha/sqrt(r) with --rslora)."`
	Dropout  float64  `default:"0.05" help:"Dropout on the adapter input during training."`
	Targets  []string `default:"q_proj,k_proj,v_proj,o_proj" help:"Projections to adapt (comma-separated), or all-linear."`
	DoRA     bool     `name:"dora" help:"Train a DoRA adapter (weight-decomposed: adds a magnitude vector)."`
	RSLoRA   bool     `name:"rslora" help:"Rank-stabilized scaling alpha/sqrt(r)."`
	InitFrom string   `name:"init-from" help:"Start from an existing PEFT LoRA/DoRA or IA3 adapter (its method, rank, alpha, targets and DoRA setting are used)." placeholder:"ADAPTER"`

	LR          float64 `name:"lr" default:"2e-4" help:"Peak learning rate."`
	Schedule    string  `default:"cosine" enum:"constant,constant_with_warmup,linear,cosine" help:"Learning-rate schedule: constant, constant_with_warmup, linear, cosine."`
	Warmup      float64 `default:"0" help:"Warm-up steps, or a ratio of the total steps when below 1."`
	Epochs      float64 `default:"1" help:"Epochs over the data (may be fractional)."`
	MaxSteps    int     `name:"max-steps" default:"0" help:"Number of updates (overrides --epochs when > 0)."`
	Batch       int     `default:"4" help:"Examples per micro-batch."`
	GradAccum   int     `name:"grad-accum" default:"1" help:"Micro-batches per update."`
	Seq         int     `default:"2048" help:"Maximum tokens per example (longer ones are truncated, and reported)."`
	Pack        bool    `help:"Pack short examples into rows of --seq tokens (best-fit decreasing); attention and positions stay within each example."`
	WeightDecay float64 `name:"weight-decay" default:"0" help:"AdamW decoupled weight decay."`
	MaxGradNorm float64 `name:"max-grad-norm" default:"1" help:"Clip the global gradient norm (0: off)."`
	Seed        uint64  `default:"42" help:"Seed of the initialisation, the shuffle and dropout."`
	Shuffle     bool    `default:"true" negatable:"" help:"Shuffle the examples each epoch (--shuffle=false keeps file order)."`
	Unshifted   bool    `name:"unshifted-count" help:"Count the loss denominator on unshifted labels, as transformers before 2026-05 (for comparisons)."`

	DeviceFlags
	GradCheckpoint bool `name:"grad-checkpoint" help:"Recompute activations in the backward pass (less memory, ~30% slower)."`

	Eval      string `help:"Evaluation data (JSONL): eval loss at the end and every --eval-every steps." placeholder:"FILE"`
	EvalEvery int    `name:"eval-every" default:"0" help:"Evaluate every N updates (with --eval)."`
	Log       string `help:"Write one JSON object per update: step, loss, lr, grad_norm, tokens, tokens_per_s (and epoch, targets, eval_loss)." placeholder:"FILE.jsonl"`
	SaveEvery int    `name:"save-every" default:"0" help:"Save a checkpoint (adapter, optimizer state, position) every N updates."`
	SaveDir   string `name:"save-dir" help:"Folder for checkpoint-N folders (default: the output path + '.checkpoints')." placeholder:"DIR"`
	StopAfter int    `name:"stop-after" default:"0" help:"Stop after this update (the run keeps its planned length), saving a checkpoint to resume from."`
	Resume    string `help:"Continue a run bit for bit from a checkpoint folder (or the newest one in a --save-dir)." placeholder:"DIR"`
}

// settings collects the flags that decide the result.
func (c *TrainCmd) settings() Settings {
	s := DefaultSettings()
	s.LR, s.Schedule, s.Warmup, s.Epochs, s.MaxSteps = c.LR, c.Schedule, c.Warmup, c.Epochs, c.MaxSteps
	s.Batch, s.GradAccum, s.WeightDecay, s.MaxGradNorm = c.Batch, c.GradAccum, c.WeightDecay, c.MaxGradNorm
	s.Seed, s.Shuffle, s.UnshiftedCount = c.Seed, c.Shuffle, c.Unshifted
	return s
}

func (c *TrainCmd) saveDir() (string, error) {
	if c.SaveDir != "" {
		return c.SaveDir, nil
	}
	if c.Output == "-" {
		return "", errclass.Usagef("--save-every and --stop-after need --save-dir when the output is '-'")
	}
	o := strings.TrimRight(c.Output, string(filepath.Separator))
	for _, ext := range []string{".gz", ".zst", ".safetensors"} {
		o = strings.TrimSuffix(o, ext)
	}
	return o + ".checkpoints", nil
}

// Run trains.
func (c *TrainCmd) Run(ctx *cli.Context) error {
	if c.Seq <= 0 || c.Seq > 1<<20 {
		return errclass.Usagef("--seq %d", c.Seq)
	}
	if c.EvalEvery < 0 || c.SaveEvery < 0 || c.StopAfter < 0 {
		return errclass.Usagef("--eval-every, --save-every and --stop-after must not be negative")
	}
	if c.EvalEvery > 0 && c.Eval == "" {
		return errclass.Usagef("--eval-every needs --eval FILE")
	}
	if stdinUses(c.Base, c.Data, c.Eval, c.InitFrom) > 1 {
		return errclass.Usagef("stdin ('-') can be read once")
	}
	if err := c.checkMethod(); err != nil {
		return err
	}
	set := c.settings()
	if err := set.check(); err != nil {
		return err
	}
	be, err := c.DeviceFlags.Backend()
	if err != nil {
		return err
	}
	base, err := OpenBase(c.Base, os.Stdin)
	if err != nil {
		return err
	}
	defer base.Close()
	do := DataOptions{Tokenizer: base.Tokenizer, ChatTemplate: base.ChatTemplate, Vocab: base.Config.Vocab, Seq: c.Seq}
	examples, err := readDataFile(ctx, c.Data, do)
	if err != nil {
		return err
	}
	var evalEx []Example
	if c.Eval != "" {
		if evalEx, err = readDataFile(ctx, c.Eval, do); err != nil {
			return err
		}
	}
	rows := Rows(examples)
	if c.Pack {
		rows = Pack(examples, c.Seq)
		ctx.Infof("packed %d examples into %d rows of up to %d tokens", len(examples), len(rows), c.Seq)
	}

	// The adapter's structure and initial values.
	var (
		ad   *Adapter
		load llama.Loader
	)
	if c.InitFrom != "" {
		if ad, load, err = OpenAdapter(c.InitFrom, os.Stdin, base.Config, c.Dropout); err != nil {
			return err
		}
		for _, w := range ad.Warnings {
			ctx.Warnf("%s: %s", c.InitFrom, w)
		}
		c.warnIgnored(ctx, ad)
		if !ad.IsIA3() {
			ad.Config.LoraDropout = c.Dropout
		}
	} else if c.Method == MethodIA3 {
		if ad, err = NewIA3Adapter(base.Config); err != nil {
			return err
		}
		load = InitLoader(base.Config, ad.Specs, c.Seed, base.AdapterDType)
	} else {
		if ad, err = NewAdapter(base.Config, AdapterOptions{Rank: c.Rank, Alpha: c.Alpha, Targets: c.Targets,
			DoRA: c.DoRA, RSLoRA: c.RSLoRA, Dropout: c.Dropout}); err != nil {
			return err
		}
		load = InitLoader(base.Config, ad.Specs, c.Seed, base.AdapterDType)
	}
	if c.Base != "-" {
		ad.Config.BaseModelNameOrPath = c.Base
	}
	resume := ""
	if c.Resume != "" {
		if resume, err = findCheckpoint(c.Resume); err != nil {
			return err
		}
		ck, ckLoad, err := OpenAdapter(resume, nil, base.Config, c.Dropout)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrResume, err)
		}
		if !sameSpecs(ck.Specs, ad.Specs) {
			return fmt.Errorf("%w: %s: the checkpoint's adapter (rank, alpha, targets, DoRA, dropout) differs from this run's", ErrResume, resume)
		}
		load = ckLoad
	}

	model, err := base.NewModel(be, llama.Options{GradCheckpoint: c.GradCheckpoint})
	if err != nil {
		return err
	}
	defer model.Close()
	if err := model.AddAdapters(ad.Specs, load); err != nil {
		return err
	}
	pad := padID(base)
	tr, err := NewTrainer(model, rows, pad, set)
	if err != nil {
		return err
	}
	defer tr.Close()
	if resume != "" {
		if err := tr.Restore(resume); err != nil {
			return err
		}
		ctx.Infof("resuming %s at step %d of %d", resume, tr.State().Step, tr.Total())
	}
	ctx.Infof("%s; %d examples, %d micro-batches per epoch, %d updates (warmup %d); %s", base.Path, len(rows),
		tr.BatchesPerEpoch(), tr.Total(), tr.Schedule().Warmup, be.Name())

	var logw io.Writer
	if c.Log != "" {
		f, err := openLog(c.Log, resume != "", tr.State().Step)
		if err != nil {
			return err
		}
		defer f.Close()
		logw = f
	}
	saveDir := ""
	if c.SaveEvery > 0 || c.StopAfter > 0 {
		if saveDir, err = c.saveDir(); err != nil {
			return err
		}
		if err := os.MkdirAll(saveDir, 0o755); err != nil {
			return err
		}
	}
	save := func(step int) error {
		dir := filepath.Join(saveDir, fmt.Sprintf("checkpoint-%d", step))
		if err := tr.SaveCheckpoint(dir, ad, ctx.Cleanup); err != nil {
			return err
		}
		ctx.Infof("saved %s", dir)
		return nil
	}

	prog := newProgress(ctx, tr.Total(), tr.State().Step)
	defer prog.done()
	start := time.Now()
	var first, last StepResult
	var lastEval *EvalResult
	firstStep := tr.State().Step + 1
	for !tr.Done() {
		if err := ctx.Err(); err != nil {
			return errclass.Wrap(errclass.Interrupted, err)
		}
		r, err := tr.Step()
		if err != nil {
			return err
		}
		if r.Targets == 0 {
			ctx.Warnf("step %d has no scored tokens (every label is -100): its loss is reported as 0", r.Step)
		}
		if evalEx != nil && ((c.EvalEvery > 0 && r.Step%c.EvalEvery == 0) || tr.Done()) {
			if lastEval, err = Evaluate(model, evalEx); err != nil {
				return err
			}
			l := lastEval.Loss
			r.EvalLoss = &l
		}
		if r.Step == firstStep {
			first = r
		}
		last = r
		if logw != nil {
			line, _ := json.Marshal(r)
			if _, err := logw.Write(append(line, '\n')); err != nil {
				return fmt.Errorf("%s: %w", c.Log, err)
			}
		}
		prog.update(r)
		if c.SaveEvery > 0 && r.Step%c.SaveEvery == 0 && !tr.Done() {
			if err := save(r.Step); err != nil {
				return err
			}
		}
		if c.StopAfter > 0 && r.Step >= c.StopAfter && !tr.Done() {
			if c.SaveEvery == 0 || r.Step%c.SaveEvery != 0 {
				if err := save(r.Step); err != nil {
					return err
				}
			}
			prog.done()
			fmt.Fprintf(c.reportTo(ctx), "stopped after step %d of %d; resume with --resume %s\n", r.Step, tr.Total(),
				filepath.Join(saveDir, fmt.Sprintf("checkpoint-%d", r.Step)))
			return nil
		}
	}
	prog.done()
	if err := WriteAdapter(c.Output, ad, model); err != nil {
		return err
	}
	w := c.reportTo(ctx)
	if !ctx.Quiet {
		el := time.Since(start)
		fmt.Fprintf(w, "trained %d updates (steps %d-%d) in %s: loss %.4f -> %.4f, %s tokens/s\n", last.Step-firstStep+1,
			firstStep, last.Step, el.Round(time.Millisecond), first.Loss, last.Loss,
			num.Thousands(int64(float64(prog.tokens)/max(el.Seconds(), 1e-9))))
		if lastEval != nil {
			fmt.Fprintf(w, "eval loss %.4f (perplexity %.2f) over %d tokens\n", lastEval.Loss, lastEval.Perplexity, lastEval.Targets)
		}
		if c.Output != "-" {
			fmt.Fprintf(w, "adapter written to %s\n", c.Output)
		}
	}
	return nil
}

// Defaults of the structure flags, to tell the ones given.
const (
	defaultRank    = 16
	defaultAlpha   = 32
	defaultDropout = 0.05
	defaultTargets = "q_proj,k_proj,v_proj,o_proj"
)

// loraFlags names the LoRA structure flags given with values other than
// their defaults.
func (c *TrainCmd) loraFlags() []string {
	var set []string
	add := func(name string, given bool) {
		if given {
			set = append(set, name)
		}
	}
	add("--rank", c.Rank != defaultRank)
	add("--alpha", c.Alpha != defaultAlpha)
	add("--dropout", c.Dropout != defaultDropout)
	add("--dora", c.DoRA)
	add("--rslora", c.RSLoRA)
	add("--targets", strings.Join(c.Targets, ",") != defaultTargets)
	return set
}

// checkMethod refuses LoRA structure flags with --method ia3.
func (c *TrainCmd) checkMethod() error {
	switch c.Method {
	case "", MethodLoRA:
		return nil
	case MethodIA3:
		if f := c.loraFlags(); len(f) > 0 {
			return errclass.Usagef("--method ia3 takes no %s (IA3 learns scaling vectors on k_proj, v_proj and down_proj)", strings.Join(f, ", "))
		}
		return nil
	}
	return errclass.Usagef("--method %q (lora, ia3)", c.Method)
}

// warnIgnored warns about structure flags that --init-from overrides
// (those left at their defaults are not mentioned).
func (c *TrainCmd) warnIgnored(ctx *cli.Context, ad *Adapter) {
	if ad.IsIA3() {
		if f := c.loraFlags(); len(f) > 0 {
			ctx.Warnf("--init-from: ignoring %s (the adapter is IA3)", strings.Join(f, ", "))
		}
		return
	}
	if c.Method == MethodIA3 {
		ctx.Warnf("--init-from: ignoring --method ia3 (the adapter is %s)", ad.Config.PeftType)
	}
	pc := ad.Config
	if c.Rank != defaultRank && c.Rank != pc.R {
		ctx.Warnf("--init-from: ignoring --rank %d (the adapter has r=%d)", c.Rank, pc.R)
	}
	if c.Alpha != defaultAlpha && c.Alpha != pc.LoraAlpha {
		ctx.Warnf("--init-from: ignoring --alpha %g (the adapter has lora_alpha=%g)", c.Alpha, pc.LoraAlpha)
	}
	if c.DoRA && !ad.Specs[0].DoRA {
		ctx.Warnf("--init-from: ignoring --dora (the adapter is plain LoRA)")
	}
	if c.RSLoRA && !pc.UseRSLoRA {
		ctx.Warnf("--init-from: ignoring --rslora (the adapter does not use it)")
	}
	if strings.Join(c.Targets, ",") != defaultTargets {
		ctx.Warnf("--init-from: ignoring --targets (the adapter's modules are trained)")
	}
}

func (c *TrainCmd) reportTo(ctx *cli.Context) io.Writer {
	if c.Output == "-" {
		return ctx.Stderr
	}
	return ctx.Stdout
}

// openLog opens the --log file: truncated for a new run; for a resumed
// one, cut back to the lines of the steps up to the checkpoint and
// appended to, so that it reads as if the run had never stopped.
func openLog(path string, resuming bool, step int) (*os.File, error) {
	if !resuming {
		return os.Create(path)
	}
	var kept []byte
	if old, err := os.ReadFile(path); err == nil {
		for _, line := range strings.SplitAfter(string(old), "\n") {
			var r struct {
				Step *int `json:"step"`
			}
			if json.Unmarshal([]byte(line), &r) == nil && r.Step != nil && *r.Step <= step && strings.HasSuffix(line, "\n") {
				kept = append(kept, line...)
			}
		}
	}
	if err := os.WriteFile(path, kept, 0o644); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
}

// stdinUses counts the paths that are "-".
func stdinUses(paths ...string) int {
	n := 0
	for _, p := range paths {
		if p == "-" {
			n++
		}
	}
	return n
}

// sameSpecs compares adapter structures.
func sameSpecs(a, b []llama.Adapter) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// findCheckpoint accepts a checkpoint folder or a folder of checkpoint-N
// folders (the newest is taken).
func findCheckpoint(dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, StateFile)); err == nil {
		return dir, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrResume, err)
	}
	best, bestN := "", -1
	for _, e := range entries {
		n, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "checkpoint-"))
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "checkpoint-") || err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, e.Name(), StateFile)); err == nil && n > bestN {
			best, bestN = filepath.Join(dir, e.Name()), n
		}
	}
	if best == "" {
		return "", fmt.Errorf("%w: %s holds no checkpoint (%s)", ErrResume, dir, StateFile)
	}
	return best, nil
}

// padID is the token id of padding: pad_token, else eos, else 0. Padding
// is never scored and never attended to by real tokens.
func padID(b *Base) int32 {
	if b.Tokenizer != nil {
		for _, n := range []string{"pad_token", "eos_token"} {
			if id, ok := b.Tokenizer.SpecialTokenID(n); ok && id < b.Config.Vocab {
				return int32(id)
			}
		}
	}
	if ids := b.Checkpoint.EOSTokenID; len(ids) > 0 && ids[0] >= 0 && ids[0] < b.Config.Vocab {
		return int32(ids[0])
	}
	return 0
}

// readDataFile reads a JSONL file ("-": stdin) and reports truncation.
func readDataFile(ctx *cli.Context, path string, o DataOptions) ([]Example, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	ex, st, err := ReadData(r, path, o)
	if err != nil {
		return nil, err
	}
	if st.Truncated > 0 {
		ctx.Warnf("%s: %d of %d examples are longer than --seq %d and were truncated (first at line %d; %s tokens dropped)",
			path, st.Truncated, st.Examples, o.Seq, st.FirstTruncated, num.Thousands(st.Dropped))
	}
	if st.NoTargets > 0 {
		ctx.Warnf("%s: %d examples have no scored token (all labels -100 after the shift)", path, st.NoTargets)
	}
	return ex, nil
}

// EvalCmd is `lora-train eval`.
type EvalCmd struct {
	Base    string `required:"" help:"Base model: HF folder, .safetensors file, or '-' (stdin)." placeholder:"MODEL"`
	Adapter string `help:"PEFT LoRA, DoRA or IA3 adapter to apply (folder, file, or '-')." placeholder:"ADAPTER"`
	Data    string `required:"" help:"Data (JSONL), in any training form." placeholder:"FILE"`
	Seq     int    `default:"2048" help:"Truncate examples to this many tokens."`
	JSON    bool   `help:"Print one JSON object."`
	DeviceFlags
}

// EvalReport is the --json output of eval.
type EvalReport struct {
	Version int    `json:"version"`
	Base    string `json:"base"`
	Adapter string `json:"adapter,omitempty"`
	Data    string `json:"data"`
	EvalResult
}

// Run evaluates.
func (c *EvalCmd) Run(ctx *cli.Context) error {
	if stdinUses(c.Base, c.Adapter, c.Data) > 1 {
		return errclass.Usagef("stdin ('-') can be read once")
	}
	if c.Seq <= 0 {
		return errclass.Usagef("--seq %d", c.Seq)
	}
	be, err := c.DeviceFlags.Backend()
	if err != nil {
		return err
	}
	base, err := OpenBase(c.Base, os.Stdin)
	if err != nil {
		return err
	}
	defer base.Close()
	ex, err := readDataFile(ctx, c.Data, DataOptions{Tokenizer: base.Tokenizer, ChatTemplate: base.ChatTemplate,
		Vocab: base.Config.Vocab, Seq: c.Seq})
	if err != nil {
		return err
	}
	model, err := base.NewModel(be, llama.Options{})
	if err != nil {
		return err
	}
	defer model.Close()
	if c.Adapter != "" {
		ad, load, err := OpenAdapter(c.Adapter, os.Stdin, base.Config, 0)
		if err != nil {
			return err
		}
		for _, w := range ad.Warnings {
			ctx.Warnf("%s: %s", c.Adapter, w)
		}
		if err := model.AddAdapters(ad.Specs, load); err != nil {
			return fmt.Errorf("%s (for base %s): %w", c.Adapter, c.Base, err)
		}
	}
	res, err := Evaluate(model, ex)
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(ctx.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(EvalReport{Version: 1, Base: c.Base, Adapter: c.Adapter, Data: c.Data, EvalResult: *res})
	}
	fmt.Fprintf(ctx.Stdout, "loss %.6f  perplexity %.4g  over %d scored tokens in %d examples\n", res.Loss, res.Perplexity,
		res.Targets, len(res.Examples))
	for _, e := range res.Examples {
		fmt.Fprintf(ctx.Stdout, "line %d: loss %.6f (%d tokens)\n", e.Line, e.Loss, e.Targets)
	}
	return nil
}
