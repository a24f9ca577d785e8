// Command lora-gguf exports models of every architecture in the registry and their
// PEFT LoRA adapters to GGUF for llama.cpp. It is a thin layer over pkg/export.
package main

import (
	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/export"
	"github.com/lorakit/lorakit/pkg/gguf"
)

const description = `Export a model or a LoRA adapter to GGUF for llama.cpp.

Examples:
  lora-gguf ./Llama-3.1-8B -o llama.gguf --type q8_0
  lora-gguf ./my-adapter --base ./Llama-3.1-8B -o adapter.gguf
  lora-merge --base M --adapter A -o - | lora-gguf - -o merged.gguf
  lora-gguf ./model -o - --type q8_0 | ssh host "cat > model.gguf"`

// cmd is the lora-gguf command line: a model or an adapter in, a GGUF file out.
type cmd struct {
	cli.Globals
	Input   string `arg:"" name:"in" help:"A model (HF folder, .safetensors file, 4-bit bitsandbytes checkpoint) or a PEFT LoRA adapter (folder or file), or '-' for a safetensors stream on stdin."`
	Output  string `short:"o" required:"" placeholder:"OUT.gguf" help:"The GGUF file to write (atomically), or '-' for stdout."`
	Type    string `short:"t" default:"auto" enum:"auto,f32,f16,bf16,q8_0,q4_0" help:"Type of the 2-D weights: auto (models: bf16 for bf16 checkpoints, else f16; adapters: f32), f32, f16, bf16, q8_0, q4_0. Norms and 1-D tensors are always f32; adapters take f32, f16 or bf16."`
	Base    string `placeholder:"MODEL" help:"For an adapter: its base model (HF folder, .safetensors file, GGUF model, config.json or a built-in shape), for the head counts and shapes."`
	Name    string `help:"general.name (default: the input's folder or file name)."`
	NoVocab bool   `name:"no-vocab" help:"Write no vocabulary (tokenizer.ggml.model no_vocab): llama.cpp decodes token ids but cannot tokenize text."`
	Pre     string `placeholder:"NAME" help:"tokenizer.ggml.pre for a byte-level BPE tokenizer whose pre-tokenizer lorakit does not recognise (e.g. llama-bpe)."`
	JSON    bool   `help:"Print the report as one JSON object."`
}

// Help is appended to --help.
func (c *cmd) Help() string {
	return `A model becomes a GGUF model of llama.cpp's architecture for it (the table below)
with the metadata keys llama.cpp reads, its tensors named and transformed as
llama.cpp's converter does (Llama/Mistral q/k row order, Gemma's norms + 1, a
Gemma 3 vocabulary trimmed to the tokenizer), generated tensors (Llama 3.1's
rope_freqs.weight, Phi-3's LongRoPE factors) and the tokenizer of tokenizer.json
(a minimal byte vocabulary when there is none). Where llama.cpp computes something
else than transformers, the export makes it compute the same (folds a factor,
writes a key, caps the context at a sliding window llama.cpp lacks) and says so
in its notes, or refuses with the config field at fault.

An adapter becomes a GGUF LoRA adapter for llama.cpp's --lora on every module
llama.cpp applies adapters to (Phi-3's fused qkv_proj and gate_up_proj too),
with PEFT's scaling (alpha/r, rsLoRA, rank and alpha patterns) reproduced exactly.
DoRA adapters, biases and lora_bias cannot be represented: merge them with
lora-merge, then export the model.

Architectures (config.json model_type):
` + cli.Preformatted(arch.Table()) + `

The report goes to stdout (stderr when the GGUF goes to stdout).`
}

// Run exports the input and prints the report: on stdout, or on stderr when
// the GGUF goes to stdout.
func (c *cmd) Run(ctx *cli.Context) error {
	o := export.Options{Env: ctx.Env(), Base: c.Base, Name: c.Name, NoVocab: c.NoVocab, Pre: c.Pre, Auto: c.Type == "auto"}
	if !o.Auto {
		o.Type, _ = gguf.ParseType(c.Type) // kong checked the enum
	}
	bar := ctx.NewProgress("lora-gguf")
	o.Progress = bar.Report
	r, err := export.Run(ctx, c.Input, c.Output, o)
	bar.Done()
	if err != nil || ctx.Quiet() {
		return err
	}
	w := ctx.ReportTo(c.Output)
	if c.JSON {
		return cli.PrintJSON(w, r)
	}
	return export.WriteText(w, r)
}

// tool is lora-gguf for cli.Main (and for in-process tests, cli.Run).
func tool() cli.Tool {
	c := new(cmd)
	return cli.Tool{Name: "lora-gguf", Description: description, Grammar: c, Globals: &c.Globals}
}

func main() { cli.Main(tool()) }
