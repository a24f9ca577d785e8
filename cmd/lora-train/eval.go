package main

import (
	"fmt"

	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/pkg/train"
)

// evalCmd is `lora-train eval`.
type evalCmd struct {
	Base    string `required:"" help:"Base model: HF folder, .safetensors file, or '-' (stdin)." placeholder:"MODEL"`
	Adapter string `help:"PEFT LoRA, DoRA, IA3, prompt- or prefix-tuning adapter to apply (folder, file, or '-')." placeholder:"ADAPTER"`
	Data    string `required:"" help:"Data (JSONL), in any training form." placeholder:"FILE"`
	Seq     int    `default:"${seq}" help:"Truncate examples to this many tokens."`
	JSON    bool   `help:"Print one JSON object."`
	chatFlags
	deviceFlags
}

// Run evaluates and prints the losses.
func (c *evalCmd) Run(ctx *cli.Context) error {
	kw, err := c.kwargs()
	if err != nil {
		return err
	}
	res, err := train.Eval(ctx, train.EvalOptions{Env: ctx.Env(), Base: c.Base, Adapter: c.Adapter, Data: c.Data,
		Seq: c.Seq, ChatTemplateKwargs: kw, Device: c.Device, Precision: c.Precision})
	if err != nil {
		return err
	}
	if c.JSON {
		return cli.PrintJSON(ctx.Stdout, res)
	}
	fmt.Fprintf(ctx.Stdout, "loss %.6f  perplexity %.4g  over %d scored tokens in %d examples\n", res.Loss, res.Perplexity,
		res.Targets, len(res.Examples))
	for _, e := range res.Examples {
		fmt.Fprintf(ctx.Stdout, "line %d: loss %.6f (%d tokens)\n", e.Line, e.Loss, e.Targets)
	}
	return nil
}
