package inspect_test

import (
	"context"
	"fmt"
	"log"

	"github.com/lorakit/lorakit/pkg/inspect"
)

// Inspect a model and an adapter, as `lora-inspect --json` does, and read
// the reports' fields.
func Example() {
	reports, err := inspect.Run(context.Background(), []string{"../../examples/tiny-llama", "../../examples/tiny-lora"},
		inspect.Options{})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range reports {
		fmt.Printf("%s: %s, %d parameters (%d trainable)\n", r.Path, r.Kind, r.TotalParams, r.TrainableParams)
	}
	// Output:
	// ../../examples/tiny-llama: model, 106816 parameters (0 trainable)
	// ../../examples/tiny-lora: adapter, 16384 parameters (16384 trainable)
}

// Plan a LoRA on a built-in shape, as `lora-inspect plan` does.
func ExamplePlanFile() {
	o := inspect.DefaultPlanOptions()
	o.Rank, o.Alpha = 16, 32
	r, err := inspect.PlanFile("llama3-8b", o)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d trainable of %d (%.4f%%)\n", r.TrainableParams, r.TotalParams, r.Percent)
	// Output: 13631488 trainable of 8030261248 (0.1698%)
}
