// Command genmodel writes a random Llama-shaped checkpoint (internal/
// randmodel) and, with -rank, a LoRA adapter for it: the inputs of the speed
// and memory figures and of tests that need a large model.
//
//	go run ./tools/genmodel -o /tmp/bench -layers 8        # model/ (0.97 GB bf16, 4 shards) and adapter/ (rank 16)
//	lora-merge --base /tmp/bench/model --adapter /tmp/bench/adapter -o /tmp/bench/merged
//
// Adapters alone, of Llama 3 8B's shapes (for lora-merge combine and resize):
//
//	go run ./tools/genmodel -o /tmp/a1 -model=false -hidden 4096 -inter 14336 -layers 32 -heads 32 -kv-heads 8 -vocab 128256 -seed 1
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/lorakit/lorakit/internal/randmodel"
	"github.com/lorakit/lorakit/pkg/dtype"
)

func main() {
	c := randmodel.Config{Std: 0.02}
	out := flag.String("o", "", "output folder: model/ and, with -rank > 0, adapter/ are created in it")
	flag.IntVar(&c.Hidden, "hidden", 2048, "hidden size")
	flag.IntVar(&c.Intermediate, "inter", 5632, "intermediate size")
	flag.IntVar(&c.Layers, "layers", 16, "decoder layers")
	flag.IntVar(&c.Vocab, "vocab", 32000, "vocabulary size")
	flag.IntVar(&c.Heads, "heads", 32, "attention heads")
	flag.IntVar(&c.KVHeads, "kv-heads", 4, "key/value heads")
	flag.IntVar(&c.Shards, "shards", 4, "model shards")
	flag.Uint64Var(&c.Seed, "seed", 1, "random seed")
	dt := flag.String("dtype", "bf16", "weight dtype: bf16, f16 or f32")
	rank := flag.Int("rank", 16, "rank of the all-linear LoRA adapter (0: none)")
	model := flag.Bool("model", true, "write the model (-model=false: the adapter alone)")
	flag.Parse()
	d, err := dtype.ParseName(*dt)
	if *out == "" || err != nil {
		fmt.Fprintln(os.Stderr, "usage: genmodel -o DIR [-layers N] [-dtype bf16|f16|f32] [-rank R] ... (see -h)")
		os.Exit(2)
	}
	c.DType = d
	if err := run(c, *out, *rank, *model); err != nil {
		fmt.Fprintln(os.Stderr, "genmodel:", err)
		os.Exit(1)
	}
}

func run(c randmodel.Config, out string, rank int, model bool) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if model {
		if err := c.Write(filepath.Join(out, "model")); err != nil {
			return err
		}
		fmt.Printf("model: %d tensors, %.2f GB of %s in %d shards; ", len(c.Tensors()), float64(c.Bytes())/1e9, c.DType, max(c.Shards, 1))
	}
	if rank > 0 {
		if err := c.Adapter(filepath.Join(out, "adapter"), rank, c.Seed+1); err != nil {
			return err
		}
		fmt.Printf("adapter: rank %d on every projection", rank)
	}
	fmt.Println()
	return nil
}
