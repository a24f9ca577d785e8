// Command lora-merge merges LoRA, DoRA and IA3 adapters into a checkpoint:
// W' = W0 + (alpha/r)·B·A, computed in float32 and rounded once, streaming
// tensor by tensor. See pkg/merge.
package main

import (
	"github.com/lorakit/lorakit/pkg/cli"
	"github.com/lorakit/lorakit/pkg/merge"
)

type cmd struct {
	cli.Globals
	merge.Cmd
}

func main() {
	var c cmd
	cli.Main("lora-merge", merge.Description, &c, &c.Globals)
}
