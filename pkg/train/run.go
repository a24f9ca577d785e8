package train

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
	"github.com/lorakit/lorakit/pkg/compute/cuda"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/llama"
	"github.com/lorakit/lorakit/pkg/tool"
)

// Options configure a training run: lora-train's flags. Start from
// DefaultOptions, the one place where lora-train's defaults are written.
type Options struct {
	// Env gives the stdin read for a "-" input (the base, the data, the
	// evaluation data or --init-from: one of them), the stdout of "-o -",
	// the cleanup registry, the CPU threads, progress in updates, details
	// (Logf) and warnings.
	tool.Env

	// Base is the base model: an HF folder, a .safetensors file or "-".
	Base string
	// Data is the training data (JSONL); Eval, when set, the evaluation
	// data, evaluated at the end and every EvalEvery updates.
	Data, Eval string
	EvalEvery  int
	// Output is the adapter: a folder (PEFT), a .safetensors file or "-".
	Output string

	// VirtualTokens and InitText describe a fresh MethodPrompt or
	// MethodPrefix adapter (VirtualOptions).
	VirtualTokens int
	InitText      string

	// Method is MethodLoRA (LoRA; DoRA with DoRA), MethodIA3, MethodPrompt
	// or MethodPrefix. Rank,
	// Alpha, Dropout, Targets, DoRA, RSLoRA and Bias describe a fresh LoRA
	// adapter; InitFrom starts from an existing adapter instead (its
	// structure wins; Dropout applies to a LoRA one).
	Method  string
	Rank    int
	Alpha   float64
	Dropout float64
	// Targets are the registry's module names or "all-linear"; the default
	// (q, k, v, o) means the architecture's attention projections
	// (arch.Config.AttentionTargets: Phi-3's are qkv_proj and o_proj).
	Targets  []string
	DoRA     bool
	RSLoRA   bool
	Bias     string // PEFT's bias option: "none" (default), "all", "lora_only"
	InitFrom string

	// Settings are the hyper-parameters that decide the result.
	Settings
	// Seq is the most tokens per example; Pack packs short examples into
	// rows of Seq tokens.
	Seq  int
	Pack bool
	// ChatTemplateKwargs are the chat template's variables for messages
	// data, e.g. "enable_thinking": false (see DataOptions).
	ChatTemplateKwargs map[string]any

	// Device is "auto", "cpu" or "cuda"; Precision "auto" (bf16 mixed
	// precision on a GPU with bf16 tensor cores, f32 elsewhere), "bf16" or
	// "f32"; GradCheckpoint recomputes activations in the backward pass.
	Device         string
	Precision      string
	GradCheckpoint bool

	// LogFile, when set, is a JSONL file of one StepResult per update.
	LogFile string
	// SaveEvery saves a checkpoint every N updates into SaveDir (default:
	// the output path + ".checkpoints"); StopAfter stops after that update,
	// saving a checkpoint to resume from; Resume continues a run from a
	// checkpoint folder (or the newest in a save folder).
	SaveEvery int
	SaveDir   string
	StopAfter int
	Resume    string

	// OnStep, when set, is called after every update with its result and
	// the run's number of updates.
	OnStep func(r StepResult, total int)
}

// DefaultOptions returns lora-train's defaults: LoRA r 16, alpha 32,
// dropout 0.05 on q/k/v/o, the DefaultSettings hyper-parameters, 2048
// tokens per example, device auto.
func DefaultOptions() Options {
	return Options{Method: MethodLoRA, Rank: 16, Alpha: 32, Dropout: 0.05, Bias: "none",
		Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj"}, Settings: DefaultSettings(), Seq: 2048, Device: "auto"}
}

// Result summarizes a training run.
type Result struct {
	// FirstStep and LastStep are the updates this run made (a resumed run
	// starts after its checkpoint); Total the run's planned updates.
	FirstStep, LastStep, Total int
	// First and Last are the results of the first and last updates.
	First, Last StepResult
	// Tokens counts the input tokens of the run's updates; Seconds its time.
	Tokens  int64
	Seconds float64
	// Eval is the last evaluation, when there was evaluation data.
	Eval *EvalResult
	// Stopped is set when StopAfter ended the run early; Checkpoint is the
	// folder to resume from.
	Stopped    bool
	Checkpoint string
}

// NewBackend returns the compute backend of a device ("auto", "cpu" or
// "cuda") with threads CPU threads (0: one per core).
func NewBackend(device string, threads int) (compute.Backend, error) {
	switch device {
	case "cuda":
		be, err := cuda.New(cuda.Options{})
		if err != nil {
			return nil, errclass.Requirementf("--device cuda: no usable GPU: %v; use --device cpu", err)
		}
		return be, nil
	case "", "auto", "cpu":
		// auto stays on the CPU until the CUDA backend has been validated
		// on a GPU against this reference (see scripts/gpu-check.sh).
		if threads < 0 {
			return nil, errclass.Usagef("--threads %d", threads)
		}
		return cpu.New(threads), nil
	}
	return nil, errclass.Usagef("--device %q (auto, cpu, cuda)", device)
}

// Run is lora-train as a function: it opens the base and the data, builds
// or loads the adapter, trains it (resuming, evaluating, logging and saving
// checkpoints as the options say) and writes it to o.Output.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	be, err := NewBackend(o.Device, o.Threads)
	if err != nil {
		return nil, err
	}
	base, err := openBaseIn(o.Base, o.In(), o.SpillDir(o.Output))
	if err != nil {
		return nil, err
	}
	defer base.Close()
	do := DataOptions{Tokenizer: base.Tokenizer, ChatTemplate: base.ChatTemplate, ChatTemplateKwargs: o.ChatTemplateKwargs,
		Vocab: base.Config.Vocab, Seq: o.Seq}
	examples, err := readDataFile(&o.Env, o.Data, do)
	if err != nil {
		return nil, err
	}
	var evalEx []Example
	if o.Eval != "" {
		if evalEx, err = readDataFile(&o.Env, o.Eval, do); err != nil {
			return nil, err
		}
	}
	rows := Rows(examples)
	if o.Pack {
		rows = Pack(examples, o.Seq)
		o.Log("packed %d examples into %d rows of up to %d tokens", len(examples), len(rows), o.Seq)
	}

	ad, load, err := o.adapter(base)
	if err != nil {
		return nil, err
	}
	resume := ""
	if o.Resume != "" {
		if resume, err = findCheckpoint(o.Resume); err != nil {
			return nil, err
		}
		ck, ckLoad, err := OpenAdapter(resume, nil, base.Config, o.Dropout)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrResume, err)
		}
		if !slices.Equal(ck.Specs, ad.Specs) || ck.Virtual != ad.Virtual {
			return nil, fmt.Errorf("%w: %s: the checkpoint's adapter (rank, alpha, targets, DoRA, dropout) differs from this run's", ErrResume, resume)
		}
		load = ckLoad
	}

	prec, err := ResolvePrecision(be, o.Precision)
	if err != nil {
		return nil, err
	}
	model, err := base.NewModel(be, llama.Options{Precision: prec, GradCheckpoint: o.GradCheckpoint})
	if err != nil {
		return nil, err
	}
	defer model.Close()
	if load == nil { // a fresh prompt: initialised from the model
		if load, err = ad.VirtualInitLoader(model, base.Tokenizer, o.Seed); err != nil {
			return nil, err
		}
	}
	if err := ad.Attach(model, load); err != nil {
		return nil, err
	}
	tr, err := NewTrainer(model, rows, padID(base), o.Settings)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	if resume != "" {
		if err := tr.Restore(resume); err != nil {
			return nil, err
		}
		o.Log("resuming %s at step %d of %d", resume, tr.State().Step, tr.Total())
	}
	o.Log("%s; %d examples, %d micro-batches per epoch, %d updates (warmup %d); %s", base.Path, len(rows),
		tr.BatchesPerEpoch(), tr.Total(), tr.Schedule().Warmup, be.Name())

	var logw io.Writer
	if o.LogFile != "" {
		f, hasRun, err := openLog(o.LogFile, resume != "", tr.State().Step)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		logw = f
		if !hasRun {
			line, _ := json.Marshal(struct {
				Run RunInfo `json:"run"`
			}{o.runInfo(base, ad, tr, len(examples), be.Name(), string(prec))})
			if _, err := logw.Write(append(line, '\n')); err != nil {
				return nil, fmt.Errorf("%s: %w", o.LogFile, err)
			}
		}
	}
	saveDir := ""
	if o.SaveEvery > 0 || o.StopAfter > 0 {
		if saveDir, err = o.saveDir(); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(saveDir, 0o755); err != nil {
			return nil, err
		}
	}
	save := func(step int) (string, error) {
		dir := filepath.Join(saveDir, fmt.Sprintf("checkpoint-%d", step))
		if err := tr.SaveCheckpoint(dir, ad, o.Cleanup); err != nil {
			return "", err
		}
		o.Log("saved %s", dir)
		return dir, nil
	}

	res := &Result{FirstStep: tr.State().Step + 1, Total: tr.Total()}
	start := time.Now()
	for !tr.Done() {
		if err := ctx.Err(); err != nil {
			return nil, errclass.Wrap(errclass.Interrupted, err)
		}
		r, err := tr.Step()
		if err != nil {
			return nil, err
		}
		if r.Targets == 0 {
			o.Warn("step %d has no scored tokens (every label is -100): its loss is reported as 0", r.Step)
		}
		if evalEx != nil && ((o.EvalEvery > 0 && r.Step%o.EvalEvery == 0) || tr.Done()) {
			if res.Eval, err = Evaluate(model, evalEx); err != nil {
				return nil, err
			}
			l := res.Eval.Loss
			r.EvalLoss = &l
		}
		if r.Step == res.FirstStep {
			res.First = r
		}
		res.Last, res.LastStep = r, r.Step
		res.Tokens += int64(r.Tokens)
		res.Seconds = time.Since(start).Seconds()
		if logw != nil {
			line, _ := json.Marshal(r)
			if _, err := logw.Write(append(line, '\n')); err != nil {
				return nil, fmt.Errorf("%s: %w", o.LogFile, err)
			}
		}
		if o.OnStep != nil {
			o.OnStep(r, tr.Total())
		}
		o.Report(int64(r.Step), int64(tr.Total()))
		if o.SaveEvery > 0 && r.Step%o.SaveEvery == 0 && !tr.Done() {
			if _, err := save(r.Step); err != nil {
				return nil, err
			}
		}
		if o.StopAfter > 0 && r.Step >= o.StopAfter && !tr.Done() {
			res.Stopped = true
			res.Checkpoint = filepath.Join(saveDir, fmt.Sprintf("checkpoint-%d", r.Step))
			if o.SaveEvery == 0 || r.Step%o.SaveEvery != 0 {
				if _, err := save(r.Step); err != nil {
					return nil, err
				}
			}
			return res, nil
		}
	}
	if err := WriteAdapter(o.Output, ad, model, o.Env.Output()); err != nil {
		return nil, err
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// check refuses options that cannot work, before any input is read.
func (o *Options) check() error {
	if o.Seq <= 0 || o.Seq > 1<<20 {
		return errclass.Usagef("--seq %d", o.Seq)
	}
	if o.EvalEvery < 0 || o.SaveEvery < 0 || o.StopAfter < 0 {
		return errclass.Usagef("--eval-every, --save-every and --stop-after must not be negative")
	}
	if o.EvalEvery > 0 && o.Eval == "" {
		return errclass.Usagef("--eval-every needs --eval FILE")
	}
	if err := tool.StdinOnce(o.Base, o.Data, o.Eval, o.InitFrom); err != nil {
		return err
	}
	if err := o.checkMethod(); err != nil {
		return err
	}
	if o.Method == MethodPrompt && o.InitText != "" && o.Base == "-" && o.InitFrom == "" {
		return errclass.Usagef("--init-text with a base read from stdin: PEFT's config needs the base's path as tokenizer_name_or_path")
	}
	return o.Settings.check()
}

// loraFlags names the LoRA structure options set to other values than
// DefaultOptions'.
func (o *Options) loraFlags() []string {
	d := DefaultOptions()
	var set []string
	add := func(name string, given bool) {
		if given {
			set = append(set, name)
		}
	}
	add("--rank", o.Rank != d.Rank)
	add("--alpha", o.Alpha != d.Alpha)
	add("--dropout", o.Dropout != d.Dropout)
	add("--dora", o.DoRA)
	add("--rslora", o.RSLoRA)
	add("--targets", !slices.Equal(o.Targets, d.Targets))
	add("--bias", o.Bias != d.Bias && o.Bias != "none")
	return set
}

// checkMethod refuses structure options that do not apply to the method.
func (o *Options) checkMethod() error {
	virtual := o.Method == MethodPrompt || o.Method == MethodPrefix
	if !virtual && (o.VirtualTokens != 0 || o.InitText != "") {
		return errclass.Usagef("--virtual-tokens and --init-text are for --method prompt (and --virtual-tokens for prefix)")
	}
	switch o.Method {
	case "", MethodLoRA:
		return nil
	case MethodIA3:
		if f := o.loraFlags(); len(f) > 0 {
			return errclass.Usagef("--method ia3 takes no %s (IA3 learns scaling vectors on k_proj, v_proj and down_proj)", strings.Join(f, ", "))
		}
		return nil
	case MethodPrompt, MethodPrefix:
		what := map[string]string{MethodPrompt: "prompt tuning trains virtual token embeddings",
			MethodPrefix: "prefix tuning trains past keys and values of every layer"}[o.Method]
		if f := o.loraFlags(); len(f) > 0 {
			return errclass.Usagef("--method %s takes no %s (%s, no module of the model)", o.Method, strings.Join(f, ", "), what)
		}
		if o.Method == MethodPrefix && o.InitText != "" {
			return errclass.Usagef("--init-text is for --method prompt (a prefix starts from N(0, 1), as PEFT's)")
		}
		if o.InitFrom == "" && o.VirtualTokens <= 0 {
			return errclass.Usagef("--method %s needs --virtual-tokens N (e.g. 20)", o.Method)
		}
		if o.Pack {
			return errclass.Usagef("--pack with --method %s: PEFT adds the virtual tokens to each row, not to each packed example; train without --pack", o.Method)
		}
		return nil
	}
	return errclass.Usagef("--method %q (lora, ia3, prompt, prefix)", o.Method)
}

// adapter returns the adapter's structure and initial values: loaded from
// InitFrom, or fresh.
func (o *Options) adapter(base *Base) (*Adapter, llama.Loader, error) {
	var (
		ad   *Adapter
		load llama.Loader
		err  error
	)
	switch {
	case o.InitFrom != "":
		if ad, load, err = OpenAdapter(o.InitFrom, o.In(), base.Config, o.Dropout); err != nil {
			return nil, nil, err
		}
		for _, w := range ad.Warnings {
			o.Warn("%s: %s", o.InitFrom, w)
		}
		o.warnIgnored(ad)
		if !ad.IsIA3() && !ad.IsVirtual() {
			ad.Config.LoraDropout = o.Dropout
		}
	case o.Method == MethodIA3:
		ad, err = NewIA3Adapter(base.Config)
	case o.Method == MethodPrompt || o.Method == MethodPrefix:
		ad, err = NewVirtualAdapter(base.Config, VirtualOptions{Method: o.Method, Tokens: o.VirtualTokens, InitText: o.InitText,
			Tokenizer: o.Base})
	default:
		targets := o.Targets
		if slices.Equal(targets, DefaultOptions().Targets) {
			targets = base.Config.AttentionTargets()
		}
		ad, err = NewAdapter(base.Config, AdapterOptions{Rank: o.Rank, Alpha: o.Alpha, Targets: targets,
			DoRA: o.DoRA, RSLoRA: o.RSLoRA, Dropout: o.Dropout, Bias: o.Bias})
	}
	if err != nil {
		return nil, nil, err
	}
	if load == nil && !ad.IsVirtual() {
		load = InitLoader(base.Config, ad.Specs, o.Seed, base.AdapterDType)
	}
	ad.Rename = base.CheckpointName
	if o.Base != "-" {
		ad.Config.BaseModelNameOrPath = o.Base
	}
	return ad, load, nil
}

// warnIgnored warns about structure options that InitFrom overrides
// (those left at their defaults are not mentioned).
func (o *Options) warnIgnored(ad *Adapter) {
	d := DefaultOptions()
	if ad.IsVirtual() {
		f := o.loraFlags()
		if o.Method != "" && o.Method != MethodLoRA && o.Method != ad.Virtual.Method {
			f = append(f, "--method "+o.Method)
		}
		if o.VirtualTokens != 0 && o.VirtualTokens != ad.Virtual.Tokens {
			f = append(f, "--virtual-tokens")
		}
		if o.InitText != "" {
			f = append(f, "--init-text")
		}
		if len(f) > 0 {
			o.Warn("--init-from: ignoring %s (the adapter is %s with %d virtual tokens)", strings.Join(f, ", "), ad.Config.PeftType, ad.Virtual.Tokens)
		}
		return
	}
	if ad.IsIA3() {
		if f := o.loraFlags(); len(f) > 0 {
			o.Warn("--init-from: ignoring %s (the adapter is IA3)", strings.Join(f, ", "))
		}
		return
	}
	if o.Method == MethodIA3 {
		o.Warn("--init-from: ignoring --method ia3 (the adapter is %s)", ad.Config.PeftType)
	}
	pc := ad.Config
	if o.Rank != d.Rank && o.Rank != pc.R {
		o.Warn("--init-from: ignoring --rank %d (the adapter has r=%d)", o.Rank, pc.R)
	}
	if o.Alpha != d.Alpha && o.Alpha != pc.LoraAlpha {
		o.Warn("--init-from: ignoring --alpha %g (the adapter has lora_alpha=%g)", o.Alpha, pc.LoraAlpha)
	}
	if o.DoRA && !ad.Specs[0].DoRA {
		o.Warn("--init-from: ignoring --dora (the adapter is plain LoRA)")
	}
	if o.RSLoRA && !pc.UseRSLoRA {
		o.Warn("--init-from: ignoring --rslora (the adapter does not use it)")
	}
	if !slices.Equal(o.Targets, d.Targets) {
		o.Warn("--init-from: ignoring --targets (the adapter's modules are trained)")
	}
}

// saveDir is where checkpoint-N folders go.
func (o *Options) saveDir() (string, error) {
	if o.SaveDir != "" {
		return o.SaveDir, nil
	}
	if o.Output == "-" {
		return "", errclass.Usagef("--save-every and --stop-after need --save-dir when the output is '-'")
	}
	out := strings.TrimRight(o.Output, string(filepath.Separator))
	for _, ext := range []string{".gz", ".zst", ".safetensors"} {
		out = strings.TrimSuffix(out, ext)
	}
	return out + ".checkpoints", nil
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
	if ids := b.Config.EOS; len(ids) > 0 && ids[0] >= 0 && ids[0] < b.Config.Vocab {
		return int32(ids[0])
	}
	return 0
}

// readDataFile reads a JSONL file ("-": env's stdin) and warns about
// truncated examples and examples with nothing to score.
func readDataFile(env *tool.Env, path string, o DataOptions) ([]Example, error) {
	r := env.In()
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
		env.Warn("%s: %d of %d examples are longer than --seq %d and were truncated (first at line %d; %s tokens dropped)",
			path, st.Truncated, st.Examples, o.Seq, st.FirstTruncated, num.Thousands(st.Dropped))
	}
	if st.NoTargets > 0 {
		env.Warn("%s: %d examples have no scored token (all labels -100 after the shift)", path, st.NoTargets)
	}
	return ex, nil
}

// EvalOptions configure Eval: lora-train eval's flags.
type EvalOptions struct {
	// Env gives the stdin of a "-" input, the CPU threads and warnings.
	tool.Env
	// Base is the model, Adapter an optional adapter to apply, Data the
	// examples; Seq truncates them.
	Base, Adapter, Data string
	Seq                 int
	// ChatTemplateKwargs are the chat template's variables, as in Options.
	ChatTemplateKwargs map[string]any
	// Device and Precision as in Options.
	Device, Precision string
}

// EvalReport is lora-train eval's --json object.
type EvalReport struct {
	Schema int `json:"schema"`
	// Version repeats Schema under the key this report had before every
	// lorakit report used "schema"; it goes away in the next release.
	Version int    `json:"version"`
	Base    string `json:"base"`
	Adapter string `json:"adapter,omitempty"`
	Data    string `json:"data"`
	EvalResult
}

// Eval is lora-train eval as a function: the mean loss of the model (with
// the adapter, if any) on the data, without training.
func Eval(ctx context.Context, o EvalOptions) (*EvalReport, error) {
	if err := tool.StdinOnce(o.Base, o.Adapter, o.Data); err != nil {
		return nil, err
	}
	if o.Seq <= 0 {
		return nil, errclass.Usagef("--seq %d", o.Seq)
	}
	be, err := NewBackend(o.Device, o.Threads)
	if err != nil {
		return nil, err
	}
	base, err := OpenBase(o.Base, o.In())
	if err != nil {
		return nil, err
	}
	defer base.Close()
	ex, err := readDataFile(&o.Env, o.Data, DataOptions{Tokenizer: base.Tokenizer, ChatTemplate: base.ChatTemplate,
		ChatTemplateKwargs: o.ChatTemplateKwargs, Vocab: base.Config.Vocab, Seq: o.Seq})
	if err != nil {
		return nil, err
	}
	prec, err := ResolvePrecision(be, o.Precision)
	if err != nil {
		return nil, err
	}
	model, err := base.NewModel(be, llama.Options{Precision: prec})
	if err != nil {
		return nil, err
	}
	defer model.Close()
	if o.Adapter != "" {
		ad, load, err := OpenAdapter(o.Adapter, o.In(), base.Config, 0)
		if err != nil {
			return nil, err
		}
		for _, w := range ad.Warnings {
			o.Warn("%s: %s", o.Adapter, w)
		}
		if err := ad.Attach(model, load); err != nil {
			return nil, fmt.Errorf("%s (for base %s): %w", o.Adapter, o.Base, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, errclass.Wrap(errclass.Interrupted, err)
	}
	res, err := Evaluate(model, ex)
	if err != nil {
		return nil, err
	}
	return &EvalReport{Schema: 1, Version: 1, Base: o.Base, Adapter: o.Adapter, Data: o.Data, EvalResult: *res}, nil
}
