package adapterops

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tool"
)

const (
	qProj = "model.layers.0.self_attn.q_proj"
	vProj = "model.layers.0.self_attn.v_proj"
	q1    = "model.layers.1.self_attn.q_proj"
)

// twoAdapters writes two adapters of ranks 4 and 6 with different alphas,
// the second rsLoRA, sharing q_proj and v_proj of layer 0; the first also
// has layer 1's q_proj.
func twoAdapters(t *testing.T) (dir string, a1, a2 []tmod, p1, p2 string) {
	t.Helper()
	rng := rand.New(rand.NewPCG(21, 22))
	dir = t.TempDir()
	a1 = []tmod{randModule(rng, qProj, 24, 20, 4), randModule(rng, vProj, 24, 12, 4), randModule(rng, q1, 24, 20, 4)}
	a2 = []tmod{randModule(rng, qProj, 24, 20, 6), randModule(rng, vProj, 24, 12, 6)}
	p1 = writeAdapter(t, filepath.Join(dir, "a1"), map[string]any{"r": 4, "lora_alpha": 8}, a1, nil)
	p2 = writeAdapter(t, filepath.Join(dir, "a2"), map[string]any{"r": 6, "lora_alpha": 3, "use_rslora": true}, a2, nil)
	return
}

// scalings of the adapters of twoAdapters.
var s1, s2 = 8.0 / 4, 3 / math.Sqrt(6)

func TestCatIsExactWeightedSum(t *testing.T) {
	dir, a1, a2, p1, p2 := twoAdapters(t)
	out := filepath.Join(dir, "cat")
	w1, w2 := 0.7, -1.3
	rep := mustCombine(t, CombineOptions{Adapters: []Input{{p1, w1}, {p2, w2}}, Method: Cat, Output: out})
	if rep.Rank != 10 {
		t.Fatalf("r = %d, want 4+6", rep.Rank)
	}
	l := load(t, out)
	if l.cfg.R != 10 || l.cfg.LoraAlpha != 10 || l.cfg.UseRSLoRA || len(l.cfg.RankPattern) != 0 {
		t.Fatalf("config r %d alpha %v rslora %v patterns %v", l.cfg.R, l.cfg.LoraAlpha, l.cfg.UseRSLoRA, l.cfg.RankPattern)
	}
	for i := range a1 {
		want := tmodDelta(a1[i], s1*w1)
		if i < len(a2) {
			addScaled(want, 1, tmodDelta(a2[i], s2*w2))
		}
		f := l.mods[a1[i].path]
		if f.scale != 1 || f.mod.Rank != 10 {
			t.Fatalf("%s: scale %v rank %d", a1[i].path, f.scale, f.mod.Rank)
		}
		if e := relErr(f.delta(), want); e > 1e-6 {
			t.Errorf("%s: B'A' differs from Σ w·s·B·A by %g", a1[i].path, e)
		}
		// PEFT's tensors exactly: A rows f32(f32(A·w)·s), B columns, zero padding.
		in := a1[i].in
		for k := 0; k < 4; k++ {
			for j := 0; j < in; j++ {
				if got, want := f.a[k*in+j], a1[i].a[k*in+j]*float32(w1)*float32(s1); got != want {
					t.Fatalf("%s: A'[%d][%d] = %v, want %v", a1[i].path, k, j, got, want)
				}
			}
		}
		if i == 2 { // layer 1 q_proj: only the first adapter; rows 4..9 are zero
			for _, v := range f.a[4*in:] {
				if v != 0 {
					t.Fatal("padding rows of A' are not zero")
				}
			}
		}
	}
}

func TestLinearIsPEFTsFactorwiseFormula(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	dir := t.TempDir()
	m1, m2 := randModule(rng, qProj, 16, 10, 4), randModule(rng, qProj, 16, 10, 4)
	p1 := writeAdapter(t, filepath.Join(dir, "a1"), map[string]any{"r": 4, "lora_alpha": 8}, []tmod{m1}, nil)
	p2 := writeAdapter(t, filepath.Join(dir, "a2"), map[string]any{"r": 4, "lora_alpha": 4}, []tmod{m2}, nil)
	w1, w2 := 0.5, -2.0
	out := filepath.Join(dir, "lin")
	mustCombine(t, CombineOptions{Adapters: []Input{{p1, w1}, {p2, w2}}, Method: Linear, Output: out})
	f := load(t, out).mods[qProj]
	// A' = √|w1 s1|·A1 − √|w2 s2|·A2, B' = √|w1 s1|·B1 + √|w2 s2|·B2 in float32.
	wa1, wa2 := float32(math.Sqrt(0.5*2)), float32(-math.Sqrt(2.0*1))
	wb1, wb2 := float32(math.Sqrt(0.5*2)), float32(math.Sqrt(2.0*1))
	for i := range f.a {
		if want := (0 + m1.a[i]*wa1) + m2.a[i]*wa2; f.a[i] != want {
			t.Fatalf("A'[%d] = %v, want %v", i, f.a[i], want)
		}
	}
	for i := range f.b {
		if want := (0 + m1.b[i]*wb1) + m2.b[i]*wb2; f.b[i] != want {
			t.Fatalf("B'[%d] = %v, want %v", i, f.b[i], want)
		}
	}
	// The product is not Σ w·s·B·A: it has the cross terms.
	sum := tmodDelta(m1, w1*2)
	addScaled(sum, 1, tmodDelta(m2, w2*1))
	if e := relErr(f.delta(), sum); e < 0.1 {
		t.Errorf("linear of two adapters equals the weighted sum of deltas (error %g): cross terms missing", e)
	}
	// With one adapter it is exact (PEFT uses linear for a single adapter).
	one := filepath.Join(dir, "one")
	rep := mustCombine(t, CombineOptions{Adapters: []Input{{p1, -3}}, Method: SVD, Output: one})
	if rep.Method != Linear || len(rep.Notes) == 0 {
		t.Errorf("single adapter: method %s, notes %v", rep.Method, rep.Notes)
	}
	if e := relErr(load(t, one).mods[qProj].delta(), tmodDelta(m1, -3*2)); e > 1e-6 {
		t.Errorf("single adapter linear: error %g", e)
	}
}

func TestSVDCombine(t *testing.T) {
	dir, a1, a2, p1, p2 := twoAdapters(t)
	w1, w2 := 1.5, 0.25
	full := filepath.Join(dir, "full")
	rep := mustCombine(t, CombineOptions{Adapters: []Input{{p1, w1}, {p2, w2}}, Method: SVD, SVDRank: 10, Output: full})
	if rep.Rank != 10 {
		t.Fatalf("r = %d", rep.Rank)
	}
	l := load(t, full)
	for i := range a2 {
		want := tmodDelta(a1[i], s1*w1)
		addScaled(want, 1, tmodDelta(a2[i], s2*w2))
		if e := relErr(l.mods[a1[i].path].delta(), want); e > 1e-6 {
			t.Errorf("%s: full-rank svd error %g", a1[i].path, e)
		}
		if k := *rep.Modules[indexOfModule(rep, a1[i].path)].Kept; math.Abs(k-1) > 1e-12 {
			t.Errorf("%s: kept %v at full rank", a1[i].path, k)
		}
	}
	// Default rank: the largest input rank (6); the result is the best
	// rank-6 approximation of the weighted sum (Eckart–Young).
	low := filepath.Join(dir, "low")
	rep = mustCombine(t, CombineOptions{Adapters: []Input{{p1, w1}, {p2, w2}}, Method: SVD, Output: low})
	if rep.Rank != 6 {
		t.Fatalf("default svd rank %d, want 6", rep.Rank)
	}
	l = load(t, low)
	for i := range a2 {
		sum := tmodDelta(a1[i], s1*w1)
		addScaled(sum, 1, tmodDelta(a2[i], s2*w2))
		best, sv := bestRankK(sum, 6)
		if e := relErr(l.mods[a1[i].path].delta(), best); e > 1e-6 {
			t.Errorf("%s: rank-6 svd differs from the best rank-6 approximation by %g", a1[i].path, e)
		}
		if got, want := *rep.Modules[indexOfModule(rep, a1[i].path)].Kept, keptFraction(sv, 6); math.Abs(got-want) > 1e-9 {
			t.Errorf("%s: kept %v, want %v", a1[i].path, got, want)
		}
	}
	// A module only one adapter has is that adapter's delta, truncated.
	best, _ := bestRankK(tmodDelta(a1[2], s1*w1), 6)
	if e := relErr(l.mods[q1].delta(), best); e > 1e-6 {
		t.Errorf("%s: error %g", q1, e)
	}
}

func indexOfModule(rep *CombineReport, path string) int {
	return slices.IndexFunc(rep.Modules, func(m CombinedModule) bool { return m.Module == path })
}

// TestSVDRankAboveDimension: a rank above min(out, in) is capped per module
// and recorded in rank_pattern (PEFT would write tensors its config
// contradicts).
func TestSVDRankAboveDimension(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	dir := t.TempDir()
	small := randModule(rng, vProj, 24, 5, 4) // out = 5
	big := randModule(rng, qProj, 24, 20, 4)
	p1 := writeAdapter(t, filepath.Join(dir, "a1"), map[string]any{"r": 4}, []tmod{small, big}, nil)
	m2 := randModule(rng, vProj, 24, 5, 4)
	p2 := writeAdapter(t, filepath.Join(dir, "a2"), map[string]any{"r": 4}, []tmod{m2}, nil)
	out := filepath.Join(dir, "out")
	mustCombine(t, CombineOptions{Adapters: []Input{{p1, 1}, {p2, 1}}, Method: SVD, SVDRank: 8, Output: out})
	l := load(t, out)
	if l.cfg.R != 8 || len(l.cfg.RankPattern) != 1 || l.cfg.RankPattern[0].Rank != 5 || l.cfg.AlphaPattern[0].Alpha != 5 {
		t.Fatalf("r %d rank_pattern %+v alpha_pattern %+v", l.cfg.R, l.cfg.RankPattern, l.cfg.AlphaPattern)
	}
	if l.cfg.RankPattern[0].Pattern != "layers.0.self_attn.v_proj" {
		t.Errorf("pattern key %q", l.cfg.RankPattern[0].Pattern)
	}
	if f := l.mods[vProj]; f.mod.Rank != 5 || f.scale != 1 {
		t.Fatalf("v_proj rank %d scale %v", f.mod.Rank, f.scale)
	}
	sum := tmodDelta(small, 2) // lora_alpha 8 / r 4
	addScaled(sum, 1, tmodDelta(m2, 2))
	if e := relErr(l.mods[vProj].delta(), sum); e > 1e-6 {
		t.Errorf("v_proj error %g", e)
	}
	// q_proj: rank 8 > its delta's rank 4: zero columns of B and rows of A.
	f := l.mods[qProj]
	for _, v := range f.a[4*24:] {
		if v != 0 {
			t.Fatal("rows of A' beyond the delta's rank are not zero")
		}
	}
}

func TestCombineRefusals(t *testing.T) {
	dir, _, _, p1, p2 := twoAdapters(t)
	rng := rand.New(rand.NewPCG(51, 52))
	doraDir := filepath.Join(dir, "dora")
	m := randModule(rng, qProj, 24, 20, 4)
	writeAdapter(t, doraDir, map[string]any{"r": 4, "use_dora": true}, []tmod{m},
		map[string]safetensors.Tensor{peft.Prefix + qProj + ".lora_magnitude_vector": f32Tensor([]int64{20}, randVec(rng, 20, 1))})
	regex := writeAdapter(t, filepath.Join(dir, "regex"), map[string]any{"r": 4, "target_modules": ".*q_proj"}, []tmod{m}, nil)
	other := writeAdapter(t, filepath.Join(dir, "other"), map[string]any{"r": 4}, []tmod{randModule(rng, qProj, 24, 21, 4)}, nil)
	for _, c := range []struct {
		name string
		o    CombineOptions
		want error
	}{
		{"linear, ranks differ", CombineOptions{Adapters: []Input{{p1, 1}, {p2, 1}}, Method: Linear}, ErrIncompatible},
		{"ties without density", CombineOptions{Adapters: []Input{{p1, 1}, {p1, 1}}, Method: TIES}, ErrOption},
		{"unknown method", CombineOptions{Adapters: []Input{{p1, 1}, {p2, 1}}, Method: "mean"}, ErrOption},
		{"dora", CombineOptions{Adapters: []Input{{doraDir, 1}, {p1, 1}}, Method: Cat}, ErrUnsupported},
		{"list and regex", CombineOptions{Adapters: []Input{{p1, 1}, {regex, 1}}, Method: Cat}, ErrIncompatible},
		{"shapes differ", CombineOptions{Adapters: []Input{{p1, 1}, {other, 1}}, Method: Cat}, ErrIncompatible},
		{"two stdin", CombineOptions{Adapters: []Input{{"-", 1}, {"-", 1}}, Method: Cat}, ErrOption},
		{"clamp", CombineOptions{Adapters: []Input{{p1, 1}, {p2, 1}}, Method: SVD, SVDClamp: 2}, ErrOption},
		{"sign", CombineOptions{Adapters: []Input{{p1, 1}, {p1, 1}}, Method: TIES, Density: 0.5, MajoritySign: "vote"}, ErrOption},
	} {
		c.o.Output = filepath.Join(dir, "out-"+c.name)
		if _, err := Combine(t.Context(), c.o); !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", c.name, err, c.want)
		}
	}
}

// TestCombineConfigLoads checks every output module against
// PEFT's loading rules: the rank from the config equals the tensor's and
// the scaling is 1.
func TestCombineConfigLoads(t *testing.T) {
	dir, _, _, p1, p2 := twoAdapters(t)
	for _, m := range []Method{Cat, SVD} {
		out := filepath.Join(dir, string(m))
		mustCombine(t, CombineOptions{Adapters: []Input{{p1, 1}, {p2, 1}}, Method: m, Output: out})
		l := load(t, out) // load fails the test on any analysis warning (rank mismatch, untargeted module)
		mt, err := peft.NewMatcher(l.cfg)
		if err != nil {
			t.Fatal(err)
		}
		for path, f := range l.mods {
			if mt.Rank(path) != f.mod.Rank || f.scale != 1 {
				t.Errorf("%s %s: config rank %d, tensor rank %d, scale %v", m, path, mt.Rank(path), f.mod.Rank, f.scale)
			}
		}
		if got := l.cfg.TargetModules.List; len(got) != 2 {
			t.Errorf("%s: target_modules %v", m, got)
		}
	}
}

// TestDenseFailureMidway: a non-finite value in a later module stops a
// dense combination (over the subspace-iteration size) with the tensor
// named, nothing written, and no job left using the freed matrix.
func TestDenseFailureMidway(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	dir := t.TempDir()
	var m1, m2 []tmod
	for l := 0; l < 4; l++ {
		path := "model.layers." + string(rune('0'+l)) + ".self_attn.q_proj"
		m1 = append(m1, randModule(rng, path, 96, 80, 4))
		m2 = append(m2, randModule(rng, path, 96, 80, 4))
	}
	m2[2].a[5] = float32(math.NaN())
	p1 := writeAdapter(t, filepath.Join(dir, "a1"), map[string]any{"r": 4}, m1, nil)
	p2 := writeAdapter(t, filepath.Join(dir, "a2"), map[string]any{"r": 4}, m2, nil)
	for _, threads := range []int{1, 2} {
		out := filepath.Join(dir, "out")
		_, err := Combine(t.Context(), CombineOptions{Adapters: []Input{{p1, 1}, {p2, 1}}, Method: TIESSVD, Density: 0.5,
			SVDRank: 4, Output: out, Env: tool.Env{Threads: threads}})
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "layers.2.self_attn.q_proj.lora_A") {
			t.Fatalf("%v", err)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatal("output written")
		}
	}
}
