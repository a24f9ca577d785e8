// Command lora-inspect reports what a LoRA adapter, a model checkpoint, a
// 4-bit checkpoint or a GGUF file holds, and plans LoRA training runs. It is
// a thin layer over pkg/inspect.
package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/alecthomas/kong"

	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/pkg/adapterops"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/inspect"
)

const description = `Report what adapters, checkpoints and GGUF files hold, and plan LoRA training.

Inputs are recognized by content: a PEFT adapter (folder, .safetensors or .bin
file, or '-' stream), an HF model (folder, single file, shards; safetensors or
PyTorch .bin), a bitsandbytes 4-bit model, or a GGUF file. Only headers are read
unless --deltas needs the weights: for a .bin file, its zip directory and
pickle, which is interpreted without executing anything.

Examples:
  lora-inspect ./my-adapter
  lora-inspect --json ./Llama-3.1-8B-Instruct ./my-adapter
  lora-inspect --tensors model.safetensors
  lora-inspect --deltas ./my-adapter --base ./Llama-3.1-8B
  lora-merge --base M --adapter A -o - | lora-inspect --json -
  lora-inspect plan --config llama3-8b --rank 16 --alpha 32 --targets q_proj,k_proj,v_proj,o_proj --qlora
  lora-inspect diff ./run1/adapter ./run2/adapter`

type cmd struct {
	cli.Globals
	Show showCmd `cmd:"" default:"withargs" help:"Summarize each PATH (the default command)."`
	Plan planCmd `cmd:"" help:"Plan a LoRA training run from a config.json alone."`
	Diff diffCmd `cmd:"" help:"Compare the ΔW of two adapters module by module."`
}

// showCmd is `lora-inspect PATH...`.
type showCmd struct {
	Paths   []string `arg:"" name:"path" help:"Adapter, model, 4-bit model or GGUF: a folder, a file, or '-' for a safetensors stream on stdin."`
	JSON    bool     `help:"Print one JSON object per input (a JSON array for several inputs)."`
	Tensors bool     `help:"Add a table of every tensor: name, dtype, shape, bytes, parameters."`
	Deltas  bool     `help:"For adapters: per module ||s·B·A||_F, its singular values and effective rank, computed exactly from r×r cores (reads the adapter weights). Most-changed first."`
	Base    string   `help:"With --deltas: the base model, to add ||ΔW||_F/||W0||_F (reads the adapted base weights)." placeholder:"MODEL"`
}

// Run inspects every path and prints the reports.
func (c *showCmd) Run(ctx *cli.Context) error {
	reports, err := inspect.Run(ctx, c.Paths, inspect.Options{Env: ctx.Env(), Tensors: c.Tensors, Deltas: c.Deltas, Base: c.Base})
	if err != nil {
		return err
	}
	if c.JSON {
		if len(reports) == 1 {
			return cli.PrintJSON(ctx.Stdout, reports[0])
		}
		return cli.PrintJSON(ctx.Stdout, reports)
	}
	for i, r := range reports {
		if i > 0 {
			fmt.Fprintln(ctx.Stdout)
		}
		if err := inspect.WriteText(ctx.Stdout, r); err != nil {
			return err
		}
	}
	return nil
}

// planCmd is `lora-inspect plan`.
type planCmd struct {
	Config         string   `required:"" help:"config.json of the base model, or a built-in shape: ${shapes}." placeholder:"CONFIG"`
	Rank           int      `short:"r" default:"${rank}" help:"LoRA rank r."`
	Alpha          float64  `default:"${alpha}" help:"LoRA alpha (scaling = alpha/r, or alpha/sqrt(r) with --rslora)."`
	Targets        []string `default:"${targets}" help:"Target modules (comma-separated), or all-linear. The default is the attention projections (Phi-3: its fused qkv_proj and o_proj)."`
	DoRA           bool     `name:"dora" help:"Plan a DoRA adapter (adds a magnitude vector per module)."`
	RSLoRA         bool     `name:"rslora" help:"Use rank-stabilized scaling alpha/sqrt(r)."`
	QLoRA          bool     `name:"qlora" help:"Highlight the QLoRA (NF4 + double quant) estimate; both are always computed."`
	Batch          int      `default:"${batch}" help:"Micro-batch size for the activation estimate."`
	Seq            int      `default:"${seq}" help:"Sequence length for the activation estimate."`
	GradCheckpoint bool     `name:"grad-checkpoint" help:"Estimate activations with gradient checkpointing."`
	JSON           bool     `help:"Print the plan as one JSON object."`
}

// Help adds the targets of each architecture and the memory formula to
// `plan --help`.
func (c *planCmd) Help() string {
	return "Architectures (config.json model_type):\n" + cli.Preformatted(arch.Table()) +
		"\n\nTargets (--targets) of each architecture:\n" + cli.Preformatted(arch.TargetTable()) + "\n\n" + inspect.MemoryFormula
}

// Run prints the plan.
func (c *planCmd) Run(ctx *cli.Context) error {
	r, err := inspect.PlanFile(c.Config, inspect.PlanOptions{Rank: c.Rank, Alpha: c.Alpha, Targets: c.Targets, DoRA: c.DoRA,
		RSLoRA: c.RSLoRA, QLoRA: c.QLoRA, Batch: c.Batch, Seq: c.Seq, GradCheckpoint: c.GradCheckpoint})
	if err != nil {
		return err
	}
	if c.JSON {
		return cli.PrintJSON(ctx.Stdout, r)
	}
	return inspect.WriteText(ctx.Stdout, r)
}

// diffCmd is `lora-inspect diff A B`.
type diffCmd struct {
	A    string `arg:"" name:"a" help:"The first adapter (the reference): a folder, a .safetensors or .bin file, or '-'."`
	B    string `arg:"" name:"b" help:"The second adapter."`
	JSON bool   `help:"Print the comparison as one JSON object."`
}

// Help says what is compared.
func (c *diffCmd) Help() string {
	return `Per module present in both: ‖ΔW_A‖_F, ‖ΔW_B‖_F, the relative difference
‖ΔW_A − ΔW_B‖_F/‖ΔW_A‖_F and the cosine similarity of ΔW_A and ΔW_B, computed exactly
from the low-rank factors (never forming ΔW); then the modules only one adapter
targets, and a summary with the most and least changed modules. An adapter against
itself gives 0 and 1; against a copy with twice the alpha, 1 and 1.`
}

// Run compares and prints the report.
func (c *diffCmd) Run(ctx *cli.Context) error {
	rep, err := adapterops.Diff(ctx, adapterops.DiffOptions{Env: ctx.Env(), A: c.A, B: c.B})
	if err != nil {
		return err
	}
	if c.JSON {
		return cli.PrintJSON(ctx.Stdout, rep)
	}
	return rep.WriteText(ctx.Stdout)
}

// tool is lora-inspect for cli.Main (and for in-process tests, cli.Run).
func tool() cli.Tool {
	c := new(cmd)
	d := inspect.DefaultPlanOptions()
	return cli.Tool{Name: "lora-inspect", Description: description, Grammar: c, Globals: &c.Globals,
		Options: []kong.Option{kong.Vars{"rank": strconv.Itoa(d.Rank), "alpha": strconv.FormatFloat(d.Alpha, 'g', -1, 64),
			"targets": strings.Join(d.Targets, ","), "batch": strconv.Itoa(d.Batch), "seq": strconv.Itoa(d.Seq),
			"shapes": strings.Join(arch.Shapes(), ", ")}}}
}

func main() { cli.Main(tool()) }
