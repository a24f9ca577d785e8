package merge_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/lorakit/lorakit/pkg/merge"
)

// Merge a LoRA adapter into its base, as lora-merge does: W' = W0 +
// (alpha/r)·B·A, computed in float32 and written atomically.
func Example() {
	dir, err := os.MkdirTemp("", "merge-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sum, err := merge.Run(context.Background(), "../../examples/tiny-llama",
		[]merge.AdapterInput{{Path: "../../examples/tiny-lora", Weight: 1}}, filepath.Join(dir, "merged"), merge.Options{})
	if err != nil {
		log.Fatal(err)
	}
	t := sum.Tensors
	fmt.Printf("%d merged, %d copied, %d bytes\n", t.Merged, t.Copied, sum.Bytes)
	// Output: 14 merged, 7 copied, 427264 bytes
}
