package peft

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"testing"
)

// matchCases are expected outcomes computed by Python's re on a
// transliteration of PEFT's check_target_module_exists and get_pattern_key
// (testdata/gen_match_cases.py).
type matchCases struct {
	Names   []string
	Linear  []bool
	Targets []struct {
		Config json.RawMessage
		Want   []bool
	}
	Patterns []struct {
		Keys []string
		Want []string
	}
}

func loadMatchCases(t *testing.T) matchCases {
	b, err := os.ReadFile("testdata/match_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var mc matchCases
	if err := json.Unmarshal(b, &mc); err != nil {
		t.Fatal(err)
	}
	return mc
}

func TestMatchTargetPython(t *testing.T) {
	mc := loadMatchCases(t)
	for _, tc := range mc.Targets {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(tc.Config, &m); err != nil {
			t.Fatal(err)
		}
		m["peft_type"] = json.RawMessage(`"LORA"`)
		b, _ := json.Marshal(m)
		c, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", tc.Config, err)
		}
		for i, name := range mc.Names {
			got, err := MatchTarget(c, name, mc.Linear[i])
			if err != nil {
				t.Fatalf("%s: %v", tc.Config, err)
			}
			if got != tc.Want[i] {
				t.Errorf("config %s, module %q (linear %v): got %v, PEFT %v", tc.Config, name, mc.Linear[i], got, tc.Want[i])
			}
		}
	}
}

func TestPatternKeyPython(t *testing.T) {
	mc := loadMatchCases(t)
	for _, tc := range mc.Patterns {
		c := NewLoraConfig(8, 16, Names("q_proj"))
		for i, k := range tc.Keys {
			c.RankPattern = append(c.RankPattern, RankEntry{k, 100 + i})
			c.AlphaPattern = append(c.AlphaPattern, AlphaEntry{Pattern: k, Alpha: float64(200 + i)})
		}
		m, err := NewMatcher(c)
		if err != nil {
			t.Fatal(err)
		}
		for j, name := range mc.Names {
			wantRank, wantAlpha := 8, 16.0
			for i, k := range tc.Keys {
				if k == tc.Want[j] {
					wantRank, wantAlpha = 100+i, float64(200+i)
					break
				}
			}
			if got := m.Rank(name); got != wantRank {
				t.Errorf("keys %q, module %q: rank %d, want %d (PEFT key %q)", tc.Keys, name, got, wantRank, tc.Want[j])
			}
			if got := m.Alpha(name); got != wantAlpha {
				t.Errorf("keys %q, module %q: alpha %v, want %v", tc.Keys, name, got, wantAlpha)
			}
		}
	}
}

// TestRankAlphaIndependent: PEFT ≥ 0.14 looks rank and alpha up separately.
func TestRankAlphaIndependent(t *testing.T) {
	c := NewLoraConfig(8, 16, Names("q_proj", "v_proj", "down_proj"))
	c.UseRSLoRA = true
	c.RankPattern = []RankEntry{{"v_proj", 4}}
	c.AlphaPattern = []AlphaEntry{{Pattern: "down_proj", Alpha: 32}}
	m, err := NewMatcher(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		rank  int
		alpha float64
	}{
		{"model.layers.0.self_attn.q_proj", 8, 16},
		{"model.layers.0.self_attn.v_proj", 4, 16},
		{"model.layers.0.mlp.down_proj", 8, 32},
	} {
		if r, a := m.Rank(tc.name), m.Alpha(tc.name); r != tc.rank || a != tc.alpha {
			t.Errorf("%s: rank %d alpha %v, want %d %v", tc.name, r, a, tc.rank, tc.alpha)
		}
		want := float32(tc.alpha / math.Sqrt(float64(tc.rank)))
		if s := m.Scaling(tc.name, tc.rank); s != want {
			t.Errorf("%s: scaling %v want %v", tc.name, s, want)
		}
	}
}

func TestScaling(t *testing.T) {
	for _, tc := range []struct {
		alpha  float64
		r      int
		rslora bool
		want   float32
	}{
		{16, 8, false, 2},
		{8, 4, false, 2},
		{32, 16, false, 2},
		{16, 3, false, float32(16.0 / 3.0)},
		{16, 8, true, float32(16 / math.Sqrt(8))}, // 5.656854...
		{1, 7, true, float32(1 / math.Sqrt(7))},
		{0.1, 3, false, float32(0.1 / 3.0)}, // one rounding from float64
		{16, 0, false, 0},
	} {
		if got := Scaling(tc.alpha, tc.r, tc.rslora); got != tc.want {
			t.Errorf("Scaling(%v, %d, %v) = %v, want %v", tc.alpha, tc.r, tc.rslora, got, tc.want)
		}
	}
	// float64 then one rounding, not float32 arithmetic: for these inputs the
	// two differ.
	if got, f32 := Scaling(0.1, 23, false), float32(0.1)/float32(23); got == f32 || got != float32(0.1/23.0) {
		t.Errorf("Scaling(0.1, 23) = %v (float32 arithmetic gives %v)", got, f32)
	}
	if got, f32 := Scaling(0.1, 3, true), float32(0.1)/float32(math.Sqrt(3)); got == f32 || got != float32(0.1/math.Sqrt(3)) {
		t.Errorf("Scaling(0.1, 3, rslora) = %v (float32 arithmetic gives %v)", got, f32)
	}
}

func TestLayerIndex(t *testing.T) {
	for _, tc := range []struct {
		name string
		want int
	}{
		{"model.layers.3.self_attn.q_proj", 3},
		{"model.layers.12.mlp.experts.0.w1", 12}, // first index, not the expert's
		{"transformer.h.7.attn.c_attn", 7},
		{"layers.0.q_proj", -1}, // needs two segments before the index
		{"model.layers.3", -1},  // needs a segment after
		{"lm_head", -1},
		{"model.language_model.layers.5.self_attn.q_proj", 5},
		{"a.b.007.c", 7},
	} {
		if got := LayerIndex(tc.name); got != tc.want {
			t.Errorf("LayerIndex(%q) = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestMatcherErrors(t *testing.T) {
	c := NewLoraConfig(8, 16, Pattern(`(?!lm_head).*`))
	if _, err := MatchTarget(c, "q_proj", true); !errors.Is(err, ErrUnsupportedPattern) {
		t.Errorf("look-ahead target: %v", err)
	}
	c = NewLoraConfig(8, 16, Names("q_proj"))
	c.LayersToTransform = []int{1}
	c.LayersPattern = Pattern(`(?<=x)`)
	if _, err := NewMatcher(c); !errors.Is(err, ErrUnsupportedPattern) {
		t.Errorf("look-behind layers_pattern: %v", err)
	}
}

func TestDefaultTargetModules(t *testing.T) {
	if got := DefaultTargetModules("llama"); len(got) != 2 || got[0] != "q_proj" || got[1] != "v_proj" {
		t.Errorf("llama: %v", got)
	}
	if got := DefaultTargetModules("gpt2"); len(got) != 1 || got[0] != "c_attn" {
		t.Errorf("gpt2: %v", got)
	}
	if DefaultTargetModules("unknown") != nil {
		t.Error("unknown model type")
	}
}
