package main

import (
	"io"

	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/pkg/convert"
)

// convertCmd is `lora-merge convert IN -o OUT`.
type convertCmd struct {
	Input  string `arg:"" name:"in" help:"Checkpoint or adapter: a folder (pytorch_model.bin, its shards and index, adapter_model.bin), a .bin or .safetensors file, or '-'."`
	Output string `short:"o" required:"" help:"Output: a folder (model.safetensors or shards and index, adapter_model.safetensors; configs and tokenizer carried), a .safetensors file (.gz/.zst) or '-' for stdout." placeholder:"OUT"`
	JSON   bool   `help:"Print the report as one JSON object on stdout (needs -o FILE or DIR)."`
}

// Help says what is written.
func (c *convertCmd) Help() string {
	return `The tensors keep their names, dtypes (F64 too), shapes and bytes: the output is what
safetensors.torch.save_file writes for the same state dict with every tensor cloned
and made contiguous, with {"format": "pt"} metadata as transformers and PEFT save.
A PEFT adapter stays a PEFT adapter. Tensors that share a storage in the .bin file
(tied embed_tokens and lm_head) are written once per name, each with its own copy;
values that are not tensors (a training checkpoint's counters) are left out, and the
report lists both. A .bin file is read without executing its pickle: only tensor and
container globals are accepted (exit 3 otherwise), and only its zip directory and
pickle are read before the tensors are copied, in 1 MiB pieces.`
}

// Run converts and prints the report.
func (c *convertCmd) Run(ctx *cli.Context) error {
	if err := jsonToFile(c.JSON, c.Output); err != nil {
		return err
	}
	o := convert.Options{Env: ctx.Env()}
	bar := ctx.NewProgress("converting")
	o.Progress = bar.Report
	rep, err := convert.Run(ctx, c.Input, c.Output, o)
	bar.Done()
	if err != nil {
		return err
	}
	return report(ctx, c.JSON, c.Output, rep, func(w io.Writer) error { rep.WriteText(w); return nil })
}
