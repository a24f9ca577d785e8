// Command lora-train trains LoRA, DoRA, IA3, prompt- and prefix-tuning
// adapters on the registered architectures, evaluates them and benchmarks
// training steps. It is a thin layer over pkg/train.
package main

import (
	"strconv"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/train"
)

const description = `Train a LoRA, DoRA, IA3, prompt-tuning or prefix-tuning adapter on a model of
the table below from JSONL data.

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
  lora-train --base M --data d.jsonl -o A --method prompt --virtual-tokens 20 --init-text "Classify the review:"
  lora-train --base M --data d.jsonl -o A --method prefix --virtual-tokens 10   # keys and values in every layer
  lora-train --base ./Qwen2.5-0.5B --data d.jsonl -o A --bias lora_only   # also train q/k/v biases
  lora-train --base M --data d.jsonl -o A --save-every 50       # checkpoints in A.checkpoints/
  lora-train --base M --data d.jsonl -o A --resume A.checkpoints
  lora-train --base ./Qwen3-1.7B --data chat.jsonl -o A --enable-thinking=false   # a template variable
  lora-train eval --base M --adapter A --data test.jsonl --json
  lora-train bench --shape llama3.2-1b --batch 1 --seq 512 --steps 3
  lora-train plot log.jsonl -o loss.png --smooth 20   # also loss.svg; --log-y for a log scale`

type command struct {
	cli.Globals
	Train trainCmd `cmd:"" default:"withargs" help:"Train an adapter (the default command)."`
	Eval  evalCmd  `cmd:"" help:"Mean loss of a model (and adapter) on JSONL data, without training."`
	Bench benchCmd `cmd:"" help:"Time training steps of a model shape on random weights."`
	Plot  plotCmd  `cmd:"" help:"Plot the loss curves of a --log file as a PNG or SVG image."`
}

// deviceFlags choose the compute backend (--threads is global).
type deviceFlags struct {
	Device    string `default:"${device}" enum:"auto,cpu,cuda" help:"Compute device: auto (GPU when usable, else CPU), cpu, cuda."`
	Precision string `default:"auto" enum:"auto,bf16,f32" help:"auto: bf16 mixed precision on a GPU with bf16 tensor cores (bf16 weights and activations, f32 adapters, optimizer and loss), f32 elsewhere; bf16; f32 (the exact reference)."`
}

// vars are the flag defaults, from the library's defaults: the one place
// where they are written.
func vars() kong.Vars {
	d, b, p := train.DefaultOptions(), train.DefaultBenchOptions(), train.DefaultPlotOptions()
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	return kong.Vars{
		"method": d.Method, "bias": d.Bias, "rank": strconv.Itoa(d.Rank), "alpha": f(d.Alpha), "dropout": f(d.Dropout),
		"targets": strings.Join(d.Targets, ","), "lr": f(d.LR), "schedule": d.Schedule, "warmup": f(d.Warmup),
		"epochs": f(d.Epochs), "max_steps": strconv.Itoa(d.MaxSteps), "batch": strconv.Itoa(d.Batch),
		"grad_accum": strconv.Itoa(d.GradAccum), "seq": strconv.Itoa(d.Seq), "weight_decay": f(d.WeightDecay),
		"max_grad_norm": f(d.MaxGradNorm), "seed": strconv.FormatUint(d.Seed, 10), "shuffle": strconv.FormatBool(d.Shuffle),
		"device": d.Device, "bench_batch": strconv.Itoa(b.Batch), "bench_seq": strconv.Itoa(b.Seq),
		"bench_steps": strconv.Itoa(b.Steps), "bench_dtype": b.DType, "bench_warmup": strconv.Itoa(b.Warmup),
		"shapes": strings.Join(arch.Shapes(), ", "), "plot_width": strconv.Itoa(p.Width), "plot_height": strconv.Itoa(p.Height),
	}
}

// tool is lora-train for cli.Main (and for in-process tests, cli.Run).
func tool() cli.Tool {
	c := new(command)
	return cli.Tool{Name: "lora-train", Description: description + "\n\nArchitectures (config.json model_type):\n" + cli.Preformatted(arch.Table()), Grammar: c, Globals: &c.Globals,
		Options: []kong.Option{vars()}}
}

func main() { cli.Main(tool()) }
