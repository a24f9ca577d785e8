package main

import (
	"fmt"

	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/train"
)

// benchCmd is `lora-train bench`. Its defaults are train.DefaultBenchOptions.
type benchCmd struct {
	Shape          string `required:"" help:"Model shape: a built-in shape (${shapes}) or a config.json path." placeholder:"SHAPE"`
	Batch          int    `default:"${bench_batch}" help:"Rows per step."`
	Seq            int    `default:"${bench_seq}" help:"Tokens per row."`
	Steps          int    `default:"${bench_steps}" help:"Timed steps."`
	Warmup         int    `default:"${bench_warmup}" help:"Untimed steps before them (0: time one cold step, e.g. for very long sequences)."`
	DType          string `name:"dtype" default:"${bench_dtype}" enum:"bf16,f32" help:"Storage of the random frozen weights (bf16 precision needs bf16)."`
	QLoRA          bool   `name:"qlora" help:"Hold the projections as NF4 with double quantization, dequantized before each use."`
	GradCheckpoint bool   `name:"grad-checkpoint" help:"Recompute activations in the backward pass."`
	Force          bool   `help:"Run shapes above 3B parameters on the CPU anyway."`
	JSON           bool   `help:"Print one JSON object."`
	deviceFlags
}

// Run benchmarks and prints the timings.
func (c *benchCmd) Run(ctx *cli.Context) error {
	prog := newStepProgress(ctx)
	res, err := train.Bench(ctx, train.BenchOptions{Env: ctx.Env(), Shape: c.Shape, Batch: c.Batch, Seq: c.Seq,
		Steps: c.Steps, Warmup: c.Warmup, Precision: c.Precision, DType: c.DType, QLoRA: c.QLoRA,
		GradCheckpoint: c.GradCheckpoint, Force: c.Force, Device: c.Device, OnStep: prog.update,
		Ready: func(r *train.BenchResult) {
			if !ctx.Quiet() { // scripts/gpu-check.sh records this line
				fmt.Fprintf(ctx.Stderr, "%s: bench: %s ready in %.1f s, %s precision, %s of device memory in use\n", ctx.Name,
					c.Shape, r.LoadSeconds, r.Precision, num.Bytes(max(r.PeakMemory, r.WorkspaceBytes), 1))
			}
		}})
	prog.done()
	if err != nil {
		return err
	}
	if c.JSON {
		return cli.PrintJSON(ctx.Stdout, res)
	}
	res.WriteText(ctx.Stdout)
	return nil
}
