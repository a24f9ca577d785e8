package main

import (
	"io"
	"strings"

	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/pkg/adapterops"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/errclass"
)

// combineCmd is `lora-merge combine`.
type combineCmd struct {
	Adapter      []string  `required:"" sep:"none" help:"Adapter to combine, as PATH or PATH:WEIGHT (a folder, a .safetensors or .bin file, or '-' once). Repeat for each." placeholder:"A[:W]"`
	Weight       []float64 `help:"Weights of the adapters, comma-separated, instead of :WEIGHT suffixes (default 1 each)." placeholder:"W1,W2"`
	Method       string    `required:"" help:"Combination: linear, cat, svd, ties, ties_svd, dare_linear, dare_ties, dare_linear_svd, dare_ties_svd, magnitude_prune, magnitude_prune_svd (PEFT's combination_type)." placeholder:"METHOD"`
	Density      float64   `help:"Fraction of entries kept by ties, dare_* and magnitude_prune* (required by them)." placeholder:"D"`
	MajoritySign string    `name:"majority-sign" enum:"total,frequency," default:"" help:"TIES sign election: total (sign of the sum, the default) or frequency (sign of the majority)."`
	SVDRank      int       `name:"svd-rank" help:"Rank of the svd methods' output (default: the largest input rank)." placeholder:"R"`
	SVDClamp     float64   `name:"svd-clamp" help:"Clamp the svd methods' factors to this quantile of their values (PEFT's svd_clamp)." placeholder:"Q"`
	Seed         uint64    `help:"Seed of DARE's random masks: the same seed gives the same bytes on any machine and thread count."`
	DType        string    `name:"dtype" default:"f32" enum:"f32,bf16,f16" help:"Dtype of the new adapter's tensors."`
	Output       string    `short:"o" required:"" help:"Output: a PEFT folder, a .safetensors file (.gz/.zst, config in its metadata) or '-' for stdout." placeholder:"OUT"`
	JSON         bool      `help:"Print the report as one JSON object on stdout (needs -o FILE or DIR)."`
}

// Help adds the methods' definitions to `combine --help`.
func (c *combineCmd) Help() string {
	return `Methods (w weight, s = alpha/r or alpha/sqrt(r) of each adapter):
  cat       A' = rows of w·s·A, B' = columns of B: B'A' = sum w·s·B·A exactly; ranks add up
  linear    A' = sum sqrt|w·s|·sign·A, B' = sum sqrt|w·s|·B (PEFT's factorwise formula: cross
            terms B_i·A_j, exact only for one adapter); ties, dare_linear, dare_ties and
            magnitude_prune prune and elect on A and B the same way. Equal ranks needed.
  svd       sum w·ΔW truncated to --svd-rank by SVD (exact from the r×r cores)
  *_svd     ties, dare_* or magnitude pruning on each ΔW (one dense module at a time),
            then the truncated SVD
The new adapter has r = lora_alpha = the new rank, use_rslora false (scaling 1).
DARE draws its masks from --seed (not torch.bernoulli's stream); magnitude pruning
keeps exactly int(density·numel) entries, the lowest indices winning ties.`
}

// Run combines and prints the report.
func (c *combineCmd) Run(ctx *cli.Context) error {
	if err := jsonToFile(c.JSON, c.Output); err != nil {
		return err
	}
	if len(c.Weight) != 0 && len(c.Weight) != len(c.Adapter) {
		return errclass.Usagef("--weight gives %d weights for %d adapters", len(c.Weight), len(c.Adapter))
	}
	method, err := adapterops.ParseMethod(c.Method)
	if err != nil {
		return err
	}
	o := adapterops.CombineOptions{Env: ctx.Env(), Method: method, Density: c.Density,
		MajoritySign: adapterops.MajoritySign(c.MajoritySign), SVDRank: c.SVDRank, SVDClamp: c.SVDClamp,
		Seed: c.Seed, Output: c.Output, DType: outputDType(c.DType)}
	for i, s := range c.Adapter {
		in, err := adapterops.ParseInput(s)
		if err != nil {
			return err
		}
		if len(c.Weight) > 0 {
			if in.Path != s {
				return errclass.Usagef("--adapter %s gives a weight and --weight gives them too; use one or the other", s)
			}
			in.Weight = c.Weight[i]
		}
		o.Adapters = append(o.Adapters, in)
	}
	bar := ctx.NewProgress("combining")
	o.Progress = bar.Report
	rep, err := adapterops.Combine(ctx, o)
	bar.Done()
	if err != nil {
		return err
	}
	return report(ctx, c.JSON, c.Output, rep, rep.WriteText)
}

// resizeCmd is `lora-merge resize`.
type resizeCmd struct {
	Adapter      string   `required:"" help:"Adapter to resize: a folder, a .safetensors or .bin file, or '-'." placeholder:"A"`
	Rank         int      `help:"Keep this rank (a module of smaller rank keeps its own); with a rule below, the largest rank it may choose." placeholder:"R"`
	Energy       *float64 `help:"Keep the smallest rank whose squared singular values reach this fraction of the module's (its ‖ΔW‖_F² share)." placeholder:"F"`
	Threshold    *float64 `help:"Keep the singular values at least this fraction of the module's largest." placeholder:"T"`
	SVRatio      *float64 `name:"sv-ratio" help:"kohya-ss resize_lora sv_ratio: keep σ > σ₁/X." placeholder:"X"`
	SVFro        *float64 `name:"sv-fro" help:"kohya-ss resize_lora sv_fro: keep the smallest rank with this fraction of ‖ΔW‖_F." placeholder:"X"`
	SVCumulative *float64 `name:"sv-cumulative" help:"kohya-ss resize_lora sv_cumulative: keep the smallest rank with Σσ reaching this fraction." placeholder:"X"`
	DType        string   `name:"dtype" default:"f32" enum:"f32,bf16,f16" help:"Dtype of the new adapter's tensors."`
	Output       string   `short:"o" required:"" help:"Output: a PEFT folder, a .safetensors file (.gz/.zst) or '-' for stdout." placeholder:"OUT"`
	JSON         bool     `help:"Print the report as one JSON object on stdout (needs -o FILE or DIR)."`
}

// Help adds what the report says to `resize --help`.
func (c *resizeCmd) Help() string {
	return `Each module's ΔW = s·B·A is factored exactly from its r×r cores and truncated to the
rank the rule chooses: by Eckart–Young the best approximation of that rank. The report
gives per module the rank chosen and the fraction of ‖ΔW‖_F kept. The scaling is folded
into B: r = lora_alpha = the largest new rank, use_rslora false, rank_pattern and
alpha_pattern for the others. LoRA and rsLoRA adapters; DoRA adapters are refused.`
}

// Run resizes and prints the report.
func (c *resizeCmd) Run(ctx *cli.Context) error {
	if err := jsonToFile(c.JSON, c.Output); err != nil {
		return err
	}
	rule := adapterops.RankRule{Method: adapterops.RankFixed, Rank: c.Rank}
	var set []string
	for _, r := range []struct {
		flag   string
		method adapterops.RankMethod
		value  *float64
	}{
		{"--energy", adapterops.RankEnergy, c.Energy}, {"--threshold", adapterops.RankThreshold, c.Threshold},
		{"--sv-ratio", adapterops.RankSVRatio, c.SVRatio}, {"--sv-fro", adapterops.RankSVFro, c.SVFro},
		{"--sv-cumulative", adapterops.RankSVCumulative, c.SVCumulative},
	} {
		if r.value != nil {
			set = append(set, r.flag)
			rule.Method, rule.Param = r.method, *r.value
		}
	}
	switch {
	case len(set) > 1:
		return errclass.Usagef("%s: give one rank rule", strings.Join(set, " and "))
	case len(set) == 0 && c.Rank == 0:
		return errclass.Usagef("give --rank R, --energy F, --threshold T, --sv-ratio X, --sv-fro X or --sv-cumulative X")
	}
	o := adapterops.ResizeOptions{Env: ctx.Env(), Adapter: c.Adapter, Rule: rule, Output: c.Output, DType: outputDType(c.DType)}
	bar := ctx.NewProgress("resizing")
	o.Progress = bar.Report
	rep, err := adapterops.Resize(ctx, o)
	bar.Done()
	if err != nil {
		return err
	}
	return report(ctx, c.JSON, c.Output, rep, rep.WriteText)
}

// outputDType maps a --dtype spelling (checked by kong's enum).
func outputDType(s string) dtype.DType {
	d, _ := dtype.ParseName(s)
	return d
}

// report prints a command's report: JSON on stdout, or text on stdout (on
// stderr when stdout carries the data), nothing with -q.
func report(ctx *cli.Context, json bool, out string, v any, text func(w io.Writer) error) error {
	switch {
	case json:
		return cli.PrintJSON(ctx.Stdout, v)
	case ctx.Quiet():
		return nil
	}
	return text(ctx.ReportTo(out))
}
