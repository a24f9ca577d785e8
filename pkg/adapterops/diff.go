package adapterops

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/lorakit/lorakit/pkg/linalg"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/tool"
)

// DiffOptions configure Diff.
type DiffOptions struct {
	// A and B are the adapters to compare (folders, files, or one "-").
	A, B string
	// Env holds Stdin (for an input "-") and Threads (0: one per core).
	tool.Env

	seam seam
}

// DiffReport compares two adapters module by module; it is the JSON form
// of the command's report.
type DiffReport struct {
	Schema  int          `json:"schema"`
	A       string       `json:"a"`
	B       string       `json:"b"`
	Modules []ModuleDiff `json:"modules"`
	// OnlyA and OnlyB are the modules only one adapter targets.
	OnlyA   []string    `json:"only_in_a"`
	OnlyB   []string    `json:"only_in_b"`
	Summary DiffSummary `json:"summary"`
}

// ModuleDiff compares one module's ΔW_A = s_A·B_A·A_A and ΔW_B, exactly
// from the low-rank factors.
type ModuleDiff struct {
	Module string  `json:"module"`
	RankA  int     `json:"rank_a"`
	RankB  int     `json:"rank_b"`
	NormA  float64 `json:"norm_a"` // ‖ΔW_A‖_F
	NormB  float64 `json:"norm_b"` // ‖ΔW_B‖_F
	// Relative is ‖ΔW_A − ΔW_B‖_F/‖ΔW_A‖_F; null when ΔW_A is zero.
	Relative *float64 `json:"relative_difference"`
	// Cosine is ⟨ΔW_A, ΔW_B⟩/(‖ΔW_A‖·‖ΔW_B‖); null when either is zero.
	Cosine *float64 `json:"cosine"`
	// Identical: the same tensors and scaling (the difference is exactly 0).
	Identical bool `json:"identical,omitempty"`
	// DoRA modules: the relative difference of the magnitude vectors
	// (‖m_A − m_B‖/‖m_A‖), which the ΔW comparison does not see.
	Magnitude *float64 `json:"magnitude_relative_difference,omitempty"`

	diff float64 // ‖ΔW_A − ΔW_B‖_F
}

// DiffSummary sums up a diff.
type DiffSummary struct {
	Compared  int `json:"compared"`
	Identical int `json:"identical"`
	// Relative and Cosine treat all compared modules as one matrix:
	// √(Σ‖ΔW_A−ΔW_B‖²/Σ‖ΔW_A‖²) and Σ⟨ΔW_A,ΔW_B⟩/√(Σ‖ΔW_A‖²·Σ‖ΔW_B‖²).
	Relative *float64 `json:"relative_difference"`
	Cosine   *float64 `json:"cosine"`
	// MostChanged and LeastChanged list up to three modules each, by
	// relative difference.
	MostChanged  []ModuleChange `json:"most_changed"`
	LeastChanged []ModuleChange `json:"least_changed"`
}

// ModuleChange names a module and its relative difference.
type ModuleChange struct {
	Module   string  `json:"module"`
	Relative float64 `json:"relative_difference"`
}

// summaryCount is how many modules the summary names at each end.
const summaryCount = 3

// Diff compares the ΔW of two adapters module by module, exactly from
// their factors (never forming ΔW): norms from the r×r cores of
// package linalg, the inner product as tr((B_Aᵀ·B_B)·(A_B·A_Aᵀ))·s_A·s_B, and
// the difference as the norm of the product [s_A·B_A, −s_B·B_B]·[A_A; A_B].
func Diff(ctx context.Context, o DiffOptions) (*DiffReport, error) {
	ss, err := openAll(o.seam, &o.Env, []string{o.A, o.B})
	if err != nil {
		return nil, err
	}
	defer ss.Close()
	for _, s := range ss {
		if err := checkLoRA(s, "diff", true); err != nil {
			return nil, err
		}
	}
	set, err := unionModules(ss)
	if err != nil {
		return nil, err
	}
	rep := &DiffReport{Schema: Schema, A: ss[0].Path(), B: ss[1].Path(), OnlyA: []string{}, OnlyB: []string{}}
	var both []string
	for _, p := range set.paths {
		ms := set.members[p]
		switch {
		case ms[1] == nil:
			rep.OnlyA = append(rep.OnlyA, p)
		case ms[0] == nil:
			rep.OnlyB = append(rep.OnlyB, p)
		default:
			both = append(both, p)
		}
	}
	rep.Modules = make([]ModuleDiff, len(both))
	var inner = make([]float64, len(both))
	err = parallelEach(ctx, len(both), workers(o.Threads), func(i int) error {
		ms := set.members[both[i]]
		d, in, err := diffModule(ss, *ms[0], *ms[1])
		rep.Modules[i], inner[i] = d, in
		return err
	})
	if err != nil {
		return nil, err
	}
	rep.summarize(inner)
	return rep, nil
}

// diffModule compares one module; it also returns ⟨ΔW_A, ΔW_B⟩.
func diffModule(ss sources, ma, mb peft.Module) (ModuleDiff, float64, error) {
	d := ModuleDiff{Module: ma.Path, RankA: ma.Rank, RankB: mb.Rank}
	fa, err := readFactors(ss[0], ma)
	if err != nil {
		return d, 0, err
	}
	fb, err := readFactors(ss[1], mb)
	if err != nil {
		return d, 0, err
	}
	if ma.DoRA() && mb.DoRA() {
		rel, err := magnitudeDiff(ss, ma, mb)
		if err != nil {
			return d, 0, err
		}
		d.Magnitude = rel
	}
	ba, aa := fa.matrices()
	bb, ab := fb.matrices()
	d.NormA = linalg.ProductNorm(ba, aa)
	if identical(fa, fb) {
		d.NormB, d.Identical = d.NormA, true
	} else {
		d.NormB = linalg.ProductNorm(bb, ab)
		d.diff = linalg.ProductNorm(hstack(ba, bb, -1), vstack(aa, ab))
	}
	var in float64
	if d.NormA > 0 && d.NormB > 0 {
		in = linalg.ProductInner(ba, aa, bb, ab)
		c := 1.0
		if !d.Identical {
			c = math.Max(-1, math.Min(1, in/d.NormA/d.NormB))
		}
		d.Cosine = &c
	}
	if d.NormA > 0 {
		rel := d.diff / d.NormA
		d.Relative = &rel
	}
	return d, in, nil
}

// identical reports whether two modules have bit-identical factors and the
// same scaling.
func identical(a, b *factors) bool {
	return a.scale == b.scale && a.mod.Rank == b.mod.Rank && slices.Equal(a.a, b.a) && slices.Equal(a.b, b.b)
}

// hstack returns [x, sign·y] (same rows).
func hstack(x, y *linalg.Dense, sign float64) *linalg.Dense {
	c := x.Cols + y.Cols
	out := linalg.NewDense(x.Rows, c, nil)
	for i := 0; i < x.Rows; i++ {
		copy(out.Data[i*c:], x.Data[i*x.Cols:(i+1)*x.Cols])
		row := out.Data[i*c+x.Cols : (i+1)*c]
		for j, v := range y.Data[i*y.Cols : (i+1)*y.Cols] {
			row[j] = sign * v
		}
	}
	return out
}

// vstack returns [x; y] (same columns).
func vstack(x, y *linalg.Dense) *linalg.Dense {
	return linalg.NewDense(x.Rows+y.Rows, x.Cols, append(append([]float64(nil), x.Data...), y.Data...))
}

// magnitudeDiff is ‖m_A − m_B‖/‖m_A‖ of two DoRA magnitude vectors.
func magnitudeDiff(ss sources, ma, mb peft.Module) (*float64, error) {
	va, err := readFloats(ss[0], ma.Magnitude)
	if err != nil {
		return nil, err
	}
	vb, err := readFloats(ss[1], mb.Magnitude)
	if err != nil {
		return nil, err
	}
	if len(va) != len(vb) {
		return nil, fmt.Errorf("%w: module %s: magnitude vectors of %d and %d entries", ErrIncompatible, ma.Path, len(va), len(vb))
	}
	var d2, n2 float64
	for i := range va {
		e := float64(va[i]) - float64(vb[i])
		d2 += e * e
		n2 += float64(va[i]) * float64(va[i])
	}
	if n2 == 0 {
		return nil, nil
	}
	rel := math.Sqrt(d2 / n2)
	return &rel, nil
}

func (r *DiffReport) summarize(inner []float64) {
	s := &r.Summary
	s.Compared = len(r.Modules)
	s.MostChanged, s.LeastChanged = []ModuleChange{}, []ModuleChange{}
	var na2, nb2, d2, in float64
	var ranked []ModuleChange
	for i, m := range r.Modules {
		if m.Identical {
			s.Identical++
		}
		na2 += m.NormA * m.NormA
		nb2 += m.NormB * m.NormB
		d2 += m.diff * m.diff
		in += inner[i]
		if m.Relative != nil {
			ranked = append(ranked, ModuleChange{m.Module, *m.Relative})
		}
	}
	if na2 > 0 {
		rel := math.Sqrt(d2 / na2)
		s.Relative = &rel
		if nb2 > 0 {
			c := math.Max(-1, math.Min(1, in/math.Sqrt(na2)/math.Sqrt(nb2)))
			s.Cosine = &c
		}
	}
	slices.SortStableFunc(ranked, func(a, b ModuleChange) int {
		switch {
		case a.Relative > b.Relative:
			return -1
		case a.Relative < b.Relative:
			return 1
		}
		return 0
	})
	n := min(summaryCount, len(ranked))
	s.MostChanged = append(s.MostChanged, ranked[:n]...)
	for i := len(ranked) - 1; i >= len(ranked)-n; i-- {
		s.LeastChanged = append(s.LeastChanged, ranked[i])
	}
}

// WriteText prints the diff for humans: one line per module, the modules
// only one adapter has, and a summary.
func (r *DiffReport) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "A: %s\nB: %s\n", r.A, r.B)
	if len(r.Modules) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "  module\trank A/B\t‖ΔW_A‖\t‖ΔW_B‖\t‖ΔW_A−ΔW_B‖/‖ΔW_A‖\tcosine\t")
		for _, m := range r.Modules {
			line := fmt.Sprintf("  %s\t%d/%d\t%.4g\t%.4g\t%s\t%s\t", m.Module, m.RankA, m.RankB, m.NormA, m.NormB, optional(m.Relative, "%.4g"), optional(m.Cosine, "%.6f"))
			if m.Magnitude != nil {
				line += fmt.Sprintf("DoRA magnitude %.4g", *m.Magnitude)
			}
			fmt.Fprintln(tw, line)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, only := range []struct {
		which string
		list  []string
	}{{"A", r.OnlyA}, {"B", r.OnlyB}} {
		if len(only.list) > 0 {
			fmt.Fprintf(w, "only in %s (%d): %s\n", only.which, len(only.list), strings.Join(only.list, ", "))
		}
	}
	s := r.Summary
	fmt.Fprintf(w, "compared %d modules (%d identical), %d only in A, %d only in B", s.Compared, s.Identical, len(r.OnlyA), len(r.OnlyB))
	if s.Relative != nil {
		fmt.Fprintf(w, "; all together ‖ΔA−ΔB‖/‖ΔA‖ = %.4g, cosine %s", *s.Relative, optional(s.Cosine, "%.6f"))
	}
	fmt.Fprintln(w)
	for _, l := range []struct {
		which string
		list  []ModuleChange
	}{{"most changed", s.MostChanged}, {"least changed", s.LeastChanged}} {
		if len(l.list) == 0 {
			continue
		}
		parts := make([]string, len(l.list))
		for i, c := range l.list {
			parts[i] = fmt.Sprintf("%s (%.4g)", c.Module, c.Relative)
		}
		fmt.Fprintf(w, "%s: %s\n", l.which, strings.Join(parts, ", "))
	}
	return nil
}

// optional formats *v, or "-" when v is nil.
func optional(v *float64, format string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v)
}
