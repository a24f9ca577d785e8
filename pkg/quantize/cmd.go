package quantize

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/cli"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/nf4"
)

// Cmd is the lora-quantize command line: quantize (the default) or, with
// --dequantize, the way back.
type Cmd struct {
	In     string `arg:"" name:"in" help:"Model: an HF folder, a .safetensors file (.gz/.zst too), or '-' for a safetensors stream on stdin."`
	Output string `short:"o" required:"" placeholder:"OUT" help:"Output: a folder (sharded like the input), a .safetensors file, or '-' for stdout."`

	Type          string   `placeholder:"nf4|fp4" help:"4-bit code: nf4 (default) or fp4."`
	Blocksize     int      `placeholder:"64" help:"Elements per absmax block: a power of two from 32 to 4096 (default 64, as transformers)."`
	NoDoubleQuant bool     `name:"no-double-quant" help:"Keep the block absmax in float32 (4.5 bits/param) instead of double-quantizing it (4.127)."`
	Skip          []string `sep:"none" placeholder:"REGEX" help:"Leave modules matching REGEX unquantized (anchored at the start of the module name, or a literal suffix; repeatable). lm_head is always left alone."`
	ComputeDType  string   `name:"compute-dtype" placeholder:"bf16" help:"bnb_4bit_compute_dtype written to config.json: bf16 (default), f16 or f32."`

	Dequantize bool   `help:"Turn a bitsandbytes 4-bit checkpoint (ours or transformers') back into a plain one."`
	DType      string `name:"dtype" placeholder:"bf16|f16|f32" help:"With --dequantize: the output dtype of every float tensor (default: each weight's original dtype, other tensors unchanged)."`

	JSON bool `help:"Print the report as one JSON object."`
}

// Run quantizes or dequantizes and prints the report: on stdout, or on
// stderr when stdout carries the data (-o -).
func (c *Cmd) Run(ctx *cli.Context) error {
	if err := c.check(); err != nil {
		return err
	}
	src, err := checkpoint.Open(c.In, os.Stdin)
	if err != nil {
		return err
	}
	defer src.Close()
	var bar *cli.Progress
	var last int64
	progress := func(done, total int64) {
		if bar == nil {
			bar = ctx.NewProgress("lora-quantize", total)
		}
		bar.Add(done - last)
		last = done
	}
	var rep *Report
	if c.Dequantize {
		o := DequantizeOptions{Progress: progress}
		if c.DType != "" {
			if o.DType, err = ParseFloatDType(c.DType); err != nil {
				return errclass.Usagef("--dtype: %v", err)
			}
		}
		rep, err = Dequantize(ctx, src, c.Output, o)
	} else {
		o := DefaultOptions()
		o.Progress = progress
		o.Logf = ctx.Infof
		if c.Type != "" {
			if o.Type, err = nf4.ParseType(c.Type); err != nil {
				return errclass.Usagef("--type: %v", err)
			}
		}
		if c.Blocksize != 0 {
			o.Blocksize = c.Blocksize
		}
		o.DoubleQuant = !c.NoDoubleQuant
		o.Skip = c.Skip
		if c.ComputeDType != "" {
			d, err := ParseFloatDType(c.ComputeDType)
			if err != nil {
				return errclass.Usagef("--compute-dtype: %v", err)
			}
			o.ComputeDType = d.TorchName()
		}
		rep, err = Quantize(ctx, src, c.Output, o)
	}
	bar.Done()
	if err != nil {
		return err
	}
	var w io.Writer = ctx.Stdout
	if c.Output == "-" {
		w = ctx.Stderr
	}
	if c.JSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	if ctx.Quiet {
		return nil
	}
	return WriteText(w, rep)
}

// check rejects flag combinations that cannot work, before any input is read.
func (c *Cmd) check() error {
	if c.Dequantize {
		if c.Type != "" || c.Blocksize != 0 || c.NoDoubleQuant || len(c.Skip) > 0 || c.ComputeDType != "" {
			return errclass.Usagef("--type, --blocksize, --no-double-quant, --skip and --compute-dtype are for quantizing, not with --dequantize")
		}
		if c.DType != "" {
			if _, err := ParseFloatDType(c.DType); err != nil {
				return errclass.Usagef("--dtype: %v", err)
			}
		}
	} else {
		if c.DType != "" {
			return errclass.Usagef("--dtype is for --dequantize (a quantized model keeps its other tensors' dtype)")
		}
		if c.Type != "" {
			if _, err := nf4.ParseType(c.Type); err != nil {
				return errclass.Usagef("--type: %v", err)
			}
		}
		if c.Blocksize != 0 {
			if err := nf4.CheckBlocksize(c.Blocksize); err != nil {
				return errclass.Usagef("--blocksize: %v", err)
			}
		}
		for _, p := range c.Skip {
			if _, err := regexp.Compile(p); err != nil {
				return errclass.Usagef("--skip %q: %v", p, err)
			}
		}
		if c.ComputeDType != "" {
			if _, err := ParseFloatDType(c.ComputeDType); err != nil {
				return errclass.Usagef("--compute-dtype: %v", err)
			}
		}
	}
	if c.In != "-" && c.Output != "-" {
		a, err1 := filepath.Abs(c.In)
		b, err2 := filepath.Abs(c.Output)
		if err1 == nil && err2 == nil && a == b {
			return errclass.Usagef("the output %s would replace the input", c.Output)
		}
	}
	return nil
}
