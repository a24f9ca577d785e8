package inspect

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/linalg"
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/pipeline"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// Delta is the weight-delta statistic of one adapted module.
type Delta struct {
	Module  string  `json:"module"`
	Rank    int     `json:"rank"`
	Scaling float64 `json:"scaling"`
	// Norm is ||s·B·A||_F.
	Norm float64 `json:"norm"`
	// SingularValues of s·B·A, largest first (r of them).
	SingularValues []float64 `json:"singular_values"`
	// EffectiveRank is exp(entropy of the normalized singular values).
	EffectiveRank float64 `json:"effective_rank"`
	// BaseNorm is ||W0||_F and Relative ||ΔW||_F/||W0||_F, with --base.
	BaseNorm float64 `json:"base_norm,omitempty"`
	Relative float64 `json:"relative,omitempty"`
}

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// deltas computes the statistics of every LoRA module of the adapter, most
// changed first, on o.Threads goroutines. With o.Base the base weights are
// read too (4-bit bases are dequantized).
func deltas(ad *model.Adapter, o Options) ([]Delta, error) {
	var base *pipeline.Input
	if o.Base != "" {
		mb, err := model.OpenBase(o.Base, o.In(), model.BaseOptions{})
		if err != nil {
			return nil, err
		}
		defer mb.Close()
		if !mb.Source.Random() {
			return nil, fmt.Errorf("%s: --base must be a file or folder, not a stream", o.Base)
		}
		base = pipeline.NewInput(mb.Source, pipeline.InputOptions{})
	}
	var mods []peft.Module
	for _, m := range ad.Analysis.Modules {
		if m.Kind == peft.KindLinear || m.Kind == peft.KindEmbedding {
			mods = append(mods, m)
		}
	}
	out := make([]Delta, len(mods))
	jobs := make([]*pipeline.Job, len(mods))
	for i, m := range mods {
		jobs[i] = &pipeline.Job{Name: m.Path, Chunks: 1, Run: func(int, []byte, *pipeline.Worker) (err error) {
			out[i], err = delta(ad, m, base, o.Base)
			return err
		}}
	}
	if err := pipeline.Run(context.Background(), pipeline.Options{Workers: o.Threads}, jobs, nil); err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool {
		if base != nil {
			return out[i].Relative > out[j].Relative
		}
		return out[i].Norm > out[j].Norm
	})
	return out, nil
}

// delta computes one module's statistics.
func delta(ad *model.Adapter, m peft.Module, base *pipeline.Input, basePath string) (Delta, error) {
	a, err := ad.Float32(m.A)
	if err != nil {
		return Delta{}, err
	}
	b, err := ad.Float32(m.B)
	if err != nil {
		return Delta{}, err
	}
	r := m.Rank
	in, outF := int(m.In), int(m.Out)
	if m.Transposed { // MLX: A is (in, r), B is (r, out)
		a, b = num.Transpose(a, in, r), num.Transpose(b, r, outF)
	}
	// Both orientations (linear B·A, embedding (B·A)ᵀ) have the same spectrum.
	sv := linalg.ProductSingularValues(linalg.NewDense(outF, r, f64(b)), linalg.NewDense(r, in, f64(a)))
	for i := range sv {
		sv[i] *= math.Abs(float64(m.Scaling))
	}
	var n2 float64
	for _, v := range sv {
		n2 += v * v
	}
	d := Delta{Module: m.Path, Rank: r, Scaling: float64(m.Scaling), Norm: math.Sqrt(n2), SingularValues: sv, EffectiveRank: linalg.EffectiveRank(sv)}
	if base == nil {
		return d, nil
	}
	w0, err := baseWeight(base, basePath, m.Path+".weight")
	if err != nil {
		return Delta{}, err
	}
	if int64(len(w0)) != m.In*m.Out {
		return Delta{}, errclass.Invalidf("%s: tensor %q has %d elements, the adapter's module %s needs %d×%d (is %s an adapter for this base?)", basePath, m.Path+".weight", len(w0), m.Path, m.Out, m.In, ad.Path)
	}
	var s float64
	for _, v := range w0 {
		s += float64(v) * float64(v)
	}
	d.BaseNorm = math.Sqrt(s)
	if d.BaseNorm > 0 {
		d.Relative = d.Norm / d.BaseNorm
	}
	return d, nil
}

// baseWeight reads a base weight as float32, dequantizing 4-bit weights as
// bitsandbytes' dequantize_4bit returns them.
func baseWeight(base *pipeline.Input, path, name string) ([]float32, error) {
	t, ok := base.Info(name)
	if !ok {
		return nil, fmt.Errorf("%s: %w: %q (does the adapter belong to this base?)", path, safetensors.ErrNotFound, name)
	}
	_, isNF4 := base.Info(name + nf4.SuffixQuantStateNF4)
	_, isFP4 := base.Info(name + nf4.SuffixQuantStateFP4)
	if isNF4 || isFP4 {
		f, _, err := base.Dequantize(name)
		return f, err
	}
	b, err := base.Read(name)
	if err != nil {
		return nil, err
	}
	return toF32(path, t, b)
}

func writeDeltas(w io.Writer, ds []Delta) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	rel := ds[0].BaseNorm > 0
	head := "  module\trank\t||ΔW||_F\teff. rank\ttop singular values\t"
	if rel {
		head += "||W0||_F\t||ΔW||/||W0||\t"
	}
	fmt.Fprintln(tw, head)
	for _, d := range ds {
		var top []string
		for i, v := range d.SingularValues {
			if i == 4 {
				top = append(top, "…")
				break
			}
			top = append(top, fmt.Sprintf("%.4g", v))
		}
		line := fmt.Sprintf("  %s\t%d\t%.6g\t%.2f\t%s\t", d.Module, d.Rank, d.Norm, d.EffectiveRank, strings.Join(top, " "))
		if rel {
			line += fmt.Sprintf("%.6g\t%.3e\t", d.BaseNorm, d.Relative)
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

func toF32(path string, t safetensors.TensorInfo, b []byte) ([]float32, error) {
	out := make([]float32, t.NumElements())
	if err := dtype.ToF32(out, b, t.DType); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", path, t.Name, err)
	}
	return out, nil
}
