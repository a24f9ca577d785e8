package arch

import (
	"encoding/json"
	"math"
	"os"
	"testing"

	"github.com/lorakit/lorakit/pkg/dtype"
)

// ropeGolden holds values computed by testdata/rope_ref.py with PyTorch 1.13
// from transformers' formulas, as float32 bit patterns.
type ropeGolden struct {
	InvFreq  map[string][]uint32 `json:"inv_freq"`
	Cos, Sin map[string]struct {
		Positions []int
		Bits      []uint32
	}
	AttentionFactor map[string]uint64            `json:"attention_factor"`
	Llama3Factors   map[string][]uint32          `json:"llama3_factors"`
	EmbedScale      map[string]map[string]uint32 `json:"embed_scale"`
}

func loadRopeGolden(t *testing.T) *ropeGolden {
	t.Helper()
	b, err := os.ReadFile("testdata/rope_golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g ropeGolden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return &g
}

// ulps is the distance between two float32 values in units in the last place.
func ulps(a, b float32) int64 {
	ia, ib := int64(math.Float32bits(a)), int64(math.Float32bits(b))
	if (ia < 0x80000000) != (ib < 0x80000000) {
		return math.MaxInt32
	}
	if ia > ib {
		return ia - ib
	}
	return ib - ia
}

// goldenRopes are the ropes of the golden cases, from real configs where
// there is one.
func goldenRopes(t *testing.T) map[string]struct {
	rope *Rope
	seq  int
} {
	t.Helper()
	shape := func(name string, layer int) *Rope {
		c, err := Shape(name)
		if err != nil {
			t.Fatal(err)
		}
		return c.Attention[layer].Rope
	}
	def := func(theta float64, dims int) *Rope {
		return &Rope{Type: RopeDefault, Theta: theta, Dims: dims, AttentionFactor: 1}
	}
	gemma3Global := shape("gemma3-4b", 5)
	if gemma3Global.Type != RopeLinear {
		t.Fatalf("gemma3-4b layer 5 rope %v, want the linear global rope", gemma3Global)
	}
	type rs = struct {
		rope *Rope
		seq  int
	}
	return map[string]rs{
		"default-10000-128": {def(10000, 128), 1},
		"default-1e6-128":   {shape("qwen3-8b", 0), 1},
		"default-10000-256": {shape("gemma3-4b", 0), 1},
		"default-10000-96":  {def(10000, 96), 1},
		"linear-1e6-256-x8": {gemma3Global, 1},
		"llama3-8b":         {shape("llama3-8b", 0), 1},
		"llama3.2-1b":       {shape("llama3.2-1b", 0), 1},
		"phi3.5-seq4096":    {shape("phi3.5-mini", 0), 4096},
		"phi3.5-seq4097":    {shape("phi3.5-mini", 0), 4097},
	}
}

func TestRopeInvFreqGolden(t *testing.T) {
	g := loadRopeGolden(t)
	ropes := goldenRopes(t)
	for name, want := range g.InvFreq {
		r, ok := ropes[name]
		if !ok {
			t.Errorf("%s: no Go case", name)
			continue
		}
		got := r.rope.InvFreq(r.seq)
		if len(got) != len(want) {
			t.Fatalf("%s: %d frequencies, want %d", name, len(got), len(want))
		}
		worst := int64(0)
		for i, w := range want {
			// PyTorch's vectorized pow is within 1 ulp; the rest is exact.
			if d := ulps(got[i], math.Float32frombits(w)); d > worst {
				worst = d
			}
		}
		if worst > 1 {
			t.Errorf("%s: inv_freq off by %d ulps", name, worst)
		}
	}
}

func TestRopeCosSinGolden(t *testing.T) {
	g := loadRopeGolden(t)
	ropes := goldenRopes(t)
	for name, want := range g.Cos {
		r := ropes[name]
		ws := g.Sin[name]
		scale := float32(r.rope.AttentionFactor)
		// From PyTorch's own frequencies the tables agree to an ulp of the
		// result (libm against PyTorch's vectorized cos/sin).
		torchInv := make([]float32, len(g.InvFreq[name]))
		for i, b := range g.InvFreq[name] {
			torchInv[i] = math.Float32frombits(b)
		}
		cos, sin := cosSin(torchInv, want.Positions, scale)
		// End to end, a one-ulp difference of a frequency (pow) moves an angle
		// by up to 2^-23 of itself.
		cosE, sinE := r.rope.CosSin(want.Positions, r.seq)
		if len(cos) != len(want.Bits) || len(cosE) != len(want.Bits) {
			t.Fatalf("%s: %d values, want %d", name, len(cos), len(want.Bits))
		}
		dims := r.rope.Dims
		for i := range cos {
			wc, wsn := math.Float32frombits(want.Bits[i]), math.Float32frombits(ws.Bits[i])
			if math.Abs(float64(cos[i]-wc)) > 1.2e-7*float64(scale) || math.Abs(float64(sin[i]-wsn)) > 1.2e-7*float64(scale) {
				t.Errorf("%s: [%d] cos, sin = %g, %g; want %g, %g", name, i, cos[i], sin[i], wc, wsn)
			}
			angle := float64(torchInv[i%dims%(dims/2)]) * float64(want.Positions[i/dims])
			tol := float64(scale) * (1.2e-7 + 2.4e-7*angle)
			if math.Abs(float64(cosE[i]-wc)) > tol || math.Abs(float64(sinE[i]-wsn)) > tol {
				t.Errorf("%s: [%d] end to end cos, sin = %g, %g; want %g, %g", name, i, cosE[i], sinE[i], wc, wsn)
			}
		}
	}
}

func TestLongRoPEAttentionFactor(t *testing.T) {
	g := loadRopeGolden(t)
	r := goldenRopes(t)["phi3.5-seq4096"].rope
	if want := math.Float64frombits(g.AttentionFactor["phi3.5"]); r.AttentionFactor != want {
		t.Errorf("attention factor %v, want %v", r.AttentionFactor, want)
	}
	if r.UsesLong(4096) || !r.UsesLong(4097) {
		t.Errorf("LongRoPE switches at %d positions", r.OriginalMaxPositions)
	}
	// attention_factor in the config wins over the formula; ≤ 1 extension gives 1.
	for _, tc := range []struct {
		factor float64
		orig   int
		want   float64
	}{{1, 4096, 1}, {0.5, 4096, 1}, {32, 4096, math.Sqrt(1 + math.Log(32)/math.Log(4096))}} {
		if got := longRopeAttentionFactor(tc.factor, tc.orig); got != tc.want {
			t.Errorf("attention factor(%v, %d) = %v, want %v", tc.factor, tc.orig, got, tc.want)
		}
	}
}

func TestLlama3FactorsGolden(t *testing.T) {
	g := loadRopeGolden(t)
	ropes := goldenRopes(t)
	for name, want := range g.Llama3Factors {
		got := ropes[name].rope.Llama3Factors()
		for i, w := range want {
			if d := ulps(got[i], math.Float32frombits(w)); d > 1 {
				t.Errorf("%s: factor %d = %g, want %g", name, i, got[i], math.Float32frombits(w))
			}
		}
	}
}

func TestEmbedScaleGolden(t *testing.T) {
	g := loadRopeGolden(t)
	for h, byType := range g.EmbedScale {
		var hidden int
		if err := json.Unmarshal([]byte(h), &hidden); err != nil {
			t.Fatal(err)
		}
		for name, d := range map[string]dtype.DType{"bfloat16": dtype.BF16, "float16": dtype.F16, "float32": dtype.F32, "bfloat16_via_f32": dtype.BF16} {
			if got, want := EmbedScaleValue(hidden, d), math.Float32frombits(byType[name]); got != want {
				t.Errorf("√%d in %s: %g, want %g", hidden, name, got, want)
			}
		}
	}
}
