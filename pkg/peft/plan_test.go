package peft

import (
	"errors"
	"testing"

	"github.com/lorakit/lorakit/pkg/arch"
)

// shape parses a built-in shape of the registry.
func shape(t testing.TB, name string) *arch.Config {
	t.Helper()
	c, err := arch.Shape(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tinyLlama is the fixtures' tiny Llama: hidden 64, intermediate 128, 4×16
// q heads, 2×16 kv heads, vocab 256.
func tinyLlama(t testing.TB) *arch.Config {
	t.Helper()
	c, err := arch.ParseConfig([]byte(`{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,"vocab_size":256}`))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var llamaProjections = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

// Expected lines are PEFT's print_trainable_parameters (spec §9).
func TestPlanLlama(t *testing.T) {
	llama3_8B, llama32_1B := shape(t, "llama3-8b"), shape(t, "llama3.2-1b")
	for _, tc := range []struct {
		name      string
		dims      *arch.Config
		opts      PlanOptions
		trainable int64
		line      string
	}{
		{"8B qkvo", llama3_8B, PlanOptions{Rank: 16, Alpha: 32, Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj"}}, 13631488,
			"trainable params: 13,631,488 || all params: 8,043,892,736 || trainable%: 0.1695"},
		{"8B qv", llama3_8B, PlanOptions{Rank: 16, Alpha: 32, Targets: []string{"q_proj", "v_proj"}}, 6815744, ""},
		{"8B all-linear", llama3_8B, PlanOptions{Rank: 16, Alpha: 32, Targets: []string{"all-linear"}}, 41943040,
			"trainable params: 41,943,040 || all params: 8,072,204,288 || trainable%: 0.5196"},
		{"8B seven by name", llama3_8B, PlanOptions{Rank: 16, Alpha: 32, Targets: llamaProjections}, 41943040, ""},
		{"1B tied qkvo", llama32_1B, PlanOptions{Rank: 16, Alpha: 32, Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj"}}, 3407872,
			"trainable params: 3,407,872 || all params: 1,239,222,272 || trainable%: 0.2750"},
		// DoRA adds out per module: q 4096, k 1024, v 1024, o 4096 per layer.
		{"8B qkvo dora", llama3_8B, PlanOptions{Rank: 16, Alpha: 32, Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj"}, DoRA: true},
			13631488 + 32*(4096+1024+1024+4096), ""},
		{"8B embed lm_head", llama3_8B, PlanOptions{Rank: 8, Alpha: 16, Targets: []string{"embed_tokens", "lm_head"}},
			2 * 8 * (128256 + 4096), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPlan(tc.dims, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if p.Trainable != tc.trainable {
				t.Errorf("trainable %d, want %d", p.Trainable, tc.trainable)
			}
			var sum int64
			for _, e := range p.Entries {
				sum += e.Params
				if e.Params != e.PerModule*int64(e.Count) {
					t.Errorf("%s: %d != %d·%d", e.Module, e.Params, e.PerModule, e.Count)
				}
			}
			if sum != p.Trainable {
				t.Errorf("Σ entries %d != %d", sum, p.Trainable)
			}
			if tc.line != "" && p.String() != tc.line {
				t.Errorf("got  %s\nwant %s", p.String(), tc.line)
			}
			if p.Scaling != 2 {
				t.Errorf("scaling %v", p.Scaling)
			}
		})
	}
}

func TestPlanPerType(t *testing.T) {
	p, err := NewPlan(shape(t, "llama3-8b"), PlanOptions{Rank: 16, Alpha: 32, Targets: []string{"all-linear"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{ // r·(in+out)·32 layers
		"q_proj": 16 * (4096 + 4096) * 32, "k_proj": 16 * (4096 + 1024) * 32, "v_proj": 16 * (4096 + 1024) * 32,
		"o_proj": 16 * (4096 + 4096) * 32, "gate_proj": 16 * (4096 + 14336) * 32, "up_proj": 16 * (4096 + 14336) * 32,
		"down_proj": 16 * (14336 + 4096) * 32,
	}
	if len(p.Entries) != 7 {
		t.Fatalf("entries %+v", p.Entries)
	}
	for i, e := range p.Entries {
		if e.Module != llamaProjections[i] || e.Params != want[e.Module] {
			t.Errorf("entry %d: %+v, want %s %d", i, e, llamaProjections[i], want[llamaProjections[i]])
		}
	}
}

func TestPlanErrors(t *testing.T) {
	llama3_8B := shape(t, "llama3-8b")
	if _, err := NewPlan(llama3_8B, PlanOptions{Rank: 16, Targets: []string{"qkv_proj"}}); !errors.Is(err, arch.ErrTarget) {
		t.Errorf("unknown target: %v", err)
	}
	if _, err := NewPlan(llama3_8B, PlanOptions{Rank: 16}); !errors.Is(err, arch.ErrTarget) {
		t.Errorf("no targets: %v", err)
	}
	if _, err := NewPlan(llama3_8B, PlanOptions{Rank: 0, Targets: []string{"q_proj"}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("rank 0: %v", err)
	}
}

func TestPlanTiny(t *testing.T) {
	// PEFT's "all params" of the fixture's tiny Llama (123,200) minus its
	// 16,384 LoRA parameters.
	p, err := NewPlan(tinyLlama(t), PlanOptions{Rank: 8, Alpha: 16, Targets: []string{"all-linear"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Base != 123200-16384 || p.Trainable != 16384 || p.All() != 123200 {
		t.Errorf("tiny plan %d/%d, base %d", p.Trainable, p.All(), p.Base)
	}
}

// TestPlanFused counts LoRA on Phi-3's fused modules as PEFT does: one A
// (r × hidden) and one B (fused out × r) per module, DoRA one magnitude
// over the fused output.
func TestPlanFused(t *testing.T) {
	phi := shape(t, "phi3.5-mini") // hidden 3072, 32 heads of 96, 32 kv heads, intermediate 8192
	p, err := NewPlan(phi, PlanOptions{Rank: 16, Alpha: 32, Targets: []string{"all-linear"}, DoRA: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{
		"o_proj": 16*(3072+3072) + 3072, "qkv_proj": 16*(3072+9216) + 9216,
		"gate_up_proj": 16*(3072+16384) + 16384, "down_proj": 16*(8192+3072) + 3072,
	}
	if len(p.Entries) != len(want) {
		t.Fatalf("entries %+v", p.Entries)
	}
	for _, e := range p.Entries {
		if e.PerModule != want[e.Module] || e.Count != 32 {
			t.Errorf("%s: %d per module × %d, want %d × 32", e.Module, e.PerModule, e.Count, want[e.Module])
		}
	}
}

func TestFormatTrainable(t *testing.T) {
	for _, tc := range []struct {
		tr, all int64
		want    string
	}{
		{16384, 123200, "trainable params: 16,384 || all params: 123,200 || trainable%: 13.2987"},
		{0, 0, "trainable params: 0 || all params: 0 || trainable%: 0.0000"},
		{999, 1000, "trainable params: 999 || all params: 1,000 || trainable%: 99.9000"},
		{-1234567, 1, "trainable params: -1,234,567 || all params: 1 || trainable%: -123456700.0000"},
	} {
		if got := FormatTrainable(tc.tr, tc.all); got != tc.want {
			t.Errorf("FormatTrainable(%d, %d) = %q, want %q", tc.tr, tc.all, got, tc.want)
		}
	}
}
