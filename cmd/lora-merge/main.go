// Command lora-merge merges LoRA, DoRA and IA3 adapters into a checkpoint
// (W' = W0 + (alpha/r)·B·A, computed in float32 and rounded once, streaming
// tensor by tensor), and works on adapters themselves: combine several into
// one, resize one to a smaller rank, convert a PyTorch .bin checkpoint or
// adapter to safetensors. It is a thin layer over pkg/merge, pkg/adapterops
// and pkg/convert.
package main

import (
	"runtime"

	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/merge"
)

const description = `Merge adapters into a checkpoint, combine or resize adapters, convert .bin files.

lora-merge --base M --adapter A -o OUT merges (the default command):
W' = W0 + (alpha/r)·B·A for LoRA, DoRA and IA3 adapters, computed in float32
and rounded once to the output dtype; with a float32 base the result is PEFT's
merge_and_unload bit for bit. rsLoRA, rank_pattern/alpha_pattern,
fan_in_fan_out, embedding LoRA, modules_to_save, trained biases and trainable
tokens are applied as PEFT does. A bitsandbytes NF4/FP4 base is dequantized
tensor by tensor (the base a QLoRA adapter was trained against) and written as
floats, or as 4-bit again with --requantize. Several adapters are added in
delta space, W' = W0 + sum_i w_i·(merge_i(W0) - W0), exactly: this is not
PEFT's add_weighted_adapter (that is 'lora-merge combine').

Every adapter key must find its base tensor with the right shape, or nothing
is written. Tensors stream one at a time: memory stays a small multiple of the
largest tensor. The output is the same bytes whatever the thread count, and
appears atomically. Inputs may be safetensors or PyTorch .bin files (read
without executing their pickle).

Examples:
  lora-merge --base ./Llama-3.1-8B --adapter ./my-adapter -o ./merged
  lora-merge --base ./llama-nf4 --adapter ./qlora-adapter -o merged.safetensors --dtype bf16
  lora-merge --base M --adapter A --adapter B --weight 0.7,0.3 -o out
  lora-merge --base M --adapter A -o - | lora-inspect --json -
  lora-merge combine --adapter math:0.6 --adapter code:0.4 --method ties_svd --density 0.5 -o skills
  lora-merge resize --adapter ./my-adapter --energy 0.95 --rank 32 -o small
  lora-merge convert ./old-adapter -o ./old-adapter-st

'lora-merge COMMAND --help' explains each command ('lora-merge merge --help': the
merge flags).`

// cmd is the lora-merge command line.
type cmd struct {
	cli.Globals
	Merge   mergeCmd   `cmd:"" default:"withargs" help:"Merge adapters into a base model (the default command: 'lora-merge --base M --adapter A -o OUT')."`
	Combine combineCmd `cmd:"" help:"Combine several adapters into one adapter (PEFT's add_weighted_adapter), without the base."`
	Resize  resizeCmd  `cmd:"" help:"Truncate each module of an adapter to a smaller rank (best approximation by SVD)."`
	Convert convertCmd `cmd:"" help:"Rewrite a checkpoint or adapter (e.g. a PyTorch .bin) as safetensors."`
}

// mergeCmd is `lora-merge --base M --adapter A -o OUT`.
type mergeCmd struct {
	Base             string    `required:"" help:"Base model: an HF folder, a .safetensors file (.gz/.zst), a PyTorch .bin file, a bitsandbytes 4-bit checkpoint, or '-' for a safetensors stream on stdin." placeholder:"MODEL"`
	Adapter          []string  `required:"" sep:"none" help:"PEFT adapter: a folder, a .safetensors or .bin file, or '-'. Repeat to merge several, in order." placeholder:"ADAPTER"`
	Weight           []float64 `help:"Weight of each adapter, comma-separated (default 1 each)." placeholder:"W1,W2"`
	Output           string    `short:"o" required:"" help:"Output: a folder (sharded like the base), a .safetensors file (.gz/.zst), or '-' for stdout." placeholder:"OUT"`
	DType            string    `name:"dtype" default:"auto" enum:"auto,bf16,f16,f32" help:"Output dtype of float tensors (auto: each keeps the base's; a 4-bit weight its quant state's)."`
	Requantize       bool      `help:"With a 4-bit base: write the merged weights as 4-bit again (same type, block size, double quantization)."`
	Safe             bool      `help:"Fail on NaN or infinite merged values (PEFT's safe_merge check)."`
	AllowMutatedBase bool      `name:"allow-mutated-base" help:"Accept PiSSA/OLoRA/CorDA/LoftQ/LoRA-GA adapters: the base given is the one they mutated at init."`
	JSON             bool      `help:"Print the summary as one JSON object on stdout (needs -o FILE or DIR)."`
	Workers          *int      `hidden:"" help:"Deprecated spelling of --threads."`
}

// Run merges and prints the report: on stdout, or on stderr when stdout
// carries the data.
func (c *mergeCmd) Run(ctx *cli.Context) error {
	if len(c.Weight) != 0 && len(c.Weight) != len(c.Adapter) {
		return errclass.Usagef("--weight gives %d weights for %d adapters", len(c.Weight), len(c.Adapter))
	}
	if err := jsonToFile(c.JSON, c.Output); err != nil {
		return err
	}
	o := merge.Options{Env: ctx.Env(), Requantize: c.Requantize, Safe: c.Safe, AllowMutatedBase: c.AllowMutatedBase}
	if c.Workers != nil {
		ctx.Deprecated("--workers", "--threads")
		if o.Threads == 0 {
			o.Threads = *c.Workers
		}
	}
	if c.DType != "auto" {
		d, err := dtype.ParseName(c.DType)
		if err != nil {
			return errclass.Usagef("--dtype %s: %v", c.DType, err)
		}
		o.DType = d
	}
	adapters := make([]merge.AdapterInput, len(c.Adapter))
	for i, p := range c.Adapter {
		adapters[i] = merge.AdapterInput{Path: p, Weight: 1}
		if len(c.Weight) > 0 {
			adapters[i].Weight = c.Weight[i]
		}
	}
	bar := ctx.NewProgress("merging")
	o.Progress = bar.Report
	sum, err := merge.Run(ctx, c.Base, adapters, c.Output, o)
	bar.Done()
	if err != nil {
		return err
	}
	for i := range sum.Adapters {
		sum.Adapters[i].Warnings = nil // printed as they were found
	}
	switch {
	case c.JSON:
		if err := cli.PrintJSON(ctx.Stdout, sum); err != nil {
			return err
		}
	case !ctx.Quiet():
		sum.WriteText(ctx.ReportTo(c.Output), ctx.Name)
	}
	ctx.Infof("kernel %s, %d workers (GOMAXPROCS %d), %.2fs (commit %.2fs)", sum.Kernel, sum.Workers, runtime.GOMAXPROCS(0),
		sum.Seconds, sum.CommitSeconds)
	return nil
}

// jsonToFile refuses --json with -o -: both would use stdout.
func jsonToFile(json bool, out string) error {
	if json && out == "-" {
		return errclass.Usagef("--json prints to stdout, which -o - uses for the data; write to a file or folder")
	}
	return nil
}

// tool is lora-merge for cli.Main (and for in-process tests, cli.Run).
func tool() cli.Tool {
	c := new(cmd)
	return cli.Tool{Name: "lora-merge", Description: description, Grammar: c, Globals: &c.Globals}
}

func main() { cli.Main(tool()) }
