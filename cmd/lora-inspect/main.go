// Command lora-inspect reports what a LoRA adapter, a model checkpoint, a
// 4-bit checkpoint or a GGUF file holds, and plans LoRA training runs.
package main

import (
	"github.com/lorakit/lorakit/pkg/cli"
	"github.com/lorakit/lorakit/pkg/inspect"
)

const description = `Report what adapters, checkpoints and GGUF files hold, and plan LoRA training.

Inputs are recognized by content: a PEFT adapter (folder, .safetensors file or
'-' stream), an HF model (folder, single file, shards), a bitsandbytes 4-bit
model, or a GGUF file. Only headers are read unless --deltas needs the weights.

Examples:
  lora-inspect ./my-adapter
  lora-inspect --json ./Llama-3.1-8B-Instruct ./my-adapter
  lora-inspect --tensors model.safetensors
  lora-inspect --deltas ./my-adapter --base ./Llama-3.1-8B
  lora-merge --base M --adapter A -o - | lora-inspect --json -
  lora-inspect plan --config llama3-8b --rank 16 --alpha 32 --targets q_proj,k_proj,v_proj,o_proj --qlora`

type cmd struct {
	cli.Globals
	Show inspect.ShowCmd `cmd:"" default:"withargs" help:"Summarize each PATH (the default command)."`
	Plan inspect.PlanCmd `cmd:"" help:"Plan a LoRA training run from a config.json alone."`
}

func main() {
	var c cmd
	cli.Main("lora-inspect", description, &c, &c.Globals)
}
