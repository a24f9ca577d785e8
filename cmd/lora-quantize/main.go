// Command lora-quantize converts checkpoints to and from bitsandbytes NF4/FP4.
package main

import "github.com/lorakit/lorakit/pkg/cli"

func main() {
	cli.NotYet("lora-quantize", "NF4/FP4 4-bit quantization with double quantization, bitsandbytes-compatible")
}
