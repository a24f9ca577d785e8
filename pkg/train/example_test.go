package train_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/lorakit/lorakit/pkg/train"
)

// Train a LoRA adapter for a few updates on the CPU, as lora-train does,
// watching each update through OnStep.
func Example() {
	dir, err := os.MkdirTemp("", "train-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	data := filepath.Join(dir, "data.jsonl")
	os.WriteFile(data, []byte(`{"input_ids": [1, 5, 9, 13, 17, 21, 25, 29]}
{"input_ids": [2, 4, 6, 8, 10, 12, 14, 16]}
`), 0o644)

	o := train.DefaultOptions()
	o.Base, o.Data, o.Output = "../../examples/tiny-llama", data, filepath.Join(dir, "adapter")
	o.MaxSteps, o.Batch, o.Seq, o.Device = 4, 2, 16, "cpu"
	o.OnStep = func(r train.StepResult, total int) {
		fmt.Printf("step %d of %d: %d tokens\n", r.Step, total, r.Tokens)
	}
	res, err := train.Run(context.Background(), o)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("loss went down:", res.Last.Loss < res.First.Loss)
	// Output:
	// step 1 of 4: 16 tokens
	// step 2 of 4: 16 tokens
	// step 3 of 4: 16 tokens
	// step 4 of 4: 16 tokens
	// loss went down: true
}

// Draw the loss curves of a run's --log file as an SVG image, as
// lora-train plot does.
func ExamplePlot() {
	dir, err := os.MkdirTemp("", "plot-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	logFile := filepath.Join(dir, "log.jsonl")
	os.WriteFile(logFile, []byte(`{"run": {"base": "Llama-3.2-1B", "method": "lora", "rank": 16, "alpha": 32, "steps": 3}}
{"step": 1, "loss": 2.5}
{"step": 2, "loss": 1.75, "eval_loss": 1.9}
{"step": 3, "loss": 1.25}
`), 0o644)

	o := train.DefaultPlotOptions()
	o.Log, o.Output, o.LogY = logFile, filepath.Join(dir, "loss.svg"), true
	l, err := train.Plot(context.Background(), o)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(l.Title(o.Log))
	fmt.Printf("%d updates, last loss %g\n", len(l.Steps), l.Steps[len(l.Steps)-1].Loss)
	// Output:
	// Llama-3.2-1B: LoRA r=16 α=32, 3 steps
	// 3 updates, last loss 1.25
}
