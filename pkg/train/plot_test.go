package train

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"

	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/tool"
)

var update = flag.Bool("update", false, "rewrite testdata/plot-texts.golden")

// testLog is a run of 4 planned steps whose loss falls from 2.5 to 0.4,
// evaluated at steps 2 and 4.
func testLog(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(testRun + "\n")
	for i, loss := range []float64{2.5, 1.2, 0.7, 0.4} {
		eval := ""
		if i%2 == 1 {
			eval = fmt.Sprintf(`,"eval_loss":%g`, loss*1.1)
		}
		fmt.Fprintf(&b, `{"step":%d,"loss":%g%s}`+"\n", i+1, loss, eval)
	}
	return write(t, filepath.Join(t.TempDir(), "log.jsonl"), b.String())
}

// svgTexts returns the width and height attributes of an SVG document and
// its text elements, in order.
func svgTexts(t *testing.T, svg []byte) (w, h string, texts []string) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(svg))
	inText := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v", err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if e.Name.Local == "svg" {
				for _, a := range e.Attr {
					switch a.Name.Local {
					case "width":
						w = a.Value
					case "height":
						h = a.Value
					}
				}
			}
			inText = e.Name.Local == "text"
		case xml.CharData:
			if inText {
				texts = append(texts, string(e))
			}
		case xml.EndElement:
			inText = false
		}
	}
	return w, h, texts
}

// cssPixels converts an SVG length in points to CSS pixels.
func cssPixels(t *testing.T, v string) int {
	pt, err := strconv.ParseFloat(strings.TrimSuffix(v, "pt"), 64)
	if err != nil || !strings.HasSuffix(v, "pt") {
		t.Fatalf("SVG size %q", v)
	}
	return int(math.Round(pt * 96 / 72))
}

// TestPlotFiles writes the PNG and the SVG of a log through Plot: images of
// the requested size; the SVG's text (title, axis labels, tick values,
// legend) is compared with a golden file, which keeps the check free of
// pixels and of the plotting library's exact layout.
func TestPlotFiles(t *testing.T) {
	log := testLog(t)
	dir := t.TempDir()
	o := DefaultPlotOptions()
	o.Log, o.Width, o.Height = log, 640, 400

	o.Output = filepath.Join(dir, "loss.png")
	l, err := Plot(context.Background(), o)
	if err != nil || len(l.Steps) != 4 || l.Run == nil {
		t.Fatalf("%+v %v", l, err)
	}
	f, err := os.Open(o.Output)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 640 || b.Dy() != 400 {
		t.Errorf("PNG of %v, want 640x400", b)
	}

	o.Output = filepath.Join(dir, "loss.SVG")
	if _, err := Plot(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(o.Output)
	if err != nil {
		t.Fatal(err)
	}
	w, h, texts := svgTexts(t, svg)
	if cssPixels(t, w) != 640 || cssPixels(t, h) != 400 {
		t.Errorf("SVG of %s x %s, want 640x400 CSS pixels", w, h)
	}
	for _, want := range []string{"Llama-3.2-1B (llama): LoRA r=16 α=32, 4 steps", "step", "loss", "0", "4", "0.5", "2.5",
		"training loss", "evaluation loss"} {
		if !slices.Contains(texts, want) {
			t.Errorf("the SVG has no text %q: %q", want, texts)
		}
	}
	golden := filepath.Join("testdata", "plot-texts.golden")
	got := strings.Join(texts, "\n") + "\n"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want, err := os.ReadFile(golden); err != nil || got != string(want) {
		t.Errorf("SVG texts differ from %s (go test -run TestPlotFiles -update to accept):\n%s", golden, got)
	}
	if !bytes.Contains(svg, []byte("font-family:'Liberation Sans',Arial,Helvetica,sans-serif;")) {
		t.Error("the SVG names no fallback font")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("files left in the output folder: %v", entries)
	}
}

// TestPlotOptions: smoothing and the log scale show in the text, a title
// replaces the run's, "-" goes to stdout, and the checks of the options.
func TestPlotOptions(t *testing.T) {
	log := testLog(t)
	svgOf := func(o PlotOptions) []string {
		t.Helper()
		var out bytes.Buffer
		o.Env = tool.Env{Stdout: &out}
		o.Log, o.Output, o.Format = log, "-", "svg"
		if _, err := Plot(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		_, _, texts := svgTexts(t, out.Bytes())
		return texts
	}
	o := DefaultPlotOptions()
	o.Smooth, o.LogY, o.Title = 3, true, "my run"
	texts := svgOf(o)
	for _, want := range []string{"my run", "loss (log scale)", "training loss, mean of 3 updates", "0.5", "1", "2"} {
		if !slices.Contains(texts, want) {
			t.Errorf("no text %q: %q", want, texts)
		}
	}
	if slices.Contains(texts, "Llama-3.2-1B (llama): LoRA r=16 α=32, 4 steps") {
		t.Error("--title did not replace the run's title")
	}

	// "-" without a format is a PNG.
	var out bytes.Buffer
	o = DefaultPlotOptions()
	o.Env, o.Log, o.Output = tool.Env{Stdout: &out}, log, "-"
	if _, err := Plot(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(&out); err != nil {
		t.Errorf("stdout is not a PNG: %v", err)
	}
	// No output: the log is read and checked only.
	o.Output = ""
	if l, err := Plot(context.Background(), o); err != nil || len(l.Steps) != 4 {
		t.Errorf("%+v %v", l, err)
	}

	for _, c := range []struct {
		change func(*PlotOptions)
		class  error
		msg    string
	}{
		{func(o *PlotOptions) { o.Output = "loss.jpg" }, errclass.Usage, "must end in .png or .svg"},
		{func(o *PlotOptions) { o.Format = "pdf" }, errclass.Usage, `format "pdf"`},
		{func(o *PlotOptions) { o.Width = 10 }, errclass.Usage, "size 10x540"},
		{func(o *PlotOptions) { o.Height = 1 << 20 }, errclass.Usage, "each side must be"},
		{func(o *PlotOptions) { o.Smooth = -1 }, errclass.Usage, "--smooth"},
		{func(o *PlotOptions) { o.Log = "" }, errclass.Usage, "no log file"},
	} {
		o := DefaultPlotOptions()
		o.Log, o.Output = log, filepath.Join(t.TempDir(), "x.png")
		c.change(&o)
		if _, err := Plot(context.Background(), o); !errors.Is(err, c.class) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v (want %q)", err, c.msg)
		}
	}
	zero := write(t, filepath.Join(t.TempDir(), "zero.jsonl"), `{"step":1,"loss":1}`+"\n"+`{"step":2,"loss":0}`+"\n")
	o = DefaultPlotOptions()
	o.Log, o.Output, o.LogY = zero, filepath.Join(t.TempDir(), "x.png"), true
	if _, err := Plot(context.Background(), o); !errors.Is(err, errclass.Invalid) || !strings.Contains(err.Error(), "step 2") {
		t.Errorf("a zero loss on a log scale: %v", err)
	}
	if _, err := os.Stat(o.Output); !os.IsNotExist(err) {
		t.Errorf("a failed plot left %s behind", o.Output)
	}
}

// TestPlotKeepsTarget: a log that cannot be read leaves an existing image
// as it was, and nothing else behind.
func TestPlotKeepsTarget(t *testing.T) {
	dir := t.TempDir()
	target := write(t, filepath.Join(dir, "loss.png"), "old")
	bad := write(t, filepath.Join(dir, "bad.jsonl"), `{"step":1,"loss":1}`+"\n"+`{"step":1,"loss":1}`+"\n")
	o := DefaultPlotOptions()
	o.Log, o.Output = bad, target
	if _, err := Plot(context.Background(), o); !errors.Is(err, ErrLog) || !strings.Contains(err.Error(), "bad.jsonl: line 2") {
		t.Errorf("%v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "old" {
		t.Error("the old image was changed")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("files left behind: %v", entries)
	}
}

func TestMovingAverage(t *testing.T) {
	xy := plotter.XYs{{X: 1, Y: 1}, {X: 2, Y: 2}, {X: 3, Y: 3}, {X: 4, Y: 4}, {X: 5, Y: 10}}
	var got []float64
	for _, p := range movingAverage(xy, 3) {
		got = append(got, p.Y)
	}
	if want := []float64{1.5, 2, 3, 17.0 / 3, 7}; !slices.Equal(got, want) {
		t.Errorf("moving average %v, want %v", got, want)
	}
	if m := movingAverage(xy, 100); m[0].Y != 4 || m[4].Y != 4 || m[2].X != 3 {
		t.Errorf("a window wider than the data: %v", m)
	}
}

func TestTicks(t *testing.T) {
	labels := func(ticks []plot.Tick) []string {
		var out []string
		for _, tk := range ticks {
			if tk.Label != "" {
				out = append(out, tk.Label)
			}
		}
		slices.SortFunc(out, func(a, b string) int {
			x, _ := strconv.ParseFloat(a, 64)
			y, _ := strconv.ParseFloat(b, 64)
			return int(math.Copysign(1, x-y))
		})
		return out
	}
	for _, c := range []struct {
		lo, hi  float64
		integer bool
		want    string
	}{
		{0, 300, true, "0 50 100 150 200 250 300"},
		{1, 7, true, "1 2 3 4 5 6 7"},
		{0, 3, true, "0 1 2 3"},
		{0.0126, 6.15, false, "1 2 3 4 5 6"},
		{0.35, 0.52, false, "0.35 0.40 0.45 0.50"},
		{0, 2.5, false, "0.0 0.5 1.0 1.5 2.0 2.5"},
		{0, 1e6, true, "0 200000 400000 600000 800000 1000000"},
		{1.25, 1.5, false, "1.25 1.30 1.35 1.40 1.45 1.50"},
		{0.5, 0.7, true, "0.50 0.55 0.60 0.65 0.70"},
		{-0.3, 0.3, false, "-0.3 -0.2 -0.1 0.0 0.1 0.2 0.3"},
	} {
		if got := strings.Join(labels(linearTicks{integer: c.integer}.Ticks(c.lo, c.hi)), " "); got != c.want {
			t.Errorf("linear %g..%g: %s, want %s", c.lo, c.hi, got, c.want)
		}
	}
	for _, c := range []struct {
		lo, hi float64
		want   string
	}{
		{0.0126, 6.15, "0.02 0.05 0.1 0.2 0.5 1 2 5"},
		{0.001, 50, "0.001 0.01 0.1 1 10"},
		{0.4, 0.95, "0.4 0.5 0.6 0.7 0.8 0.9"},
		{0.41, 0.49, "0.42 0.45 0.48"},
	} {
		if got := strings.Join(labels(logTicks{}.Ticks(c.lo, c.hi)), " "); got != c.want {
			t.Errorf("log %g..%g: %s, want %s", c.lo, c.hi, got, c.want)
		}
	}
	if ticks := (linearTicks{}).Ticks(-math.MaxFloat64, math.MaxFloat64); len(ticks) != 2 {
		t.Errorf("an infinite range: %d ticks", len(ticks))
	}
}
