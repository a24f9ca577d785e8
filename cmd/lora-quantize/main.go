// Command lora-quantize converts Hugging Face checkpoints to bitsandbytes'
// 4-bit NF4/FP4 format (with double quantization), which transformers loads
// as a 4-bit model, and back.
package main

import (
	"github.com/lorakit/lorakit/pkg/cli"
	"github.com/lorakit/lorakit/pkg/quantize"
)

const description = `Quantize a model to bitsandbytes 4-bit (NF4/FP4, QLoRA), or dequantize one.

The Linear weights (q/k/v/o/gate/up/down projections) become 4-bit with the
quant-state tensors transformers expects; embeddings, norms, biases and
lm_head keep the model's dtype; config.json gets a quantization_config block.
The output is byte-compatible with what bitsandbytes' quantize_4bit and
transformers write, and is identical whatever the number of cores.
The report (stdout, or stderr with -o -) gives per weight and in total the
bits per parameter, the bytes before and after, and the RMSE and max abs error
of the dequantized weights against the original.

Examples:
  lora-quantize ./Llama-3.1-8B -o ./Llama-3.1-8B-nf4
  lora-quantize model.safetensors -o model-fp4.safetensors --type fp4 --no-double-quant
  lora-quantize ./Llama-3.1-8B -o - --skip 'model.layers.0.' | lora-inspect --json -
  lora-quantize --dequantize ./Llama-3.1-8B-nf4 -o ./Llama-3.1-8B-bf16 --dtype bf16`

type cmd struct {
	cli.Globals
	quantize.Cmd
}

func main() {
	var c cmd
	cli.Main("lora-quantize", description, &c, &c.Globals)
}
