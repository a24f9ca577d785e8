package main

import (
	"fmt"
	"time"

	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/train"
)

// trainCmd is `lora-train --base M --data FILE -o ADAPTER`. Its defaults
// are train.DefaultOptions (see vars).
type trainCmd struct {
	Base   string `required:"" help:"Base model: HF folder, .safetensors file, or '-' (stdin)." placeholder:"MODEL"`
	Data   string `required:"" help:"Training data (JSONL)." placeholder:"FILE"`
	Output string `short:"o" required:"" help:"Output adapter: a folder (PEFT), FILE.safetensors, or '-' (stdout)." placeholder:"ADAPTER"`

	Method        string   `default:"${method}" enum:"lora,ia3,prompt,prefix" help:"Adapter method: lora (LoRA; DoRA with --dora); ia3 ((IA)3 scaling vectors on k_proj, v_proj and down_proj, as PEFT's IA3Config defaults); prompt (prompt tuning, PEFT's PROMPT_TUNING: --virtual-tokens trainable embeddings prepended to every example); prefix (prefix tuning, PEFT's PREFIX_TUNING without prefix_projection: --virtual-tokens trainable keys and values in every layer's attention, one per KV head). prompt and prefix leave the model's weights alone: 'lora-train eval --adapter' applies them, lora-merge and lora-gguf refuse them. ia3, prompt and prefix take no --rank, --alpha, --dropout, --dora, --rslora, --bias or --targets; prompt and prefix take no --pack. The base may be NF4 (QLoRA) with every method."`
	VirtualTokens int      `name:"virtual-tokens" help:"--method prompt or prefix: the number of virtual tokens (num_virtual_tokens; e.g. 20). Examples keep up to --seq tokens of their own; the model attends to N more per row." placeholder:"N"`
	InitText      string   `name:"init-text" help:"--method prompt: initialise the virtual tokens from the embeddings of this text's tokens (the base's tokenizer, special tokens included; repeated or cut to --virtual-tokens, as PEFT's prompt_tuning_init TEXT). Without it the embeddings are random, N(0, 1) from --seed (PEFT's RANDOM; a prefix always starts so)." placeholder:"TEXT"`
	Rank          int      `short:"r" default:"${rank}" help:"LoRA rank r."`
	Alpha         float64  `default:"${alpha}" help:"LoRA alpha (scaling alpha/r, or alpha/sqrt(r) with --rslora)."`
	Dropout       float64  `default:"${dropout}" help:"Dropout on the adapter input during training."`
	Targets       []string `default:"${targets}" help:"Projections to adapt (comma-separated), or all-linear. The default is the attention projections, q_proj,k_proj,v_proj,o_proj (Phi-3: its fused qkv_proj and o_proj)."`
	DoRA          bool     `name:"dora" help:"Train a DoRA adapter (weight-decomposed: adds a magnitude vector)."`
	RSLoRA        bool     `name:"rslora" help:"Rank-stabilized scaling alpha/sqrt(r)."`
	Bias          string   `default:"${bias}" enum:"none,all,lora_only" help:"PEFT's bias option: none (every bias frozen), all (every bias of the model trains), lora_only (the biases of the adapted projections train). Trained biases are saved in the adapter as PEFT saves them."`
	InitFrom      string   `name:"init-from" help:"Start from an existing PEFT LoRA/DoRA, IA3, prompt- or prefix-tuning adapter (its method, rank, alpha, targets, DoRA setting or virtual tokens are used)." placeholder:"ADAPTER"`

	LR          float64 `name:"lr" default:"${lr}" help:"Peak learning rate. Prompt and prefix tuning train far fewer values and usually want a larger one (PEFT's examples: 3e-2 for prompt tuning, 1e-2 for prefix tuning)."`
	Schedule    string  `default:"${schedule}" enum:"constant,constant_with_warmup,linear,cosine" help:"Learning-rate schedule: constant, constant_with_warmup, linear, cosine."`
	Warmup      float64 `default:"${warmup}" help:"Warm-up steps, or a ratio of the total steps when below 1."`
	Epochs      float64 `default:"${epochs}" help:"Epochs over the data (may be fractional)."`
	MaxSteps    int     `name:"max-steps" default:"${max_steps}" help:"Number of updates (overrides --epochs when > 0)."`
	Batch       int     `default:"${batch}" help:"Examples per micro-batch."`
	GradAccum   int     `name:"grad-accum" default:"${grad_accum}" help:"Micro-batches per update."`
	Seq         int     `default:"${seq}" help:"Maximum tokens per example (longer ones are truncated, and reported)."`
	Pack        bool    `help:"Pack short examples into rows of --seq tokens (best-fit decreasing); attention and positions stay within each example."`
	WeightDecay float64 `name:"weight-decay" default:"${weight_decay}" help:"AdamW decoupled weight decay."`
	MaxGradNorm float64 `name:"max-grad-norm" default:"${max_grad_norm}" help:"Clip the global gradient norm (0: off)."`
	Seed        uint64  `default:"${seed}" help:"Seed of the initialisation, the shuffle and dropout."`
	Shuffle     bool    `default:"${shuffle}" negatable:"" help:"Shuffle the examples each epoch (--shuffle=false keeps file order)."`
	Unshifted   bool    `name:"unshifted-count" help:"Count the loss denominator on unshifted labels, as transformers before 2026-05 (for comparisons)."`
	chatFlags

	deviceFlags
	GradCheckpoint bool `name:"grad-checkpoint" help:"Recompute activations in the backward pass (less memory, ~30% slower)."`

	Eval      string `help:"Evaluation data (JSONL): eval loss at the end and every --eval-every steps." placeholder:"FILE"`
	EvalEvery int    `name:"eval-every" default:"0" help:"Evaluate every N updates (with --eval)."`
	Log       string `help:"Write the run as JSONL: a first line {\"run\": ...} (base, method, rank, steps, settings), then one object per update: step, loss, lr, grad_norm, tokens, tokens_per_s (and epoch, targets, eval_loss). 'lora-train plot' draws it." placeholder:"FILE.jsonl"`
	SaveEvery int    `name:"save-every" default:"0" help:"Save a checkpoint (adapter, optimizer state, position) every N updates."`
	SaveDir   string `name:"save-dir" help:"Folder for checkpoint-N folders (default: the output path + '.checkpoints')." placeholder:"DIR"`
	StopAfter int    `name:"stop-after" default:"0" help:"Stop after this update (the run keeps its planned length), saving a checkpoint to resume from."`
	Resume    string `help:"Continue a run bit for bit from a checkpoint folder (or the newest one in a --save-dir)." placeholder:"DIR"`
}

// options turns the flags into train.Options.
func (c *trainCmd) options(ctx *cli.Context) (train.Options, error) {
	o := train.DefaultOptions()
	o.Env = ctx.Env()
	o.Base, o.Data, o.Output, o.Eval, o.EvalEvery = c.Base, c.Data, c.Output, c.Eval, c.EvalEvery
	o.Method, o.Rank, o.Alpha, o.Dropout, o.Targets = c.Method, c.Rank, c.Alpha, c.Dropout, c.Targets
	o.DoRA, o.RSLoRA, o.Bias, o.InitFrom = c.DoRA, c.RSLoRA, c.Bias, c.InitFrom
	o.VirtualTokens, o.InitText = c.VirtualTokens, c.InitText
	o.LR, o.Schedule, o.Warmup, o.Epochs, o.MaxSteps = c.LR, c.Schedule, c.Warmup, c.Epochs, c.MaxSteps
	o.Batch, o.GradAccum, o.WeightDecay, o.MaxGradNorm = c.Batch, c.GradAccum, c.WeightDecay, c.MaxGradNorm
	o.Seed, o.Shuffle, o.UnshiftedCount = c.Seed, c.Shuffle, c.Unshifted
	o.Seq, o.Pack, o.Device, o.Precision, o.GradCheckpoint = c.Seq, c.Pack, c.Device, c.Precision, c.GradCheckpoint
	o.LogFile, o.SaveEvery, o.SaveDir, o.StopAfter, o.Resume = c.Log, c.SaveEvery, c.SaveDir, c.StopAfter, c.Resume
	var err error
	o.ChatTemplateKwargs, err = c.kwargs()
	return o, err
}

// Run trains and prints a summary: on stdout, or on stderr when the
// adapter goes to stdout.
func (c *trainCmd) Run(ctx *cli.Context) error {
	o, err := c.options(ctx)
	if err != nil {
		return err
	}
	prog := newStepProgress(ctx)
	o.OnStep = prog.update
	res, err := train.Run(ctx, o)
	prog.done()
	if err != nil {
		return err
	}
	w := ctx.ReportTo(c.Output)
	if res.Stopped {
		fmt.Fprintf(w, "stopped after step %d of %d; resume with --resume %s\n", res.LastStep, res.Total, res.Checkpoint)
		return nil
	}
	if ctx.Quiet() {
		return nil
	}
	el := time.Duration(res.Seconds * float64(time.Second))
	fmt.Fprintf(w, "trained %d updates (steps %d-%d) in %s: loss %.4f -> %.4f, %s tokens/s\n", res.LastStep-res.FirstStep+1,
		res.FirstStep, res.LastStep, el.Round(time.Millisecond), res.First.Loss, res.Last.Loss,
		num.Thousands(int64(float64(res.Tokens)/max(res.Seconds, 1e-9))))
	if e := res.Eval; e != nil {
		fmt.Fprintf(w, "eval loss %.4f (perplexity %.2f) over %d tokens\n", e.Loss, e.Perplexity, e.Targets)
	}
	if c.Output != "-" {
		fmt.Fprintf(w, "adapter written to %s\n", c.Output)
	}
	return nil
}
