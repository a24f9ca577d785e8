// Command lora-gguf exports Llama-family models and PEFT LoRA adapters to GGUF for
// llama.cpp.
package main

import (
	"github.com/lorakit/lorakit/pkg/cli"
	"github.com/lorakit/lorakit/pkg/export"
)

const description = `Export a model or a LoRA adapter to GGUF for llama.cpp.

Examples:
  lora-gguf ./Llama-3.1-8B -o llama.gguf --type q8_0
  lora-gguf ./my-adapter --base ./Llama-3.1-8B -o adapter.gguf
  lora-merge --base M --adapter A -o - | lora-gguf - -o merged.gguf
  lora-gguf ./model -o - --type q8_0 | ssh host "cat > model.gguf"`

type cmd struct {
	cli.Globals
	export.Cmd
}

func main() {
	var c cmd
	cli.Main("lora-gguf", description, &c, &c.Globals)
}
