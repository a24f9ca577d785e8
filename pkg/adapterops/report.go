package adapterops

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
)

// WriteText prints the combination for humans.
func (r *CombineReport) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "combined %d adapter(s) with %s", len(r.Adapters), r.Method)
	if r.Density != 0 {
		fmt.Fprintf(w, ", density %g", r.Density)
	}
	if r.Sign != "" {
		fmt.Fprintf(w, ", majority sign %s", r.Sign)
	}
	if r.Seed != nil {
		fmt.Fprintf(w, ", seed %d", *r.Seed)
	}
	if r.SVDClamp != 0 {
		fmt.Fprintf(w, ", svd clamp %g", r.SVDClamp)
	}
	fmt.Fprintf(w, " -> %s (r = lora_alpha = %d)\n", r.Output, r.Rank)
	for _, a := range r.Adapters {
		rs := ""
		if a.RSLoRA {
			rs = ", rsLoRA"
		}
		fmt.Fprintf(w, "  %s: weight %s, %d modules, r %d, alpha %s%s\n", a.Path,
			strconv.FormatFloat(a.Weight, 'g', -1, 64), a.Modules, a.Rank, strconv.FormatFloat(a.Alpha, 'g', -1, 64), rs)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  module\trank\tadapters\tkept\t")
	for _, m := range r.Modules {
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\t%s\n", m.Module, m.Rank, m.Adapters, optional(m.Kept, "%.4f"), m.Note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range r.Carried {
		fmt.Fprintf(w, "  carried unchanged: %s (from %s)\n", c.Tensor, c.From)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	return nil
}

// WriteText prints the resize for humans: per module the rank chosen and
// the fraction of ‖ΔW‖_F kept.
func (r *ResizeReport) WriteText(w io.Writer) error {
	rule := string(r.Rule.Method)
	if r.Rule.Method != RankFixed {
		rule += " " + strconv.FormatFloat(r.Rule.Param, 'g', -1, 64)
		if r.Rule.Rank > 0 {
			rule += fmt.Sprintf(" (at most rank %d)", r.Rule.Rank)
		}
	} else {
		rule += " " + strconv.Itoa(r.Rule.Rank)
	}
	fmt.Fprintf(w, "resized %s by %s -> %s (r = lora_alpha = %d)\n", r.Input, rule, r.Output, r.Rank)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  module\trank\tnew rank\t‖ΔW‖_F\tkept\t")
	for _, m := range r.Modules {
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%.4g\t%.4f\t\n", m.Module, m.Rank, m.NewRank, m.Norm, m.Kept)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range r.Carried {
		fmt.Fprintf(w, "  carried unchanged: %s\n", c)
	}
	fmt.Fprintf(w, "parameters %d -> %d (%.1f%%); ‖ΔW‖_F kept %.4f overall, %.4f at least (%s)\n",
		r.ParamsBefore, r.ParamsAfter, 100*float64(r.ParamsAfter)/float64(max(r.ParamsBefore, 1)), r.Kept, r.MinKept, r.MinModule)
	return nil
}
