package inspect

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/cli"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/tool"
)

// ShowCmd is `lora-inspect PATH...`.
type ShowCmd struct {
	Paths   []string `arg:"" name:"path" help:"Adapter, model, 4-bit model or GGUF: a folder, a file, or '-' for a safetensors stream on stdin."`
	JSON    bool     `help:"Print one JSON object per input (a JSON array for several inputs)."`
	Tensors bool     `help:"Add a table of every tensor: name, dtype, shape, bytes, parameters."`
	Deltas  bool     `help:"For adapters: per module ||s·B·A||_F, its singular values and effective rank, computed exactly from r×r cores (reads the adapter weights). Most-changed first."`
	Base    string   `help:"With --deltas: the base model, to add ||ΔW||_F/||W0||_F (reads the adapted base weights)." placeholder:"MODEL"`
}

// Run inspects every path and prints the reports.
func (c *ShowCmd) Run(ctx *cli.Context) error {
	if c.Base != "" && !c.Deltas {
		return errclass.Usagef("--base is only used with --deltas")
	}
	stdinUsed := false
	var reports []*Report
	for _, p := range c.Paths {
		if p == "-" {
			if stdinUsed {
				return errclass.Usagef("'-' (stdin) may be given once")
			}
			stdinUsed = true
		}
		r, err := c.inspect(p, os.Stdin)
		if err != nil {
			return err
		}
		if p == "-" {
			// Read the producer's stream to its end so that a pipeline under
			// `set -o pipefail` does not fail on the writer's SIGPIPE.
			io.Copy(io.Discard, os.Stdin)
		}
		reports = append(reports, r)
	}
	if c.JSON {
		enc := json.NewEncoder(ctx.Stdout)
		enc.SetIndent("", "  ")
		if len(reports) == 1 {
			return enc.Encode(reports[0])
		}
		return enc.Encode(reports)
	}
	for i, r := range reports {
		if i > 0 {
			fmt.Fprintln(ctx.Stdout)
		}
		if err := WriteText(ctx.Stdout, r); err != nil {
			return err
		}
	}
	return nil
}

// Inspect opens path (stdin for "-") and builds its report.
func Inspect(path string, stdin io.Reader, o Options) (*Report, error) {
	if isGGUF(path) {
		if o.Deltas {
			return nil, errclass.Usagef("%s: --deltas reads PEFT adapters, not GGUF files", path)
		}
		return GGUF(path, o.Tensors)
	}
	src, err := checkpoint.Open(path, stdin)
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

// Options select what a report contains.
type Options struct {
	// Env gives the stdin read for "-".
	tool.Env
	// Tensors adds the table of every tensor.
	Tensors bool
	// Deltas adds the weight-delta statistics of an adapter's modules.
	Deltas bool
	// Base is the base model for Deltas' relative norms ("" for none).
	Base string
}

func (c *ShowCmd) inspect(path string, stdin io.Reader) (*Report, error) {
	return Inspect(path, stdin, Options{Env: tool.Env{Stdin: stdin}, Tensors: c.Tensors, Deltas: c.Deltas, Base: c.Base})
}

// isGGUF reports whether path is a file starting with the GGUF magic.
func isGGUF(path string) bool {
	if path == "-" {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [4]byte
	n, _ := io.ReadFull(f, magic[:])
	return n == 4 && string(magic[:]) == "GGUF"
}

// PlanCmd is `lora-inspect plan`.
type PlanCmd struct {
	Config         string   `required:"" help:"config.json of the base model, or a built-in shape: llama3-8b, llama3.2-1b." placeholder:"CONFIG"`
	Rank           int      `short:"r" default:"16" help:"LoRA rank r."`
	Alpha          float64  `default:"32" help:"LoRA alpha (scaling = alpha/r, or alpha/sqrt(r) with --rslora)."`
	Targets        []string `default:"q_proj,k_proj,v_proj,o_proj" help:"Target modules (comma-separated), or all-linear."`
	DoRA           bool     `name:"dora" help:"Plan a DoRA adapter (adds a magnitude vector per module)."`
	RSLoRA         bool     `name:"rslora" help:"Use rank-stabilized scaling alpha/sqrt(r)."`
	QLoRA          bool     `name:"qlora" help:"Highlight the QLoRA (NF4 + double quant) estimate; both are always computed."`
	Batch          int      `default:"1" help:"Micro-batch size for the activation estimate."`
	Seq            int      `default:"2048" help:"Sequence length for the activation estimate."`
	GradCheckpoint bool     `name:"grad-checkpoint" help:"Estimate activations with gradient checkpointing."`
	JSON           bool     `help:"Print the plan as one JSON object."`
}

// Help adds the memory formula to `plan --help`.
func (c *PlanCmd) Help() string { return MemoryFormula }

// Run prints the plan.
func (c *PlanCmd) Run(ctx *cli.Context) error {
	cfg, err := checkpoint.LoadConfig(c.Config)
	if err != nil {
		return err
	}
	r, err := Plan(cfg, PlanOptions{Rank: c.Rank, Alpha: c.Alpha, Targets: c.Targets, DoRA: c.DoRA,
		RSLoRA: c.RSLoRA, QLoRA: c.QLoRA, Batch: c.Batch, Seq: c.Seq, GradCheckpoint: c.GradCheckpoint})
	if err != nil {
		return errclass.Usagef("%v", err)
	}
	r.Path = c.Config
	if c.JSON {
		enc := json.NewEncoder(ctx.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return WriteText(ctx.Stdout, r)
}
