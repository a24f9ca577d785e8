// Command lora-merge merges LoRA and DoRA adapters into a checkpoint.
package main

import "github.com/lorakit/lorakit/pkg/cli"

func main() {
	cli.NotYet("lora-merge", "merge adapters into a checkpoint: W' = W0 + (alpha/r)·B·A")
}
