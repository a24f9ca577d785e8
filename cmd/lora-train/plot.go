package main

import (
	"fmt"
	"io"
	"math"

	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/pkg/train"
)

// plotCmd is `lora-train plot LOG -o loss.png`. Its defaults are
// train.DefaultPlotOptions (see vars).
type plotCmd struct {
	Log    string `arg:"" help:"The --log file of a lora-train run (JSONL), or '-' (stdin)." placeholder:"LOG.jsonl"`
	Output string `short:"o" help:"The image: FILE.png, FILE.svg, or '-' (stdout: PNG, or SVG with --format svg). Without it, only the summary line is printed." placeholder:"FILE"`
	Format string `enum:",png,svg" default:"" placeholder:"png|svg" help:"Image format (png, svg); default: from the output's extension."`
	Width  int    `default:"${plot_width}" help:"Image width in pixels."`
	Height int    `default:"${plot_height}" help:"Image height in pixels."`
	Title  string `help:"Title (default: the base model, method, rank, alpha and steps, from the log's first line)."`
	Smooth int    `default:"0" placeholder:"N" help:"Also draw the training loss averaged over N updates (centred), over the raw curve."`
	LogY   bool   `name:"log-y" help:"Logarithmic loss axis (for losses that span decades)."`
}

// Run reads the log, writes the plot and prints the summary line: on
// stdout, or on stderr when the image goes to stdout.
func (c *plotCmd) Run(ctx *cli.Context) error {
	o := train.DefaultPlotOptions()
	o.Env = ctx.Env()
	o.Log, o.Output, o.Format, o.Width, o.Height = c.Log, c.Output, c.Format, c.Width, c.Height
	o.Title, o.Smooth, o.LogY = c.Title, c.Smooth, c.LogY
	l, err := train.Plot(ctx, o)
	if err != nil {
		return err
	}
	if ctx.Quiet() {
		return nil
	}
	w := ctx.ReportTo(c.Output)
	writeSummary(w, l, c.Log, c.LogY)
	if c.Output != "" && c.Output != "-" {
		fmt.Fprintf(w, "plot written to %s\n", c.Output)
	}
	return nil
}

// writeSummary prints the run's title, then in one line the first and
// last training loss with a sparkline between them (of the logarithm with
// logY), the lowest, and the last evaluation loss.
func writeSummary(w io.Writer, l *train.Log, name string, logY bool) {
	spark := make([]float64, len(l.Steps))
	best := 0
	var eval *train.StepResult
	for i, s := range l.Steps {
		spark[i] = s.Loss
		if logY {
			spark[i] = math.Log(s.Loss)
		}
		if s.Loss < l.Steps[best].Loss {
			best = i
		}
		if s.EvalLoss != nil {
			eval = &l.Steps[i]
		}
	}
	first, last := l.Steps[0], l.Steps[len(l.Steps)-1]
	fmt.Fprintf(w, "%s\n  loss %.4f %s %.4f (lowest %.4f at step %d)", l.Title(name), first.Loss, sparkline(spark, 48), last.Loss,
		l.Steps[best].Loss, l.Steps[best].Step)
	if eval != nil {
		fmt.Fprintf(w, ", eval loss %.4f at step %d", *eval.EvalLoss, eval.Step)
	}
	fmt.Fprintln(w)
}

// sparkline renders v in at most width block characters (each the mean
// of its share of v), lowest ▁, highest █.
func sparkline(v []float64, width int) string {
	const bars = "▁▂▃▄▅▆▇█"
	levels := []rune(bars)
	if len(v) > width {
		means := make([]float64, width)
		for i := range means {
			lo, hi := i*len(v)/width, (i+1)*len(v)/width
			for _, x := range v[lo:hi] {
				means[i] += x / float64(hi-lo)
			}
		}
		v = means
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, x := range v {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	out := make([]rune, len(v))
	for i, x := range v {
		k := 0
		if hi > lo {
			k = int(math.Round((x - lo) / (hi - lo) * float64(len(levels)-1)))
		}
		out[i] = levels[k]
	}
	return string(out)
}
