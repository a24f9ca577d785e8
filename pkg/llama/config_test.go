package llama

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/compute"
)

// TestPlanModules checks the plan of each architecture's layer: modules in
// PEFT's order and the projections they compute, fused ones as row slices.
func TestPlanModules(t *testing.T) {
	for _, c := range []struct {
		js   string
		want string
	}{
		{tinyJSON, "q_proj[q 0+64] k_proj[k 0+32] v_proj[v 0+32] o_proj[o 0+64] gate_proj[gate 0+128] up_proj[up 0+128] down_proj[down 0+64]"},
		{`{"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 1,
		  "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50}`,
			"q_proj+b[q 0+64] k_proj+b[k 0+32] v_proj+b[v 0+32] o_proj[o 0+64] gate_proj[gate 0+96] up_proj[up 0+96] down_proj[down 0+64]"},
		{`{"model_type": "phi3", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 1,
		  "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50}`,
			"o_proj[o 0+64] qkv_proj[q 0+64 k 64+32 v 96+32] gate_up_proj[gate 0+96 up 96+96] down_proj[down 0+64]"},
	} {
		pl, err := newPlan(mustConfig(c.js))
		if err != nil {
			t.Fatal(err)
		}
		names := [numProj]string{"q", "k", "v", "o", "gate", "up", "down"}
		var got []string
		for _, mp := range pl.modules {
			s := mp.name
			if mp.hasBias {
				s += "+b"
			}
			var ps []string
			for _, p := range mp.parts {
				ps = append(ps, fmt.Sprintf("%s %d+%d", names[p.p], p.off, p.rows))
			}
			got = append(got, s+"["+strings.Join(ps, " ")+"]")
		}
		if g := strings.Join(got, " "); g != c.want {
			t.Errorf("got  %s\nwant %s", g, c.want)
		}
	}
	if _, err := newPlan(nil); !errors.Is(err, ErrConfig) {
		t.Errorf("nil config: %v", err)
	}
}

func TestModulePaths(t *testing.T) {
	if got := modulePath(3, Gate); got != "model.layers.3.mlp.gate_proj" {
		t.Errorf("ModulePath = %q", got)
	}
	if got := modulePath(0, O); got != "model.layers.0.self_attn.o_proj" {
		t.Errorf("ModulePath = %q", got)
	}
}

// zeroLoader serves zero tensors of any requested name with the given shape
// overrides.
func shapeLoader(cfg *arch.Config, wrong string) Loader {
	return func(name string) ([]float32, []int, error) {
		shape := []int{cfg.Hidden}
		switch {
		case name == "model.embed_tokens.weight" || name == "lm_head.weight":
			shape = []int{cfg.Vocab, cfg.Hidden}
		case len(name) > 7 && name[len(name)-7:] == ".weight" && !contains(name, "norm"):
			for _, tg := range allTargets {
				if contains(name, tg) {
					o, i := projShape(cfg, tg)
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
	tied := mustConfig(strings.Replace(tinyJSON, `"tie_word_embeddings": false`, `"tie_word_embeddings": true`, 1))
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
		"layer":    {Layer: 2, Module: Q, Rank: 4, Scale: 1},
		"rank":     {Layer: 0, Module: Q, Rank: 0, Scale: 1},
		"dropout":  {Layer: 0, Module: Q, Rank: 4, Scale: 1, Dropout: 1},
		"target":   {Layer: 0, Module: "lm_head", Rank: 4, Scale: 1},
		"unknown":  {Layer: 0, Module: "qkv_proj", Rank: 4, Scale: 1},
		"no bias":  {Layer: 0, Module: Q, Bias: true},
		"ia3 bias": {Layer: 0, Module: Q, IA3: true, Bias: true},
		"ia3 rank": {Layer: 0, Module: K, IA3: true, Rank: 4},
		"ff lora":  {Layer: 0, Module: Down, Rank: 4, Scale: 1, FeedForward: true},
	} {
		if err := m.AddAdapters([]Adapter{s}, randomAdapters(1)); !errors.Is(err, ErrAdapter) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := m.AddAdapters([]Adapter{{Layer: 0, Module: Q, Rank: 4, Scale: 1}}, randomAdapters(1)); err != nil {
		t.Fatal(err)
	}
	if err := m.AddAdapters([]Adapter{{Layer: 0, Module: Q, Rank: 4, Scale: 1}}, randomAdapters(1)); !errors.Is(err, ErrAdapter) {
		t.Errorf("second adapter on a module: %v", err)
	}
	if err := m.AddAdapters([]Adapter{{Layer: 1, Module: Q, Rank: 8, Scale: 1}}, randomAdapters(1)); !errors.Is(err, ErrWeight) {
		t.Errorf("rank 8 adapter given rank 4 tensors: %v", err)
	}
	// A failing call attaches nothing, and duplicates within a call are refused.
	if err := m.AddAdapters([]Adapter{{Layer: 1, Module: K, Rank: 4, Scale: 1}, {Layer: 1, Module: V, Rank: 8, Scale: 1}},
		randomAdapters(1)); !errors.Is(err, ErrWeight) || len(m.Params()) != 2 {
		t.Errorf("partial AddAdapters: %v, %d params", err, len(m.Params()))
	}
	if err := m.AddAdapters([]Adapter{{Layer: 1, Module: K, Rank: 4, Scale: 1}, {Layer: 1, Module: K, IA3: true}},
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
