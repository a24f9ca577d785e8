package inspect

import (
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/cli"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/linalg"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/peft"
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

// tensorReader gives float32 copies of tensors by name.
type tensorReader func(name string) ([]float32, error)

func readerFor(src *checkpoint.Source) (tensorReader, error) {
	if src.Random() {
		return func(name string) ([]float32, error) {
			t, ok := src.Info(name)
			if !ok {
				return nil, fmt.Errorf("%s: %w: %q", src.Path, safetensors.ErrNotFound, name)
			}
			b, err := src.Data(name)
			if err != nil {
				return nil, err
			}
			return toF32(src.Path, t, b)
		}, nil
	}
	all, err := src.LoadAll()
	if err != nil {
		return nil, err
	}
	return func(name string) ([]float32, error) {
		t, ok := src.Info(name)
		if !ok {
			return nil, fmt.Errorf("%s: %w: %q", src.Path, safetensors.ErrNotFound, name)
		}
		return toF32(src.Path, t, all[name])
	}, nil
}

func toF32(path string, t safetensors.TensorInfo, b []byte) ([]float32, error) {
	out := make([]float32, t.NumElements())
	if err := dtype.ToF32(out, b, t.DType); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", path, t.Name, err)
	}
	return out, nil
}

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// deltas computes the statistics of every LoRA module of the adapter, most
// changed first. With basePath the base weights are read too (4-bit bases
// are dequantized).
func deltas(src *checkpoint.Source, modules []peft.Module, basePath string) ([]Delta, error) {
	read, err := readerFor(src)
	if err != nil {
		return nil, err
	}
	var base *checkpoint.Source
	if basePath != "" {
		if base, err = checkpoint.Open(basePath, os.Stdin); err != nil {
			return nil, err
		}
		defer base.Close()
		if !base.Random() {
			return nil, fmt.Errorf("%s: --base must be a file or folder, not a stream", basePath)
		}
	}
	var out []Delta
	for _, m := range modules {
		if m.Kind != peft.KindLinear && m.Kind != peft.KindEmbedding {
			continue
		}
		a, err := read(m.A)
		if err != nil {
			return nil, err
		}
		b, err := read(m.B)
		if err != nil {
			return nil, err
		}
		r := m.Rank
		in, outF := int(m.In), int(m.Out)
		if m.Transposed { // MLX: A is (in, r), B is (r, out)
			a, b = transpose(a, in, r), transpose(b, r, outF)
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
		if base != nil {
			w0, err := baseWeight(base, m.Path+".weight")
			if err != nil {
				return nil, err
			}
			if int64(len(w0)) != m.In*m.Out {
				return nil, cli.Invalidf("%s: tensor %q has %d elements, the adapter's module %s needs %d×%d (is %s an adapter for this base?)", basePath, m.Path+".weight", len(w0), m.Path, m.Out, m.In, src.Path)
			}
			var s float64
			for _, v := range w0 {
				s += float64(v) * float64(v)
			}
			d.BaseNorm = math.Sqrt(s)
			if d.BaseNorm > 0 {
				d.Relative = d.Norm / d.BaseNorm
			}
		}
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if base != nil {
			return out[i].Relative > out[j].Relative
		}
		return out[i].Norm > out[j].Norm
	})
	return out, nil
}

func transpose(x []float32, rows, cols int) []float32 {
	out := make([]float32, len(x))
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			out[j*rows+i] = x[i*cols+j]
		}
	}
	return out
}

// baseWeight reads a base weight as float32, dequantizing 4-bit weights.
func baseWeight(base *checkpoint.Source, name string) ([]float32, error) {
	t, ok := base.Info(name)
	if !ok {
		return nil, fmt.Errorf("%s: %w: %q (does the adapter belong to this base?)", base.Path, safetensors.ErrNotFound, name)
	}
	if _, isQ := base.Info(name + nf4.SuffixQuantStateNF4); isQ || hasInfo(base, name+nf4.SuffixQuantStateFP4) {
		qs, packed, err := nf4.ParseModule(name, func(n string) (nf4.Tensor, bool) {
			ti, ok := base.Info(n)
			if !ok {
				return nf4.Tensor{}, false
			}
			b, err := base.Data(n)
			if err != nil {
				return nf4.Tensor{}, false
			}
			return nf4.Tensor{DType: ti.DType, Shape: ti.Shape, Data: b}, true
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", base.Path, err)
		}
		out := make([]float32, qs.NumElements())
		if err := qs.Dequantize(out, packed); err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", base.Path, name, err)
		}
		return out, nil
	}
	b, err := base.Data(name)
	if err != nil {
		return nil, err
	}
	return toF32(base.Path, t, b)
}

func hasInfo(s *checkpoint.Source, name string) bool {
	_, ok := s.Info(name)
	return ok
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
