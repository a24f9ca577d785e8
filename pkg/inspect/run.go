package inspect

import (
	"context"
	"io"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/gguf"
	"github.com/lorakit/lorakit/pkg/tool"
)

// Options select what a report contains.
type Options struct {
	// Env gives the stdin read for "-" and the worker count (Threads) of
	// the delta statistics.
	tool.Env
	// Tensors adds the table of every tensor.
	Tensors bool
	// Deltas adds the weight-delta statistics of an adapter's modules.
	Deltas bool
	// Base is the base model for Deltas' relative norms ("" for none).
	Base string
}

// Run is lora-inspect as a function: it reports every path in order (an
// adapter, a model, a 4-bit model or a GGUF file; "-" is a stream on
// Env.Stdin and may be given once).
func Run(ctx context.Context, paths []string, o Options) ([]*Report, error) {
	if o.Base != "" && !o.Deltas {
		return nil, errclass.Usagef("--base is only used with --deltas")
	}
	if err := tool.StdinOnce(paths...); err != nil {
		return nil, err
	}
	var reports []*Report
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r, err := Inspect(p, o)
		if err != nil {
			return nil, err
		}
		if p == "-" {
			// Read the producer's stream to its end so that a pipeline under
			// `set -o pipefail` does not fail on the writer's SIGPIPE.
			io.Copy(io.Discard, o.In())
		}
		reports = append(reports, r)
	}
	return reports, nil
}

// Inspect opens path ("-": Env.Stdin) and builds its report.
func Inspect(path string, o Options) (*Report, error) {
	if path != "-" && gguf.IsFile(path) {
		if o.Deltas {
			return nil, errclass.Usagef("%s: --deltas reads PEFT adapters, not GGUF files", path)
		}
		return GGUF(path, o.Tensors)
	}
	src, err := checkpoint.Open(path, o.In())
	if err != nil {
		return nil, err
	}
	defer src.Close()
	if src.IsAdapter() {
		return Adapter(src, o)
	}
	if o.Deltas {
		return nil, errclass.Usagef("%s: --deltas needs an adapter; this is a model", path)
	}
	return Model(src, o.Tensors)
}

// PlanFile is `lora-inspect plan`: the plan of a LoRA on the model of a
// config.json file or a built-in shape (arch.Shapes).
func PlanFile(config string, o PlanOptions) (*Report, error) {
	cfg, err := checkpoint.LoadConfig(config)
	if err != nil {
		return nil, err
	}
	r, err := Plan(cfg, o)
	if err != nil {
		return nil, err
	}
	r.Path = config
	return r, nil
}
