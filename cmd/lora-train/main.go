// Command lora-train trains LoRA and DoRA adapters on the GPU or the CPU.
package main

import "github.com/lorakit/lorakit/pkg/cli"

func main() {
	cli.NotYet("lora-train", "train a LoRA/DoRA adapter from JSONL data, on the GPU (CUDA) or the CPU")
}
