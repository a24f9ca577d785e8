package train

import (
	"bytes"
	"context"
	"fmt"
	"image/color"
	"io"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/output"
	"github.com/lorakit/lorakit/pkg/tool"
)

// PlotOptions configure lora-train plot: the loss curves of a --log file
// drawn as a PNG or SVG image. Start from DefaultPlotOptions.
type PlotOptions struct {
	// Env gives the stdin of Log "-", the stdout of Output "-" and the
	// cleanup registry of the output.
	tool.Env
	// Log is the --log file of a run; "-" reads stdin.
	Log string
	// Output is the image: a .png or .svg file, or "-" (stdout); "" reads
	// the log without drawing it.
	Output string
	// Format is "png" or "svg"; "" takes it from Output's extension (PNG
	// for "-").
	Format string
	// Width and Height are the image's size in pixels (CSS pixels for SVG).
	Width, Height int
	// Title replaces the title made from the run's description.
	Title string
	// Smooth, when above 1, draws the moving average of the training loss
	// over that many updates (centred) over the raw curve.
	Smooth int
	// LogY draws the loss on a logarithmic scale.
	LogY bool
}

// DefaultPlotOptions returns lora-train plot's defaults: 960×540 pixels.
func DefaultPlotOptions() PlotOptions { return PlotOptions{Width: 960, Height: 540} }

// The image size limits.
const (
	minPlotSide = 200
	maxPlotSide = 8192
)

// Plot is lora-train plot as a function: it reads the log and, when
// o.Output is set, writes its plot there atomically. It returns the log.
func Plot(ctx context.Context, o PlotOptions) (*Log, error) {
	format, err := o.format()
	if err != nil {
		return nil, err
	}
	l, err := ReadLogFile(o.Log, o.In())
	if err != nil {
		return nil, err
	}
	if o.LogY {
		if err := l.checkLogScale(); err != nil {
			return nil, fmt.Errorf("%s: %w", o.Log, err)
		}
	}
	if o.Output == "" {
		return l, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, errclass.Wrap(errclass.Interrupted, err)
	}
	name := o.Log
	if name == "-" {
		name = "<stdin>"
	}
	out, err := output.Open(o.Output, o.Env.Output())
	if err != nil {
		return nil, err
	}
	if err := l.WritePlot(out, format, o, name); err != nil {
		out.Abort()
		return nil, fmt.Errorf("%s: %w", o.Output, err)
	}
	return l, out.Commit()
}

// format checks the options and returns the image format.
func (o *PlotOptions) format() (string, error) {
	if o.Log == "" {
		return "", errclass.Usagef("plot: no log file")
	}
	for _, side := range []int{o.Width, o.Height} {
		if side < minPlotSide || side > maxPlotSide {
			return "", errclass.Usagef("plot: size %dx%d: each side must be %d to %d pixels", o.Width, o.Height, minPlotSide, maxPlotSide)
		}
	}
	if o.Smooth < 0 {
		return "", errclass.Usagef("plot: --smooth %d must not be negative", o.Smooth)
	}
	f := strings.ToLower(o.Format)
	if f == "" {
		switch ext := strings.ToLower(filepath.Ext(o.Output)); {
		case o.Output == "" || o.Output == "-":
			f = "png"
		case ext == ".png" || ext == ".svg":
			f = ext[1:]
		default:
			return "", errclass.Usagef("plot: %s: the image must end in .png or .svg (or give the format)", o.Output)
		}
	}
	if f != "png" && f != "svg" {
		return "", errclass.Usagef("plot: format %q (png, svg)", o.Format)
	}
	return f, nil
}

// Plot colours: the training loss in blue (lighter when smoothed), the
// evaluation loss in orange, grid lines in light grey.
var (
	colorTrain    = color.RGBA{31, 119, 180, 255}
	colorTrainRaw = color.RGBA{160, 196, 226, 255}
	colorEval     = color.RGBA{230, 111, 0, 255}
	colorGrid     = color.RGBA{215, 215, 215, 255}
)

// pixelsPerInch is the resolution the pixel sizes are drawn at: the CSS
// pixel, so that a PNG and an SVG of one size look alike.
const pixelsPerInch = 96

// WritePlot draws the log's loss curves as a PNG or SVG image of o.Width ×
// o.Height pixels on w: the training loss per update (and its moving
// average with o.Smooth), the evaluation loss where the log has it, step
// and loss axes with tick values, and a title naming the run (o.Title
// replaces it; name, the log's name, stands in for a run header).
func (l *Log) WritePlot(w io.Writer, format string, o PlotOptions, name string) error {
	p, err := l.plot(o, name)
	if err != nil {
		return err
	}
	size := func(px int) vg.Length { return vg.Length(px) * vg.Inch / pixelsPerInch }
	var c vg.CanvasWriterTo
	switch format {
	case "png":
		c = vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(size(o.Width), size(o.Height)), vgimg.UseDPI(pixelsPerInch))}
	case "svg":
		c = vgsvg.NewWith(vgsvg.UseWH(size(o.Width), size(o.Height)))
	default:
		return errclass.Usagef("plot: format %q (png, svg)", format)
	}
	dc := draw.New(c)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	margin := vg.Points(6)
	p.Draw(draw.Crop(dc, margin, -2*margin, margin, -margin))
	if format == "png" {
		_, err = c.WriteTo(w)
		return err
	}
	// The SVG names the font the text was measured with; Arial and
	// Helvetica have the same metrics, so they may stand in for it.
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return err
	}
	_, err = w.Write(bytes.ReplaceAll(b.Bytes(), []byte("font-family:Liberation Sans;"),
		[]byte("font-family:'Liberation Sans',Arial,Helvetica,sans-serif;")))
	return err
}

// plot builds the plot of the log.
func (l *Log) plot(o PlotOptions, name string) (*plot.Plot, error) {
	if o.LogY {
		if err := l.checkLogScale(); err != nil {
			return nil, err
		}
	}
	p := plot.New()
	sans := func(size vg.Length) font.Font {
		return font.From(font.Font{Typeface: "Liberation", Variant: "Sans"}, size)
	}
	p.Title.Text = o.Title
	if p.Title.Text == "" {
		p.Title.Text = l.Title(name)
	}
	p.Title.TextStyle.Font = sans(14)
	p.Title.Padding = vg.Points(8)
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = sans(12)
		a.Tick.Label.Font = sans(10)
		a.Label.Padding = vg.Points(4)
	}
	p.X.Label.Text = "step"
	p.X.Tick.Marker = linearTicks{integer: true}
	p.Y.Label.Text = "loss"
	p.Y.Tick.Marker = linearTicks{}
	if o.LogY {
		p.Y.Label.Text = "loss (log scale)"
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = logTicks{}
	}
	p.Legend.TextStyle.Font = sans(11)
	p.Legend.Top = true
	p.Legend.XOffs = -vg.Points(6)
	p.Legend.YOffs = -vg.Points(4)

	grid := plotter.NewGrid()
	grid.Vertical.Color, grid.Horizontal.Color = colorGrid, colorGrid
	grid.Vertical.Width, grid.Horizontal.Width = vg.Points(0.5), vg.Points(0.5)
	p.Add(grid)

	train := make(plotter.XYs, len(l.Steps))
	for i, s := range l.Steps {
		train[i] = plotter.XY{X: float64(s.Step), Y: s.Loss}
	}
	raw, err := plotter.NewLine(train)
	if err != nil {
		return nil, err
	}
	raw.Color, raw.Width = colorTrain, vg.Points(1.2)
	p.Add(raw)
	if o.Smooth > 1 && len(train) > 1 {
		raw.Color, raw.Width = colorTrainRaw, vg.Points(0.8)
		sm, err := plotter.NewLine(movingAverage(train, o.Smooth))
		if err != nil {
			return nil, err
		}
		sm.Color, sm.Width = colorTrain, vg.Points(1.6)
		p.Add(sm)
		p.Legend.Add("training loss", raw)
		p.Legend.Add(fmt.Sprintf("training loss, mean of %d updates", o.Smooth), sm)
	} else {
		p.Legend.Add("training loss", raw)
	}

	var eval plotter.XYs
	for _, s := range l.Steps {
		if s.EvalLoss != nil {
			eval = append(eval, plotter.XY{X: float64(s.Step), Y: *s.EvalLoss})
		}
	}
	if len(eval) > 0 {
		line, points, err := plotter.NewLinePoints(eval)
		if err != nil {
			return nil, err
		}
		line.Color, line.Width = colorEval, vg.Points(1.4)
		points.Color, points.Shape, points.Radius = colorEval, draw.CircleGlyph{}, vg.Points(2.2)
		p.Add(line, points)
		p.Legend.Add("evaluation loss", line, points)
	}
	if l.Steps[0].Step == 1 { // the whole run: the axis starts at 0
		p.X.Min = 0
	}
	if !o.LogY && p.Y.Min > 0 && p.Y.Min < p.Y.Max/4 { // a loss near 0: the axis shows 0
		p.Y.Min = 0
	}
	if p.X.Min == p.X.Max { // one update: a visible range around it
		p.X.Min, p.X.Max = p.X.Min-1, p.X.Max+1
	}
	if p.Y.Min == p.Y.Max {
		d := math.Max(math.Abs(p.Y.Min)*0.1, 0.1)
		if o.LogY {
			p.Y.Min, p.Y.Max = p.Y.Min/2, p.Y.Max*2
		} else {
			p.Y.Min, p.Y.Max = p.Y.Min-d, p.Y.Max+d
		}
	}
	return p, nil
}

// checkLogScale refuses a log with a loss that a logarithmic scale cannot
// show.
func (l *Log) checkLogScale() error {
	for _, s := range l.Steps {
		if !(s.Loss > 0) || (s.EvalLoss != nil && !(*s.EvalLoss > 0)) {
			return errclass.Invalidf("plot: step %d has a loss or an eval loss of 0 or below: no logarithmic scale for it (drop --log-y)", s.Step)
		}
	}
	return nil
}

// Title names the run of the log: the base model's folder or file, the
// method with its rank and alpha, and the number of updates, e.g.
// "Llama-3.2-1B: LoRA r=16 α=32, 300 steps". name (the log's file name)
// stands in for a log without a run header.
func (l *Log) Title(name string) string {
	last := l.Steps[len(l.Steps)-1].Step
	r := l.Run
	steps := "steps"
	if last == 1 {
		steps = "step"
	}
	if r == nil {
		return fmt.Sprintf("%s: %d %s", filepath.Base(name), last, steps)
	}
	model := strings.TrimSuffix(filepath.Base(filepath.Clean(r.Base)), ".safetensors")
	if r.Base == "-" {
		model = "stdin"
	}
	var b strings.Builder
	b.WriteString(model)
	if r.ModelType != "" {
		fmt.Fprintf(&b, " (%s)", r.ModelType)
	}
	switch r.Method {
	case MethodIA3:
		b.WriteString(": IA3")
	default:
		method := map[string]string{MethodLoRA: "LoRA", "dora": "DoRA"}[r.Method]
		if method == "" {
			method = r.Method
		}
		fmt.Fprintf(&b, ": %s r=%d α=%s", method, r.Rank, strconv.FormatFloat(r.Alpha, 'g', -1, 64))
	}
	if last < r.Steps {
		fmt.Fprintf(&b, ", %d of %d steps", last, r.Steps)
	} else {
		fmt.Fprintf(&b, ", %d %s", last, steps)
	}
	return b.String()
}

// movingAverage returns the centred moving average of xy's Y over n
// points (fewer at the ends).
func movingAverage(xy plotter.XYs, n int) plotter.XYs {
	out := make(plotter.XYs, len(xy))
	prefix := make([]float64, len(xy)+1)
	for i, p := range xy {
		prefix[i+1] = prefix[i] + p.Y
	}
	for i := range xy {
		lo, hi := max(0, i-n/2), min(len(xy), i-n/2+n)
		out[i] = plotter.XY{X: xy[i].X, Y: (prefix[hi] - prefix[lo]) / float64(hi-lo)}
	}
	return out
}

// logTicks marks a logarithmic axis: every power of ten, with 2 and 5
// times it labelled too when the range spans less than three decades (so
// that a loss between 0.4 and 3 gets values, not a lone 1), and minor
// ticks in between; within one decade every tick is labelled, and a
// narrower range gets linear ticks.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(lo > 0) || !(hi >= lo) {
		return nil
	}
	labelled := map[int]bool{1: true}
	if math.Log10(hi/lo) < 3 {
		labelled[2], labelled[5] = true, true
	}
	var ticks []plot.Tick
	n := 0
	for e := int(math.Floor(math.Log10(lo))); e <= int(math.Ceil(math.Log10(hi))); e++ {
		for m := 1; m <= 9; m++ {
			v := float64(m) * math.Pow10(e)
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			t := plot.Tick{Value: v}
			if labelled[m] {
				t.Label = strconv.FormatFloat(v, 'g', 6, 64)
				n++
			}
			ticks = append(ticks, t)
		}
	}
	if n < 2 && len(ticks) < 2 { // a narrow range: the linear ticks serve
		return plot.DefaultTicks{}.Ticks(lo, hi)
	}
	if n < 2 { // a range within one decade: label every tick
		for i := range ticks {
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'g', 6, 64)
		}
	}
	return ticks
}

// linearTicks marks a linear axis with 3 to 8 labelled values 1, 2 or 5
// times a power of ten apart (whole numbers for an integer axis), and
// minor ticks between them.
type linearTicks struct{ integer bool }

func (t linearTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) || math.IsInf(hi-lo, 0) {
		return []plot.Tick{{Value: lo, Label: strconv.FormatFloat(lo, 'g', 6, 64)},
			{Value: hi, Label: strconv.FormatFloat(hi, 'g', 6, 64)}}
	}
	step, minor := 0.0, 0
	exp := int(math.Floor(math.Log10((hi - lo) / 10)))
	for _, m := range []struct {
		mantissa float64
		minor    int
	}{{1, 5}, {2, 4}, {5, 5}, {10, 5}} {
		step, minor = m.mantissa*math.Pow10(exp), m.minor
		if (hi-lo)/step <= 7 {
			break
		}
	}
	decimals := max(0, -int(math.Floor(math.Log10(step)+1e-9)))
	if t.integer && step < 1 {
		step, minor, decimals = 1, 1, 0
	}
	var ticks []plot.Tick
	first := math.Ceil(lo/step-1e-9) * step
	for i := 0; i <= 10*minor+1; i++ {
		v := first + float64(i)*step/float64(minor)
		if v > hi+step*1e-9 {
			break
		}
		if math.Abs(v) < step*1e-9 {
			v = 0 // not -0.0 from rounding
		}
		tk := plot.Tick{Value: v}
		if i%minor == 0 {
			tk.Label = strconv.FormatFloat(v, 'f', decimals, 64)
		}
		ticks = append(ticks, tk)
	}
	if len(ticks) == 0 { // an integer axis without a whole number in range
		return linearTicks{}.Ticks(lo, hi)
	}
	// Minor ticks below the first label.
	for i, v := 1, first-step/float64(minor); i < minor && v >= lo-step*1e-9; i, v = i+1, v-step/float64(minor) {
		ticks = append(ticks, plot.Tick{Value: v})
	}
	return ticks
}
