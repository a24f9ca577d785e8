package export_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/lorakit/lorakit/pkg/export"
	"github.com/lorakit/lorakit/pkg/gguf"
)

// Export a model and a LoRA adapter to GGUF for llama.cpp, as lora-gguf
// does.
func Example() {
	dir, err := os.MkdirTemp("", "export-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	r, err := export.Run(context.Background(), "../../examples/tiny-llama", filepath.Join(dir, "tiny.gguf"),
		export.Options{Type: gguf.TypeQ8_0})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d tensors %v\n", r.Kind, r.Tensors, r.Types)
	r, err = export.Run(context.Background(), "../../examples/tiny-lora", filepath.Join(dir, "lora.gguf"),
		export.Options{Base: "../../examples/tiny-llama", Auto: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %d tensors %v\n", r.Kind, r.Tensors, r.Types)
	// Output:
	// model: 21 tensors map[F32:5 Q8_0:16]
	// adapter: 28 tensors map[F32:28]
}
