// Command lora-quantize converts Hugging Face checkpoints to bitsandbytes'
// 4-bit NF4/FP4 format (with double quantization), which transformers loads
// as a 4-bit model, and back. It is a thin layer over pkg/quantize.
package main

import (
	"regexp"
	"strconv"

	"github.com/alecthomas/kong"

	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/quantize"
)

const description = `Quantize a model to bitsandbytes 4-bit (NF4/FP4, QLoRA), or dequantize one.

The Linear weights (q/k/v/o/gate/up/down projections) become 4-bit with the
quant-state tensors transformers expects; embeddings, norms, biases and
lm_head keep the model's dtype; config.json gets a quantization_config block.
The output is byte-compatible with what bitsandbytes' quantize_4bit and
transformers write, and is identical whatever the number of cores.
The report (stdout, or stderr with -o -) gives per weight and in total the
bits per parameter, the bytes before and after, and the RMSE and max abs error
of the dequantized weights against the original.

Examples:
  lora-quantize ./Llama-3.1-8B -o ./Llama-3.1-8B-nf4
  lora-quantize model.safetensors -o model-fp4.safetensors --type fp4 --no-double-quant
  lora-quantize ./Llama-3.1-8B -o - --skip 'model.layers.0.' | lora-inspect --json -
  lora-quantize --dequantize ./Llama-3.1-8B-nf4 -o ./Llama-3.1-8B-bf16 --dtype bf16`

// cmd is the lora-quantize command line: quantize (the default) or, with
// --dequantize, the way back. Defaults come from quantize.DefaultOptions.
type cmd struct {
	cli.Globals
	In     string `arg:"" name:"in" help:"Model: an HF folder, a .safetensors file (.gz/.zst too), or '-' for a safetensors stream on stdin."`
	Output string `short:"o" required:"" placeholder:"OUT" help:"Output: a folder (sharded like the input), a .safetensors file, or '-' for stdout."`

	Type          string   `placeholder:"nf4|fp4" help:"4-bit code: nf4 (default) or fp4."`
	Blocksize     int      `placeholder:"${blocksize}" help:"Elements per absmax block: a power of two from 32 to 4096 (default ${blocksize}, as transformers)."`
	NoDoubleQuant bool     `name:"no-double-quant" help:"Keep the block absmax in float32 (4.5 bits/param) instead of double-quantizing it (4.127)."`
	Skip          []string `sep:"none" placeholder:"REGEX" help:"Leave modules matching REGEX unquantized (anchored at the start of the module name, or a literal suffix; repeatable). lm_head is always left alone."`
	ComputeDType  string   `name:"compute-dtype" placeholder:"bf16" help:"bnb_4bit_compute_dtype written to config.json: bf16 (default), f16 or f32."`

	Dequantize bool   `help:"Turn a bitsandbytes 4-bit checkpoint (ours or transformers') back into a plain one."`
	DType      string `name:"dtype" placeholder:"bf16|f16|f32" help:"With --dequantize: the output dtype of every float tensor (default: each weight's original dtype, other tensors unchanged)."`

	JSON bool `help:"Print the report as one JSON object."`
}

// options turns the flags into quantize.Options, refusing combinations that
// cannot work before any input is read.
func (c *cmd) options() (quantize.Options, error) {
	o := quantize.DefaultOptions()
	o.Dequantize = c.Dequantize
	if c.Dequantize {
		if c.Type != "" || c.Blocksize != 0 || c.NoDoubleQuant || len(c.Skip) > 0 || c.ComputeDType != "" {
			return o, errclass.Usagef("--type, --blocksize, --no-double-quant, --skip and --compute-dtype are for quantizing, not with --dequantize")
		}
		if c.DType != "" {
			d, err := quantize.ParseFloatDType(c.DType)
			if err != nil {
				return o, errclass.Usagef("--dtype: %v", err)
			}
			o.DType = d
		}
		return o, nil
	}
	if c.DType != "" {
		return o, errclass.Usagef("--dtype is for --dequantize (a quantized model keeps its other tensors' dtype)")
	}
	if c.Type != "" {
		t, err := nf4.ParseType(c.Type)
		if err != nil {
			return o, errclass.Usagef("--type: %v", err)
		}
		o.Type = t
	}
	if c.Blocksize != 0 {
		if err := nf4.CheckBlocksize(c.Blocksize); err != nil {
			return o, errclass.Usagef("--blocksize: %v", err)
		}
		o.Blocksize = c.Blocksize
	}
	for _, p := range c.Skip {
		if _, err := regexp.Compile(p); err != nil {
			return o, errclass.Usagef("--skip %q: %v", p, err)
		}
	}
	o.Skip = c.Skip
	o.DoubleQuant = !c.NoDoubleQuant
	if c.ComputeDType != "" {
		d, err := quantize.ParseFloatDType(c.ComputeDType)
		if err != nil {
			return o, errclass.Usagef("--compute-dtype: %v", err)
		}
		o.ComputeDType = d.TorchName()
	}
	return o, nil
}

// Run quantizes or dequantizes and prints the report: on stdout, or on
// stderr when stdout carries the data (-o -).
func (c *cmd) Run(ctx *cli.Context) error {
	o, err := c.options()
	if err != nil {
		return err
	}
	o.Env = ctx.Env()
	bar := ctx.NewProgress("lora-quantize")
	o.Progress = bar.Report
	rep, err := quantize.Run(ctx, c.In, c.Output, o)
	bar.Done()
	if err != nil {
		return err
	}
	w := ctx.ReportTo(c.Output)
	if c.JSON {
		return cli.PrintJSON(w, rep)
	}
	if ctx.Quiet() {
		return nil
	}
	return quantize.WriteText(w, rep)
}

// tool is lora-quantize for cli.Main (and for in-process tests, cli.Run).
func tool() cli.Tool {
	c := new(cmd)
	d := quantize.DefaultOptions()
	return cli.Tool{Name: "lora-quantize", Description: description, Grammar: c, Globals: &c.Globals,
		Options: []kong.Option{kong.Vars{"blocksize": strconv.Itoa(d.Blocksize)}}}
}

func main() { cli.Main(tool()) }
