package main

import (
	"fmt"

	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/train"
)

// benchCmd is `lora-train bench`. Its defaults are train.DefaultBenchOptions.
type benchCmd struct {
	Shape          string `required:"" help:"Model shape: llama3-8b, llama3.2-1b, or a config.json path." placeholder:"SHAPE"`
	Batch          int    `default:"${bench_batch}" help:"Rows per step."`
	Seq            int    `default:"${bench_seq}" help:"Tokens per row."`
	Steps          int    `default:"${bench_steps}" help:"Timed steps (after one untimed warm-up step)."`
	DType          string `name:"dtype" default:"${bench_dtype}" enum:"bf16,f32" help:"Storage of the random base weights: bf16 or f32 (arithmetic is f32)."`
	QLoRA          bool   `name:"qlora" help:"NF4-quantize the projections (on the CPU they are dequantized at load: the step costs the same)."`
	GradCheckpoint bool   `name:"grad-checkpoint" help:"Recompute activations in the backward pass."`
	Force          bool   `help:"Run shapes above 3B parameters on the CPU anyway."`
	JSON           bool   `help:"Print one JSON object."`
	deviceFlags
}

// Run benchmarks and prints the timings.
func (c *benchCmd) Run(ctx *cli.Context) error {
	prog := newStepProgress(ctx)
	res, err := train.Bench(ctx, train.BenchOptions{Env: ctx.Env(), Shape: c.Shape, Batch: c.Batch, Seq: c.Seq, Steps: c.Steps,
		DType: c.DType, QLoRA: c.QLoRA, GradCheckpoint: c.GradCheckpoint, Force: c.Force, Device: c.Device, OnStep: prog.update})
	prog.done()
	if err != nil {
		return err
	}
	if c.JSON {
		return cli.PrintJSON(ctx.Stdout, res)
	}
	w := ctx.Stdout
	fmt.Fprintf(w, "shape          %s (%s parameters; %s trainable)\n", c.Shape, num.Thousands(res.Params), num.Thousands(res.Trainable))
	fmt.Fprintf(w, "recipe         %s\n", res.Recipe)
	fmt.Fprintf(w, "device         %s, %s weights%s\n", res.Device, c.DType, map[bool]string{true: ", NF4 (dequantized)"}[c.QLoRA])
	fmt.Fprintf(w, "batch x seq    %d x %d\n", c.Batch, c.Seq)
	fmt.Fprintf(w, "step           %.3f s mean, %.3f s min over %d steps (load %.1f s)\n", res.StepSeconds, res.StepSecondsMin, c.Steps, res.LoadSeconds)
	fmt.Fprintf(w, "tokens/s       %.1f (%.1f per CPU-second)\n", res.TokensPerS, res.TokensPerCPUS)
	fmt.Fprintf(w, "model FLOP/s   %.3g GFLOP/s (%.3g GFLOP per step)\n", res.FLOPPerS/1e9, res.FLOPPerStep/1e9)
	return nil
}
