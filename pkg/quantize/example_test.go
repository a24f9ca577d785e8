package quantize_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/lorakit/lorakit/pkg/quantize"
)

// Quantize a model to NF4 with double quantization (QLoRA's settings; the tiny
// model's blocks are short, so the state costs more than on a real one) and
// back to floats, as lora-quantize and lora-quantize --dequantize do.
func Example() {
	dir, err := os.MkdirTemp("", "quantize-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	nf4 := filepath.Join(dir, "tiny-nf4")
	rep, err := quantize.Run(context.Background(), "../../examples/tiny-llama", nf4, quantize.DefaultOptions())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d weights to %s, %.3f bits per parameter\n", rep.Quantized.Tensors, rep.QuantType, rep.Quantized.BitsAfter)

	o := quantize.DefaultOptions()
	o.Dequantize = true
	if rep, err = quantize.Run(context.Background(), nf4, filepath.Join(dir, "tiny.safetensors"), o); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d weights back to floats\n", rep.Mode, rep.Quantized.Tensors)
	// Output:
	// 14 weights to nf4, 6.039 bits per parameter
	// dequantize: 14 weights back to floats
}
