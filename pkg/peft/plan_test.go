package peft

import (
	"errors"
	"testing"
)

var (
	llama3_8B  = LlamaDims{Hidden: 4096, Intermediate: 14336, Layers: 32, Heads: 32, KVHeads: 8, HeadDim: 128, Vocab: 128256}
	llama32_1B = LlamaDims{Hidden: 2048, Intermediate: 8192, Layers: 16, Heads: 32, KVHeads: 8, Vocab: 128256, TiedEmbeddings: true}
)

// Expected lines are PEFT's print_trainable_parameters (spec §9).
func TestPlanLlama(t *testing.T) {
	for _, tc := range []struct {
		name      string
		dims      LlamaDims
		opts      PlanOptions
		trainable int64
		line      string
	}{
		{"8B qkvo", llama3_8B, PlanOptions{Rank: 16, Alpha: 32, Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj"}}, 13631488,
			"trainable params: 13,631,488 || all params: 8,043,892,736 || trainable%: 0.1695"},
		{"8B qv", llama3_8B, PlanOptions{Rank: 16, Alpha: 32, Targets: []string{"q_proj", "v_proj"}}, 6815744, ""},
		{"8B all-linear", llama3_8B, PlanOptions{Rank: 16, Alpha: 32, Targets: []string{"all-linear"}}, 41943040,
			"trainable params: 41,943,040 || all params: 8,072,204,288 || trainable%: 0.5196"},
		{"8B seven by name", llama3_8B, PlanOptions{Rank: 16, Alpha: 32, Targets: LlamaProjections}, 41943040, ""},
		{"1B tied qkvo", llama32_1B, PlanOptions{Rank: 16, Alpha: 32, Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj"}}, 3407872,
			"trainable params: 3,407,872 || all params: 1,239,222,272 || trainable%: 0.2750"},
		// DoRA adds out per module: q 4096, k 1024, v 1024, o 4096 per layer.
		{"8B qkvo dora", llama3_8B, PlanOptions{Rank: 16, Alpha: 32, Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj"}, DoRA: true},
			13631488 + 32*(4096+1024+1024+4096), ""},
		{"8B embed lm_head", llama3_8B, PlanOptions{Rank: 8, Alpha: 16, Targets: []string{"embed_tokens", "lm_head"}},
			2 * 8 * (128256 + 4096), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := PlanLlama(tc.dims, tc.opts)
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
					t.Errorf("%s: %d != %d·%d", e.Type, e.Params, e.PerModule, e.Count)
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
	p, err := PlanLlama(llama3_8B, PlanOptions{Rank: 16, Alpha: 32, Targets: []string{"all-linear"}})
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
		if e.Type != LlamaProjections[i] || e.Params != want[e.Type] {
			t.Errorf("entry %d: %+v, want %s %d", i, e, LlamaProjections[i], want[LlamaProjections[i]])
		}
	}
}

func TestPlanErrors(t *testing.T) {
	if _, err := PlanLlama(llama3_8B, PlanOptions{Rank: 16, Targets: []string{"qkv_proj"}}); !errors.Is(err, ErrUnknownTarget) {
		t.Errorf("unknown target: %v", err)
	}
	if _, err := PlanLlama(llama3_8B, PlanOptions{Rank: 16}); !errors.Is(err, ErrUnknownTarget) {
		t.Errorf("no targets: %v", err)
	}
	if _, err := PlanLlama(llama3_8B, PlanOptions{Rank: 0, Targets: []string{"q_proj"}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("rank 0: %v", err)
	}
	if _, err := PlanLlama(LlamaDims{Hidden: 64}, PlanOptions{Rank: 8, Targets: []string{"q_proj"}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad dims: %v", err)
	}
}

func TestLlamaParams(t *testing.T) {
	// PEFT's "all params" of the fixture's tiny Llama (123,200) minus its
	// 16,384 LoRA parameters.
	tiny := LlamaDims{Hidden: 64, Intermediate: 128, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 16, Vocab: 256}
	if n, err := LlamaParams(tiny); err != nil || n != 123200-16384 {
		t.Errorf("LlamaParams(tiny) = %d, %v; want %d", n, err, 123200-16384)
	}
	p, err := PlanLlama(tiny, PlanOptions{Rank: 8, Alpha: 16, Targets: []string{"all-linear"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Trainable != 16384 || p.All() != 123200 {
		t.Errorf("tiny plan %d/%d", p.Trainable, p.All())
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
