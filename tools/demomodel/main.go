// Command demomodel makes the inputs of `make demo` and checks its results,
// with nothing downloaded:
//
//	go run ./tools/demomodel init -seed 1 -o DIR      # a random Llama-shaped model with a byte-level tokenizer
//	go run ./tools/demomodel data -seed 1 -o DIR      # the rot13 task: train.jsonl, test.jsonl
//	go run ./tools/demomodel eval -model DIR [-adapter A] -data test.jsonl   # greedy generation, k/N correct
//
// The model (init) is a pure function of the seed and the shape flags: f32
// weights from a PCG generator (embeddings N(0,1), projections N(0,1/fan_in),
// norms 1), a tokenizer with one token per byte (GPT-2's byte alphabet, Llama 3's
// pre-tokenizer, two merges) plus <|begin_of_text|>, <|end_of_text|> and <|pad|>.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "init":
		err = cmdInit(os.Args[2:])
	case "data":
		err = cmdData(os.Args[2:])
	case "eval":
		err = cmdEval(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demomodel:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: demomodel init|data|eval [flags] (see -h of each)")
	os.Exit(2)
}

func cmdInit(args []string) error {
	fs := flag.NewFlagSet("init", flag.ExitOnError)
	seed := fs.Uint64("seed", 1, "seed of the random weights")
	out := fs.String("o", "", "output: a folder, a .safetensors file or - (required)")
	s := DefaultShape
	fs.IntVar(&s.Hidden, "hidden", s.Hidden, "hidden_size")
	fs.IntVar(&s.Intermediate, "intermediate", s.Intermediate, "intermediate_size")
	fs.IntVar(&s.Layers, "layers", s.Layers, "num_hidden_layers")
	fs.IntVar(&s.Heads, "heads", s.Heads, "num_attention_heads")
	fs.IntVar(&s.KVHeads, "kv-heads", s.KVHeads, "num_key_value_heads")
	fs.Parse(args)
	if *out == "" {
		return fmt.Errorf("init: -o is required")
	}
	if err := Generate(*out, s, *seed); err != nil {
		return err
	}
	if *out != "-" {
		fmt.Printf("wrote %s: seed %d, hidden %d, intermediate %d, %d layers, %d heads (%d kv), vocab %d (256 bytes, 2 merges, bos/eos/pad)\n",
			*out, *seed, s.Hidden, s.Intermediate, s.Layers, s.Heads, s.KVHeads, vocabSize)
	}
	return nil
}

func cmdData(args []string) error {
	fs := flag.NewFlagSet("data", flag.ExitOnError)
	seed := fs.Uint64("seed", 1, "seed of the word draw")
	out := fs.String("o", "", "output folder (required)")
	nTrain := fs.Int("train", 2000, "training examples")
	nTest := fs.Int("test", 20, "held-out examples")
	fs.Parse(args)
	if *out == "" {
		return fmt.Errorf("data: -o is required")
	}
	train, test := Split(*seed, *nTrain, *nTest)
	for name, ex := range map[string][]Example{"rot13-train.jsonl": train, "rot13-test.jsonl": test} {
		f, err := os.Create(filepath.Join(*out, name))
		if err != nil {
			return err
		}
		if err := WriteJSONL(f, ex); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

func cmdEval(args []string) error {
	fs := flag.NewFlagSet("eval", flag.ExitOnError)
	model := fs.String("model", "", "model folder or file (required)")
	adapter := fs.String("adapter", "", "PEFT adapter to apply")
	data := fs.String("data", "", "prompt/completion JSONL (required)")
	maxNew := fs.Int("max-new", 8, "most tokens generated per prompt")
	show := fs.Int("show", 3, "examples to print")
	label := fs.String("label", "", "label of the report line")
	fs.Parse(args)
	if *model == "" || *data == "" {
		return fmt.Errorf("eval: -model and -data are required")
	}
	ex, err := ReadExamples(*data)
	if err != nil {
		return err
	}
	g, err := OpenGenerator(*model, *adapter, 0)
	if err != nil {
		return err
	}
	defer g.Close()
	s, err := g.Evaluate(ex, *maxNew)
	if err != nil {
		return err
	}
	for i := 0; i < *show && i < len(ex); i++ {
		fmt.Printf("  %-8q -> %-10q (want %q)\n", ex[i].Prompt, s.Outputs[i], ex[i].Completion)
	}
	fmt.Printf("%s%d/%d correct\n", *label, s.Correct, s.Total)
	return nil
}
