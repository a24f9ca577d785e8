package merge

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/cli"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/model"
)

// Description is lora-merge's --help text.
const Description = `Merge LoRA, DoRA and IA3 adapters into a checkpoint: W' = W0 + (alpha/r)·B·A.

The merged weights are computed in float32 and rounded once to the output
dtype; with a float32 base the result is PEFT's merge_and_unload bit for bit.
rsLoRA, rank_pattern/alpha_pattern, fan_in_fan_out, embedding LoRA,
modules_to_save, trained biases and trainable tokens are applied as PEFT does.
A bitsandbytes NF4/FP4 base is dequantized tensor by tensor (the base a QLoRA
adapter was trained against) and written as floats, or as 4-bit again with
--requantize. Several adapters are added in delta space,
W' = W0 + sum_i w_i·(merge_i(W0) - W0), exactly: this is not PEFT's
add_weighted_adapter, which mixes A and B separately and adds cross terms.

Every adapter key must find its base tensor with the right shape, or nothing
is written. Tensors stream one at a time: memory stays a small multiple of the
largest tensor. The output is the same bytes whatever the thread count, and
appears atomically.

Examples:
  lora-merge --base ./Llama-3.1-8B --adapter ./my-adapter -o ./merged
  lora-merge --base ./llama-nf4 --adapter ./qlora-adapter -o merged.safetensors --dtype bf16
  lora-merge --base M --adapter A --adapter B --weight 0.7,0.3 -o out
  lora-merge --base M --adapter A -o - | lora-inspect --json -`

// Cmd is the lora-merge command line.
type Cmd struct {
	Base             string    `required:"" help:"Base model: an HF folder, a .safetensors file (.gz/.zst), a bitsandbytes 4-bit checkpoint, or '-' for a safetensors stream on stdin." placeholder:"MODEL"`
	Adapter          []string  `required:"" sep:"none" help:"PEFT adapter: a folder, a .safetensors file or '-'. Repeat to merge several, in order." placeholder:"ADAPTER"`
	Weight           []float64 `help:"Weight of each adapter, comma-separated (default 1 each)." placeholder:"W1,W2"`
	Output           string    `short:"o" required:"" help:"Output: a folder (sharded like the base), a .safetensors file (.gz/.zst), or '-' for stdout." placeholder:"OUT"`
	DType            string    `name:"dtype" default:"auto" enum:"auto,bf16,f16,f32" help:"Output dtype of float tensors (auto: each keeps the base's; a 4-bit weight its quant state's)."`
	Requantize       bool      `help:"With a 4-bit base: write the merged weights as 4-bit again (same type, block size, double quantization)."`
	Safe             bool      `help:"Fail on NaN or infinite merged values (PEFT's safe_merge check)."`
	AllowMutatedBase bool      `name:"allow-mutated-base" help:"Accept PiSSA/OLoRA/CorDA/LoftQ/LoRA-GA adapters: the base given is the one they mutated at init."`
	JSON             bool      `help:"Print the summary as one JSON object on stdout (needs -o FILE or DIR)."`
	Workers          int       `default:"0" help:"Merge goroutines (0: one per CPU, at most 4). The output does not depend on it."`

	// Stdin is read for '-' (os.Stdin when nil).
	Stdin io.Reader `kong:"-"`
}

// Run merges and prints the report: on stdout, or on stderr when stdout
// carries the data.
func (c *Cmd) Run(ctx *cli.Context) error {
	stdin := c.Stdin
	if stdin == nil {
		stdin = os.Stdin
	}
	dashes := 0
	for _, p := range append([]string{c.Base}, c.Adapter...) {
		if p == "-" {
			dashes++
		}
	}
	if dashes > 1 {
		return errclass.Usagef("'-' (stdin) may be given once")
	}
	if len(c.Weight) != 0 && len(c.Weight) != len(c.Adapter) {
		return errclass.Usagef("--weight gives %d weights for %d adapters", len(c.Weight), len(c.Adapter))
	}
	if c.JSON && c.Output == "-" {
		return errclass.Usagef("--json prints to stdout, which -o - uses for the data; write to a file or folder")
	}
	opts := Options{Requantize: c.Requantize, Safe: c.Safe, Workers: c.Workers}
	if c.DType != "auto" {
		d, err := dtype.ParseName(c.DType)
		if err != nil {
			return errclass.Usagef("--dtype %s: %v", c.DType, err)
		}
		opts.DType = d
	}
	if c.Requantize && opts.DType != "" {
		return errclass.Usagef("--requantize keeps the base's dtypes; drop --dtype")
	}

	mb, err := model.OpenBase(c.Base, stdin, model.BaseOptions{})
	if err != nil {
		return err
	}
	defer mb.Close()
	base := mb.Source
	var adapters []*Adapter
	defer func() {
		for _, a := range adapters {
			a.Close()
		}
	}()
	for i, path := range c.Adapter {
		w := 1.0
		if len(c.Weight) > 0 {
			w = c.Weight[i]
		}
		a, err := OpenAdapter(path, stdin, w, AdapterOptions{AllowMutatedBase: c.AllowMutatedBase})
		if err != nil {
			return err
		}
		adapters = append(adapters, a)
	}
	plan, err := Prepare(base, adapters, opts)
	if err != nil {
		return err
	}
	defer plan.Close()
	report := ctx.Stdout
	if c.Output == "-" {
		report = ctx.Stderr
	}
	for _, a := range adapters {
		for _, w := range a.Warnings() {
			ctx.Warnf("%s: %s", a.Path, w)
		}
	}
	prog := ctx.NewProgress("merging", plan.OutputBytes())
	sum, err := plan.Run(ctx, c.Output, prog.Add)
	prog.Done()
	if err != nil {
		return err
	}
	for i := range sum.Adapters {
		sum.Adapters[i].Warnings = nil // printed above
	}
	switch {
	case c.JSON:
		enc := json.NewEncoder(ctx.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(sum); err != nil {
			return err
		}
	case !ctx.Quiet:
		sum.WriteText(report, ctx.Name)
	}
	if ctx.Verbose && !ctx.Quiet {
		fmt.Fprintf(ctx.Stderr, "%s: kernel %s, %d workers (GOMAXPROCS %d), %.2fs (commit %.2fs), peak RSS %s\n",
			ctx.Name, sum.Kernel, plan.opts.Workers, runtime.GOMAXPROCS(0), sum.Seconds, sum.CommitSeconds, num.Bytes(PeakRSS(), 1))
	}
	return nil
}

// OutputBytes is the size of the output's tensor data (4-bit weights
// re-quantized count at their input size).
func (p *Plan) OutputBytes() int64 {
	var n int64
	for _, sh := range p.shards {
		for _, t := range sh.Tensors {
			n += num.Elements(t.Shape) * int64(t.DType.Size())
		}
	}
	return n
}
