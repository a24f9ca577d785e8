package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
)

// ReadLoss reads the "loss" of each line of a lora-train --log file.
func ReadLoss(path string) ([]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var loss []float64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var rec struct {
			Loss *float64 `json:"loss"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if rec.Loss != nil {
			loss = append(loss, *rec.Loss)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(loss) == 0 {
		return nil, fmt.Errorf("%s: no loss values", path)
	}
	return loss, nil
}

// buckets averages v into at most n consecutive groups.
func buckets(v []float64, n int) []float64 {
	if len(v) <= n {
		return v
	}
	out := make([]float64, n)
	for i := range n {
		lo, hi := i*len(v)/n, (i+1)*len(v)/n
		s := 0.0
		for _, x := range v[lo:hi] {
			s += x
		}
		out[i] = s / float64(hi-lo)
	}
	return out
}

// Sparkline renders v in at most width block characters, lowest ▁, highest █.
func Sparkline(v []float64, width int) string {
	const bars = "▁▂▃▄▅▆▇█"
	r := []rune(bars)
	v = buckets(v, width)
	lo, hi := minMax(v)
	out := make([]rune, len(v))
	for i, x := range v {
		k := 0
		if hi > lo {
			k = int(math.Round((x - lo) / (hi - lo) * float64(len(r)-1)))
		}
		out[i] = r[k]
	}
	return string(out)
}

func minMax(v []float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, x := range v {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return lo, hi
}

// PlotPNG draws v (one point per step) as a line plot of w×h pixels with a
// frame and horizontal grid lines at every integer loss value.
func PlotPNG(out io.Writer, v []float64, w, h int) error {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	white := color.RGBA{255, 255, 255, 255}
	grey := color.RGBA{220, 220, 220, 255}
	black := color.RGBA{0, 0, 0, 255}
	blue := color.RGBA{31, 119, 180, 255}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, white)
		}
	}
	const m = 20
	x0, x1, y0, y1 := m, w-m, m, h-m
	lo, hi := minMax(v)
	lo = math.Min(0, lo)
	if hi <= lo {
		hi = lo + 1
	}
	py := func(val float64) int { return y1 - int(math.Round((val-lo)/(hi-lo)*float64(y1-y0))) }
	for g := math.Ceil(lo); g <= hi; g++ {
		line(img, x0, py(g), x1, py(g), grey)
	}
	line(img, x0, y0, x0, y1, black)
	line(img, x0, y1, x1, y1, black)
	px := func(i int) int {
		if len(v) == 1 {
			return x0
		}
		return x0 + i*(x1-x0)/(len(v)-1)
	}
	for i := 1; i < len(v); i++ {
		line(img, px(i-1), py(v[i-1]), px(i), py(v[i]), blue)
	}
	if len(v) == 1 {
		img.Set(px(0), py(v[0]), blue)
	}
	return png.Encode(out, img)
}

// line draws a segment with Bresenham's algorithm.
func line(img *image.RGBA, xa, ya, xb, yb int, c color.RGBA) {
	dx, dy := abs(xb-xa), -abs(yb-ya)
	sx, sy := 1, 1
	if xa > xb {
		sx = -1
	}
	if ya > yb {
		sy = -1
	}
	e := dx + dy
	for {
		img.SetRGBA(xa, ya, c)
		if xa == xb && ya == yb {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			xa += sx
		} else {
			e += dx
			ya += sy
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
