// Command lora-train trains LoRA and DoRA adapters on Llama-family models,
// evaluates them and benchmarks training steps.
package main

import (
	"github.com/lorakit/lorakit/pkg/cli"
	"github.com/lorakit/lorakit/pkg/train"
)

func main() {
	var c train.Command
	cli.Main("lora-train", train.Description, &c, &c.Globals)
}
