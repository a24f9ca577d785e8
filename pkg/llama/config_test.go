package llama

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/lorakit/lorakit/pkg/compute"
)

func TestRopeInvFreq(t *testing.T) {
	c := Config{Hidden: 4096, Intermediate: 14336, Layers: 32, Heads: 32, KVHeads: 8, HeadDim: 128, Vocab: 128256,
		RMSEps: 1e-5, RopeTheta: 500000,
		RopeScaling: &RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 8192}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	got := c.RopeInvFreq()
	plain := c
	plain.RopeScaling = nil
	base := plain.RopeInvFreq()
	var high, mid, low int
	for i := range got {
		// Reference in float64 (transformers' _compute_llama3_parameters).
		f := 1 / math.Pow(500000, float64(2*i)/128)
		if e := math.Abs(float64(base[i])-f) / f; e > 2e-7 {
			t.Errorf("default inv_freq[%d] = %v, want %v", i, base[i], f)
		}
		wave := 2 * math.Pi / f
		want := f
		switch {
		case wave < 8192/4.0:
			high++
		case wave > 8192/1.0:
			low++
			want = f / 8
		default:
			mid++
			s := (8192/wave - 1) / (4 - 1)
			want = (1-s)*f/8 + s*f
		}
		if e := math.Abs(float64(got[i])-want) / want; e > 1e-6 {
			t.Errorf("llama3 inv_freq[%d] = %v, want %v", i, got[i], want)
		}
	}
	if high == 0 || mid == 0 || low == 0 || got[0] != 1 {
		t.Errorf("bands high %d, medium %d, low %d; inv_freq[0] = %v", high, mid, low, got[0])
	}
}

func TestConfigValidate(t *testing.T) {
	ok := tinyConfig()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"zero layers":  func(c *Config) { c.Layers = 0 },
		"gqa mismatch": func(c *Config) { c.KVHeads = 3 },
		"odd head dim": func(c *Config) { c.HeadDim = 15 },
		"no eps":       func(c *Config) { c.RMSEps = 0 },
		"nan theta":    func(c *Config) { c.RopeTheta = math.NaN() },
		"yarn":         func(c *Config) { c.RopeScaling = &RopeScaling{Type: "yarn", Factor: 2} },
		"bad llama3": func(c *Config) {
			c.RopeScaling = &RopeScaling{Type: "llama3", Factor: 8, LowFreqFactor: 4, HighFreqFactor: 1}
		},
		"huge vocab":     func(c *Config) { c.Vocab = 1 << 40 },
		"head dim guess": func(c *Config) { c.HeadDim = 0; c.Hidden = 66 },
	} {
		c := tinyConfig()
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
	c := tinyConfig()
	c.HeadDim = 0
	if err := c.Validate(); err != nil || c.headDim() != 16 {
		t.Errorf("head_dim from hidden/heads: %v, %d", err, c.headDim())
	}
}

func TestTargets(t *testing.T) {
	for tg := range numTargets {
		p, err := ParseTarget(tg.String())
		if err != nil || p != tg {
			t.Errorf("ParseTarget(%q) = %v, %v", tg.String(), p, err)
		}
	}
	if _, err := ParseTarget("lm_head"); !errors.Is(err, ErrAdapter) {
		t.Errorf("lm_head: %v", err)
	}
	if got := ModulePath(3, Gate); got != "model.layers.3.mlp.gate_proj" {
		t.Errorf("ModulePath = %q", got)
	}
	if got := ModulePath(0, O); got != "model.layers.0.self_attn.o_proj" {
		t.Errorf("ModulePath = %q", got)
	}
}

// zeroLoader serves zero tensors of any requested name with the given shape
// overrides.
func shapeLoader(cfg Config, wrong string) Loader {
	return func(name string) ([]float32, []int, error) {
		shape := []int{cfg.Hidden}
		switch {
		case name == "model.embed_tokens.weight" || name == "lm_head.weight":
			shape = []int{cfg.Vocab, cfg.Hidden}
		case len(name) > 7 && name[len(name)-7:] == ".weight" && !contains(name, "norm"):
			for tg := range numTargets {
				if contains(name, tg.String()) {
					o, i := cfg.shape(tg)
					shape = []int{o, i}
				}
			}
		}
		if name == wrong {
			shape = append(shape, 1)
		}
		n := 1
		for _, d := range shape {
			n *= d
		}
		return make([]float32, n), shape, nil
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestLoadErrors(t *testing.T) {
	cfg := tinyConfig()
	m, err := New(newCPU(), cfg, shapeLoader(cfg, ""), Options{})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	_, err = New(newCPU(), cfg, shapeLoader(cfg, "model.layers.1.mlp.up_proj.weight"), Options{})
	if !errors.Is(err, ErrWeight) || !contains(err.Error(), "up_proj") {
		t.Errorf("wrong shape: %v", err)
	}
	missing := func(name string) ([]float32, []int, error) {
		if name == "model.norm.weight" {
			return nil, nil, fmt.Errorf("%s: %w", name, ErrNotFound)
		}
		return shapeLoader(cfg, "")(name)
	}
	if _, err := New(newCPU(), cfg, missing, Options{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
	if _, err := New(newCPU(), cfg, shapeLoader(cfg, ""), Options{WeightDType: compute.I32}); !errors.Is(err, ErrConfig) {
		t.Errorf("I32 weights: %v", err)
	}
	tied := cfg
	tied.TieEmbeddings = true
	noHead := func(name string) ([]float32, []int, error) {
		if name == "lm_head.weight" {
			t.Errorf("tied model asked for lm_head")
		}
		return shapeLoader(cfg, "")(name)
	}
	if m, err := New(newCPU(), tied, noHead, Options{}); err != nil {
		t.Error(err)
	} else {
		m.Close()
	}
}

func TestAdapterAndBatchErrors(t *testing.T) {
	cfg := tinyConfig()
	m, err := New(newCPU(), cfg, shapeLoader(cfg, ""), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	b := Batch{Rows: 1, Seq: 3, IDs: []int32{1, 2, 3}, Labels: []int32{-100, 2, 3}}
	if _, _, err := m.ForwardBackward(b, Step{}); !errors.Is(err, ErrAdapter) {
		t.Errorf("no adapters: %v", err)
	}
	for name, s := range map[string]Adapter{
		"layer":    {Layer: 2, Target: Q, Rank: 4, Scale: 1},
		"rank":     {Layer: 0, Target: Q, Rank: 0, Scale: 1},
		"dropout":  {Layer: 0, Target: Q, Rank: 4, Scale: 1, Dropout: 1},
		"target":   {Layer: 0, Target: numTargets, Rank: 4, Scale: 1},
		"ia3 rank": {Layer: 0, Target: K, IA3: true, Rank: 4},
		"ff lora":  {Layer: 0, Target: Down, Rank: 4, Scale: 1, FeedForward: true},
	} {
		if err := m.AddAdapters([]Adapter{s}, randomAdapters(1)); !errors.Is(err, ErrAdapter) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := m.AddAdapters([]Adapter{{Layer: 0, Target: Q, Rank: 4, Scale: 1}}, randomAdapters(1)); err != nil {
		t.Fatal(err)
	}
	if err := m.AddAdapters([]Adapter{{Layer: 0, Target: Q, Rank: 4, Scale: 1}}, randomAdapters(1)); !errors.Is(err, ErrAdapter) {
		t.Errorf("second adapter on a module: %v", err)
	}
	if err := m.AddAdapters([]Adapter{{Layer: 1, Target: Q, Rank: 8, Scale: 1}}, randomAdapters(1)); !errors.Is(err, ErrWeight) {
		t.Errorf("rank 8 adapter given rank 4 tensors: %v", err)
	}
	// A failing call attaches nothing, and duplicates within a call are refused.
	if err := m.AddAdapters([]Adapter{{Layer: 1, Target: K, Rank: 4, Scale: 1}, {Layer: 1, Target: V, Rank: 8, Scale: 1}},
		randomAdapters(1)); !errors.Is(err, ErrWeight) || len(m.Params()) != 2 {
		t.Errorf("partial AddAdapters: %v, %d params", err, len(m.Params()))
	}
	if err := m.AddAdapters([]Adapter{{Layer: 1, Target: K, Rank: 4, Scale: 1}, {Layer: 1, Target: K, IA3: true}},
		randomAdapters(1)); !errors.Is(err, ErrAdapter) {
		t.Errorf("duplicate in one call: %v", err)
	}
	for name, bad := range map[string]Batch{
		"id range":    {Rows: 1, Seq: 3, IDs: []int32{1, 256, 3}, Labels: []int32{-100, 2, 3}},
		"label range": {Rows: 1, Seq: 3, IDs: []int32{1, 2, 3}, Labels: []int32{-100, -2, 3}},
		"lengths":     {Rows: 2, Seq: 3, IDs: []int32{1, 2, 3}, Labels: []int32{-100, 2, 3}},
		"no labels":   {Rows: 1, Seq: 3, IDs: []int32{1, 2, 3}},
		"shape":       {Rows: 0, Seq: 3},
	} {
		if _, _, err := m.ForwardBackward(bad, Step{}); !errors.Is(err, ErrBatch) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := m.Logits(b, make([]float32, 5)); !errors.Is(err, ErrBatch) {
		t.Errorf("logits destination: %v", err)
	}
	// All targets masked: no loss, no gradient, no error.
	sum, n, err := m.ForwardBackward(Batch{Rows: 1, Seq: 3, IDs: []int32{1, 2, 3}, Labels: []int32{1, -100, -100}}, Step{})
	if sum != 0 || n != 0 || err != nil {
		t.Errorf("masked batch: %v %v %v", sum, n, err)
	}
}
