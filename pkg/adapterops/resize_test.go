package adapterops

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/linalg"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tool"
)

// resizeFixture writes an rsLoRA adapter of rank 8 (alpha 12) with two
// linear modules, an embedding module, a lora_B bias and a modules_to_save
// tensor, with fan_in_fan_out set.
func resizeFixture(t *testing.T) (path string, mods []tmod, scale float64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(61, 62))
	mods = []tmod{
		randModule(rng, qProj, 30, 26, 8),
		randModule(rng, vProj, 30, 10, 8),
		randModule(rng, "model.embed_tokens", 40, 30, 8),
	}
	mods[2].embedding = true
	// Give q_proj a decaying spectrum so that the rules pick different ranks.
	for k := 0; k < 8; k++ {
		for i := 0; i < 30; i++ {
			mods[0].a[k*30+i] *= float32(math.Pow(0.4, float64(k)))
		}
	}
	extra := map[string]safetensors.Tensor{
		peft.Prefix + "lm_head.weight":       f32Tensor([]int64{40, 30}, randVec(rng, 1200, 1)),
		peft.Prefix + vProj + ".lora_B.bias": f32Tensor([]int64{10}, randVec(rng, 10, 1)),
	}
	path = writeAdapter(t, filepath.Join(t.TempDir(), "in"), map[string]any{
		"r": 8, "lora_alpha": 12, "use_rslora": true, "fan_in_fan_out": false, "lora_bias": true,
		"target_modules": []string{"q_proj", "v_proj", "embed_tokens"}, "modules_to_save": []string{"lm_head"},
	}, mods, extra)
	return path, mods, 12 / math.Sqrt(8)
}

func TestResizeOwnRankIsLossless(t *testing.T) {
	in, mods, s := resizeFixture(t)
	out := filepath.Join(t.TempDir(), "out")
	rep, err := Resize(t.Context(), ResizeOptions{Adapter: in, Rule: RankRule{Method: RankFixed, Rank: 8}, Output: out})
	if err != nil {
		t.Fatal(err)
	}
	l := load(t, out)
	if l.cfg.R != 8 || l.cfg.LoraAlpha != 8 || l.cfg.UseRSLoRA || !l.cfg.LoraBias || len(l.cfg.ModulesToSave) != 1 {
		t.Fatalf("config r %d alpha %v rslora %v lora_bias %v modules_to_save %v", l.cfg.R, l.cfg.LoraAlpha, l.cfg.UseRSLoRA, l.cfg.LoraBias, l.cfg.ModulesToSave)
	}
	for _, m := range mods {
		if e := relErr(l.mods[m.path].delta(), tmodDelta(m, s)); e > 1e-6 {
			t.Errorf("%s: error %g", m.path, e)
		}
	}
	for _, m := range rep.Modules {
		if m.Kept != 1 && math.Abs(m.Kept-1) > 1e-12 {
			t.Errorf("%s: kept %v", m.Module, m.Kept)
		}
	}
	// The bias is scaled by the old scaling (the new one is 1); lm_head is
	// carried byte for byte.
	inT, _ := readTensors(t, in)
	outT, _ := readTensors(t, out)
	bias := peft.Prefix + vProj + ".lora_B.bias"
	for i, v := range inT[bias] {
		if want := float32(float64(v) * s); outT[bias][i] != want {
			t.Fatalf("bias[%d] = %v, want %v", i, outT[bias][i], want)
		}
	}
	head := peft.Prefix + "lm_head.weight"
	if !bytes.Equal(f32bytes(inT[head]), f32bytes(outT[head])) {
		t.Error("lm_head changed")
	}
}

// TestResizeIsBestApproximation: resize to rank k equals the truncated SVD
// of the dense ΔW (Eckart–Young), and the reported kept fraction is
// √(Σ_{i<k}σᵢ²/Σσᵢ²).
func TestResizeIsBestApproximation(t *testing.T) {
	in, mods, s := resizeFixture(t)
	for _, k := range []int{1, 3, 5} {
		out := filepath.Join(t.TempDir(), "out")
		rep, err := Resize(t.Context(), ResizeOptions{Adapter: in, Rule: RankRule{Method: RankFixed, Rank: k}, Output: out, Env: tool.Env{Threads: 2}})
		if err != nil {
			t.Fatal(err)
		}
		l := load(t, out)
		for _, m := range mods {
			dense := tmodDelta(m, s)
			best, sv := bestRankK(dense, k)
			got := l.mods[m.path].delta()
			if e := relErr(got, best); e > 1e-6 {
				t.Errorf("k=%d %s: differs from the best rank-%d approximation by %g", k, m.path, k, e)
			}
			// ‖ΔW − ΔW_k‖² = Σ_{i>=k} σᵢ².
			var tail float64
			for _, x := range sv[k:] {
				tail += x * x
			}
			diff := dense.Clone()
			addScaled(diff, -1, got)
			if err := diff.Frobenius(); math.Abs(err*err-tail) > 1e-6*(tail+dense.Frobenius()*1e-6) {
				t.Errorf("k=%d %s: ‖ΔW−ΔW_k‖² = %v, Σ tail σ² = %v", k, m.path, err*err, tail)
			}
			rm := rep.Modules[indexOfResized(rep, m.path)]
			if rm.NewRank != k || math.Abs(rm.Kept-keptFraction(sv, k)) > 1e-9 || math.Abs(rm.Norm-dense.Frobenius()) > 1e-9*rm.Norm {
				t.Errorf("k=%d %s: report %+v", k, m.path, rm)
			}
		}
	}
}

func indexOfResized(rep *ResizeReport, path string) int {
	return slices.IndexFunc(rep.Modules, func(m ResizedModule) bool { return m.Module == path })
}

// TestResizeByEnergy: ranks differ per module; the config gets r = the
// largest rank and rank_pattern = alpha_pattern for the others, and every
// module keeps at least the requested energy.
func TestResizeByEnergy(t *testing.T) {
	in, mods, s := resizeFixture(t)
	out := filepath.Join(t.TempDir(), "out.safetensors")
	rep, err := Resize(t.Context(), ResizeOptions{Adapter: in, Rule: RankRule{Method: RankEnergy, Param: 0.9}, Output: out})
	if err != nil {
		t.Fatal(err)
	}
	l := load(t, out) // fails on rank/config mismatches
	ranks := map[int]bool{}
	for _, m := range mods {
		f := l.mods[m.path]
		ranks[f.mod.Rank] = true
		if f.scale != 1 {
			t.Errorf("%s: scale %v", m.path, f.scale)
		}
		sv := linalg.SingularValues(tmodDelta(m, s))
		k := f.mod.Rank
		if kept := keptFraction(sv, k); kept*kept < 0.9-1e-12 || (k > 1 && keptFraction(sv, k-1)*keptFraction(sv, k-1) >= 0.9) {
			t.Errorf("%s: rank %d keeps energy %v (rank %d would keep %v)", m.path, k, kept*kept, k-1, keptFraction(sv, k-1))
		}
	}
	if len(ranks) < 2 {
		t.Fatalf("ranks %v: the fixture should give different ranks", ranks)
	}
	if l.cfg.R != rep.Rank || len(l.cfg.RankPattern) == 0 || len(l.cfg.RankPattern) != len(l.cfg.AlphaPattern) {
		t.Fatalf("r %d (report %d) rank_pattern %v alpha_pattern %v", l.cfg.R, rep.Rank, l.cfg.RankPattern, l.cfg.AlphaPattern)
	}
	if rep.ParamsAfter >= rep.ParamsBefore || rep.Kept < math.Sqrt(0.9) {
		t.Errorf("params %d -> %d, kept %v", rep.ParamsBefore, rep.ParamsAfter, rep.Kept)
	}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil || !bytes.Contains(buf.Bytes(), []byte("new rank")) {
		t.Errorf("text report: %v\n%s", err, buf.String())
	}
}

func TestRankRules(t *testing.T) {
	s := []float64{10, 5, 2, 1, 0.5, 0}
	for _, c := range []struct {
		rule RankRule
		want int
	}{
		{RankRule{Method: RankFixed, Rank: 3}, 3},
		{RankRule{Method: RankFixed, Rank: 99}, 6},
		{RankRule{Method: RankEnergy, Param: 0.8}, 2},    // 100/130.25 = 0.768 < 0.8 <= 125/130.25
		{RankRule{Method: RankEnergy, Param: 0.99}, 3},   // 129/130.25 = 0.9904
		{RankRule{Method: RankEnergy, Param: 1}, 5},      // the zero singular value adds nothing
		{RankRule{Method: RankThreshold, Param: 0.2}, 3}, // σ >= 2
		{RankRule{Method: RankThreshold, Param: 0.21}, 2},
		{RankRule{Method: RankSVRatio, Param: 5}, 2},        // σ > 2: kohya's strict >
		{RankRule{Method: RankSVRatio, Param: 1000}, 5},     // zeros never pass
		{RankRule{Method: RankSVFro, Param: 0.9}, 2},        // (100+25)/130.25 = 0.9597 >= 0.81
		{RankRule{Method: RankSVCumulative, Param: 0.9}, 3}, // 17/18.5 = 0.919
		{RankRule{Method: RankSVCumulative, Param: 0.9, Rank: 2}, 2},
	} {
		want := c.want
		if err := c.rule.Validate(); err != nil {
			t.Fatalf("%+v: %v", c.rule, err)
		}
		if got := c.rule.Choose(s); got != want {
			t.Errorf("%+v: rank %d, want %d", c.rule, got, want)
		}
	}
	// A zero delta keeps one (zero) triplet, whatever the rule.
	if got := (RankRule{Method: RankEnergy, Param: 0.5}).Choose([]float64{0, 0}); got != 1 {
		t.Errorf("zero spectrum: rank %d", got)
	}
	// energy F is kohya's sv_fro with √F.
	rng := rand.New(rand.NewPCG(1, 1))
	for i := 0; i < 200; i++ {
		sv := make([]float64, 16)
		for j := range sv {
			sv[j] = math.Exp(-rng.Float64() * 5)
		}
		slicesSortDesc(sv)
		f := rng.Float64()
		a := RankRule{Method: RankEnergy, Param: f}.Choose(sv)
		b := RankRule{Method: RankSVFro, Param: math.Sqrt(f)}.Choose(sv)
		if a != b && math.Abs(keptFraction(sv, min(a, b))-math.Sqrt(f)) > 1e-12 {
			t.Fatalf("energy %v: rank %d, sv_fro √: %d", f, a, b)
		}
	}
	for _, bad := range []RankRule{
		{Method: RankFixed}, {Method: RankEnergy, Param: 0}, {Method: RankEnergy, Param: 1.5},
		{Method: RankThreshold, Param: -1}, {Method: RankSVRatio, Param: 0.5}, {Method: "best"},
		{Method: RankSVFro, Param: math.NaN()}, {Method: RankEnergy, Param: 0.5, Rank: -1},
	} {
		if err := bad.Validate(); !errors.Is(err, ErrOption) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

func slicesSortDesc(s []float64) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] > s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestResizeRefusesDoRA(t *testing.T) {
	fx := testbin.Fixtures(t)
	_, err := Resize(t.Context(), ResizeOptions{Adapter: filepath.Join(fx, "peft", "dora"), Rule: RankRule{Method: RankFixed, Rank: 2}, Output: filepath.Join(t.TempDir(), "o")})
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("DoRA: %v", err)
	}
}

// TestResizeFixture: the PEFT 0.21 fixture adapter resized to its own rank
// merges into the base like the original (through pkg/merge's math).
func TestResizeFixture(t *testing.T) {
	fx := testbin.Fixtures(t)
	in := filepath.Join(fx, "peft", "lora")
	out := filepath.Join(t.TempDir(), "out")
	if _, err := Resize(t.Context(), ResizeOptions{Adapter: in, Rule: RankRule{Method: RankFixed, Rank: 8}, Output: out}); err != nil {
		t.Fatal(err)
	}
	a, b := load(t, in), load(t, out)
	for path, f := range a.mods {
		if e := relErr(b.mods[path].delta(), f.delta()); e > 1e-6 {
			t.Errorf("%s: %g", path, e)
		}
	}
	merged := mergeBase(t, filepath.Join(fx, "peft", "tiny"), []Input{{out, 1}})
	ref, _ := readTensors(t, filepath.Join(fx, "peft", "lora-merged"))
	for name, w := range ref {
		g := merged[name]
		for i := range w {
			if !withinULP(g[i], w[i], 2) && math.Abs(float64(g[i]-w[i])) > 1e-6 {
				t.Fatalf("%s[%d]: merged resized %v, PEFT merge of the original %v", name, i, g[i], w[i])
			}
		}
	}
}

// TestFanInFanOutAndDType: a GPT-2-style adapter (fan_in_fan_out, Conv1D
// c_attn) keeps its flag through resize and combine (the flag only says how
// the base stores W; ΔW = s·B·A either way), and a bf16 output rounds the
// factors once.
func TestFanInFanOutAndDType(t *testing.T) {
	rng := rand.New(rand.NewPCG(121, 122))
	dir := t.TempDir()
	m := randModule(rng, "transformer.h.0.attn.c_attn", 16, 48, 4)
	in := writeAdapter(t, filepath.Join(dir, "gpt2"), map[string]any{"r": 4, "lora_alpha": 8, "fan_in_fan_out": true, "target_modules": []string{"c_attn"}}, []tmod{m}, nil)
	out := filepath.Join(dir, "bf16")
	if _, err := Resize(t.Context(), ResizeOptions{Adapter: in, Rule: RankRule{Method: RankFixed, Rank: 4}, Output: out, DType: "BF16"}); err != nil {
		t.Fatal(err)
	}
	l := load(t, out)
	if !l.cfg.FanInFanOut {
		t.Error("fan_in_fan_out lost")
	}
	info, _, err := l.src.Tensor(peft.Prefix + m.path + ".lora_A.weight")
	if err != nil || info.DType != "BF16" {
		t.Fatalf("dtype %v: %v", info.DType, err)
	}
	if e := relErr(l.mods[m.path].delta(), tmodDelta(m, 2)); e > 1e-2 {
		t.Errorf("bf16 resize error %g", e)
	}
	cat := filepath.Join(dir, "cat")
	mustCombine(t, CombineOptions{Adapters: []Input{{in, 1}, {out, -1}}, Method: Cat, Output: cat})
	// in − bf16(in): the rounding error of the bf16 factors, exactly.
	want := tmodDelta(m, 2)
	addScaled(want, -1, l.mods[m.path].delta())
	c := load(t, cat)
	if !c.cfg.FanInFanOut {
		t.Error("fan_in_fan_out lost by combine")
	}
	if e := relErr(c.mods[m.path].delta(), want); e > 1e-5 {
		t.Errorf("cat of an adapter and its negated bf16 copy: error %g of the rounding difference", e)
	}
}
