package adapterops

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/tool"
)

func TestDiffWithItself(t *testing.T) {
	in, mods, _ := resizeFixture(t)
	rep, err := Diff(t.Context(), DiffOptions{A: in, B: in})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Modules) != len(mods) || len(rep.OnlyA)+len(rep.OnlyB) != 0 || rep.Summary.Identical != len(mods) {
		t.Fatalf("%+v", rep.Summary)
	}
	for _, m := range rep.Modules {
		if !m.Identical || *m.Relative != 0 || *m.Cosine != 1 || m.NormA != m.NormB {
			t.Errorf("%s: %+v", m.Module, m)
		}
	}
	if *rep.Summary.Relative != 0 || math.Abs(*rep.Summary.Cosine-1) > 1e-15 {
		t.Errorf("summary %v %v", *rep.Summary.Relative, *rep.Summary.Cosine)
	}
}

// TestDiffScaledCopy: doubling lora_alpha doubles ΔW: cosine 1, relative
// difference 1, exactly from the factors.
func TestDiffScaledCopy(t *testing.T) {
	rng := rand.New(rand.NewPCG(71, 72))
	dir := t.TempDir()
	mods := []tmod{randModule(rng, qProj, 30, 20, 6), randModule(rng, vProj, 30, 8, 6)}
	a := writeAdapter(t, filepath.Join(dir, "a"), map[string]any{"r": 6, "lora_alpha": 6}, mods, nil)
	b := writeAdapter(t, filepath.Join(dir, "b"), map[string]any{"r": 6, "lora_alpha": 12}, mods, nil)
	rep, err := Diff(t.Context(), DiffOptions{A: a, B: b})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range rep.Modules {
		if m.Identical || math.Abs(*m.Cosine-1) > 1e-12 || math.Abs(*m.Relative-1) > 1e-12 || math.Abs(m.NormB-2*m.NormA) > 1e-12*m.NormB {
			t.Errorf("%s: cosine %v relative %v norms %v %v", m.Module, *m.Cosine, *m.Relative, m.NormA, m.NormB)
		}
	}
}

// TestDiffMatchesDense compares every number with the formed ΔW, on two
// adapters of different ranks, alphas and rsLoRA, with modules only one
// of them has.
func TestDiffMatchesDense(t *testing.T) {
	_, a1, a2, p1, p2 := twoAdapters(t)
	rep, err := Diff(t.Context(), DiffOptions{A: p1, B: p2, Env: tool.Env{Threads: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.OnlyA) != 1 || rep.OnlyA[0] != q1 || len(rep.OnlyB) != 0 || len(rep.Modules) != 2 {
		t.Fatalf("only A %v only B %v modules %d", rep.OnlyA, rep.OnlyB, len(rep.Modules))
	}
	for i, m := range rep.Modules {
		x, y := tmodDelta(a1[i], s1), tmodDelta(a2[i], s2)
		if m.Module != a1[i].path {
			t.Fatalf("module %d is %s", i, m.Module)
		}
		var dot, nx, ny, nd float64
		for j := range x.Data {
			dot += x.Data[j] * y.Data[j]
			nx += x.Data[j] * x.Data[j]
			ny += y.Data[j] * y.Data[j]
			e := x.Data[j] - y.Data[j]
			nd += e * e
		}
		if c := dot / math.Sqrt(nx*ny); math.Abs(*m.Cosine-c) > 1e-12 {
			t.Errorf("%s: cosine %v, dense %v", m.Module, *m.Cosine, c)
		}
		if r := math.Sqrt(nd / nx); math.Abs(*m.Relative-r) > 1e-12*r {
			t.Errorf("%s: relative %v, dense %v", m.Module, *m.Relative, r)
		}
		if math.Abs(m.NormA-math.Sqrt(nx)) > 1e-12*m.NormA || math.Abs(m.NormB-math.Sqrt(ny)) > 1e-12*m.NormB {
			t.Errorf("%s: norms %v %v, dense %v %v", m.Module, m.NormA, m.NormB, math.Sqrt(nx), math.Sqrt(ny))
		}
	}
	// The JSON form starts with the schema; the text has the summary.
	js, err := json.Marshal(rep)
	if err != nil || !bytes.HasPrefix(js, []byte(`{"schema":1,`)) {
		t.Fatalf("JSON %s: %v", js, err)
	}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"only in A (1): " + q1, "compared 2 modules", "most changed: ", "least changed: ", "cosine"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, buf.String())
		}
	}
}

// TestDiffNearlyEqual: a tiny change is measured to full relative accuracy
// (the difference is factored, not subtracted from two norms).
func TestDiffNearlyEqual(t *testing.T) {
	rng := rand.New(rand.NewPCG(81, 82))
	dir := t.TempDir()
	m := randModule(rng, qProj, 64, 48, 8)
	m2 := m
	m2.b = append([]float32(nil), m.b...)
	m2.b[5] = math.Nextafter32(m2.b[5], 10) // one ulp in one entry
	a := writeAdapter(t, filepath.Join(dir, "a"), map[string]any{"r": 8}, []tmod{m}, nil)
	b := writeAdapter(t, filepath.Join(dir, "b"), map[string]any{"r": 8}, []tmod{m2}, nil)
	rep, err := Diff(t.Context(), DiffOptions{A: a, B: b})
	if err != nil {
		t.Fatal(err)
	}
	d := rep.Modules[0]
	// ΔW_A − ΔW_B = s·(b₅ − b₅')·e_o·A_k: its norm is s·|δ|·‖row k of A‖.
	r, in := 8, 64
	k := 5 % r // B[0][5]: column 5
	var rowNorm float64
	for _, v := range m.a[k*in : (k+1)*in] {
		rowNorm += float64(v) * float64(v)
	}
	want := float64(m2.b[5]-m.b[5]) * math.Sqrt(rowNorm) // s = 1 (alpha 8 = r)
	if got := *d.Relative * d.NormA; math.Abs(got-want) > 1e-6*want {
		t.Errorf("‖ΔW_A − ΔW_B‖ = %v, want %v", got, want)
	}
}

func TestDiffFixtures(t *testing.T) {
	fx := testbin.Fixtures(t)
	// The trained adapter (q, k, v, o) against the all-linear fixture.
	rep, err := Diff(t.Context(), DiffOptions{A: filepath.Join(fx, "peft", "train", "plain", "init"), B: filepath.Join(fx, "peft", "train", "plain", "final")})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Summary.Compared != 8 || len(rep.OnlyA) != 0 {
		t.Fatalf("%+v", rep.Summary)
	}
	// init has B = 0: ΔW_A is zero, so there is no relative difference
	// or cosine.
	for _, m := range rep.Modules {
		if m.NormA != 0 || m.Relative != nil || m.Cosine != nil || m.NormB == 0 {
			t.Errorf("%s: %+v", m.Module, m)
		}
	}
	rep, err = Diff(t.Context(), DiffOptions{A: filepath.Join(fx, "peft", "lora"), B: filepath.Join(fx, "peft", "train", "plain", "final")})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Summary.Compared != 8 || len(rep.OnlyA) != 6 || len(rep.Summary.MostChanged) != 3 {
		t.Fatalf("%+v, only in A %v", rep.Summary, rep.OnlyA)
	}
	// DoRA adapters can be compared: the magnitude vectors are reported.
	dora := filepath.Join(fx, "peft", "dora")
	rep, err = Diff(t.Context(), DiffOptions{A: dora, B: dora})
	if err != nil {
		t.Fatal(err)
	}
	if m := rep.Modules[0]; m.Magnitude == nil || *m.Magnitude != 0 {
		t.Errorf("DoRA magnitude %v", m.Magnitude)
	}
}
