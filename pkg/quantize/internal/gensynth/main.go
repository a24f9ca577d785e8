// Command gensynth writes a synthetic Llama-shaped checkpoint with random
// weights, for measuring lora-quantize:
//
//	go run ./pkg/quantize/internal/gensynth -o /tmp/llama1b          # 0.84 B params, 1.67 GB bf16
//	go run ./pkg/quantize/internal/gensynth -o /tmp/m -layers 4 -shards 2 -dtype f16
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/quantize/internal/synth"
)

func main() {
	c := synth.Llama1B
	out := flag.String("o", "", "output folder, .safetensors file or '-'")
	flag.IntVar(&c.Hidden, "hidden", c.Hidden, "hidden size")
	flag.IntVar(&c.Intermediate, "intermediate", c.Intermediate, "MLP intermediate size")
	flag.IntVar(&c.Layers, "layers", c.Layers, "layers")
	flag.IntVar(&c.Heads, "heads", c.Heads, "attention heads")
	flag.IntVar(&c.KVHeads, "kv-heads", c.KVHeads, "key/value heads")
	flag.IntVar(&c.Vocab, "vocab", c.Vocab, "vocabulary size")
	flag.IntVar(&c.Shards, "shards", 1, "number of shards")
	flag.Uint64Var(&c.Seed, "seed", c.Seed, "random seed")
	dt := flag.String("dtype", "bf16", "bf16, f16 or f32")
	flag.Parse()
	d, err := dtype.ParseName(*dt)
	if err != nil || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: gensynth -o OUT [-dtype bf16|f16|f32] [-layers N] [-shards N] ...")
		os.Exit(2)
	}
	c.DType = d
	if err := c.Write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gensynth:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "gensynth: wrote %s: %d tensors, %d bytes of %s\n", *out, len(c.Tensors()), c.Bytes(), d)
}
