// Package checkpoint opens Hugging Face model checkpoints and PEFT adapters
// wherever they live — a folder (config.json, one safetensors file or shards
// with an index, tokenizer files), a single .safetensors file, or a stream
// ('-') — and reads config.json through the architecture registry
// (pkg/arch). Single files and streams are self-describing: the files a
// later stage needs travel in the safetensors __metadata__ (see MetadataKey).
package checkpoint

import (
	"fmt"
	"os"
	"strings"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/errclass"
)

// Sentinel errors.
var (
	// ErrConfig reports a missing or unreadable config.json (its contents
	// are judged by pkg/arch: arch.ErrConfig, arch.ErrUnsupported).
	ErrConfig = errclass.New(errclass.Invalid, "checkpoint: invalid config")
	// ErrUnsupported reports a layout lorakit does not read (GGUF given as
	// safetensors, a pickle).
	ErrUnsupported = errclass.New(errclass.Invalid, "checkpoint: unsupported")
	// ErrNotFound reports a path holding no checkpoint or adapter.
	ErrNotFound = errclass.New(errclass.Invalid, "checkpoint: no checkpoint found")
)

// LoadConfig reads a config.json file, or a built-in shape by name
// (arch.Shapes), and parses it with the registry.
func LoadConfig(nameOrPath string) (*arch.Config, error) {
	b, err := arch.ShapeJSON(nameOrPath)
	if err != nil {
		if _, serr := os.Stat(nameOrPath); serr != nil {
			return nil, fmt.Errorf("%s: not a file nor a built-in shape (%s)", nameOrPath, strings.Join(arch.Shapes(), ", "))
		}
		if b, err = readBounded(nameOrPath); err != nil {
			return nil, err
		}
	}
	c, err := arch.ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", nameOrPath, err)
	}
	return c, nil
}
