package llama

import (
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/dtype"
)

// The tests of this file run the model on small configs of the other
// architectures (tools/torchref compares them with transformers'
// computation); these check its own properties: gradients against finite
// differences, bit-identical results across threads, checkpointing and
// loss chunks, the memory plan, and QLoRA against the dequantized model.

const archSmall = `"hidden_size": 32, "intermediate_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2,
  "vocab_size": 64, "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "num_hidden_layers": 2`

var archConfigs = []struct{ name, js string }{
	{"qwen2", `{"model_type": "qwen2", ` + archSmall + `, "tie_word_embeddings": true, "use_sliding_window": true,
	  "sliding_window": 5, "max_window_layers": 1}`},
	{"qwen3", `{"model_type": "qwen3", ` + archSmall + `, "head_dim": 12, "attention_bias": true}`},
	{"gemma2", `{"model_type": "gemma2", ` + archSmall + `, "head_dim": 8, "query_pre_attn_scalar": 20,
	  "sliding_window": 4, "attn_logit_softcapping": 3.0, "final_logit_softcapping": 5.0}`},
	{"gemma3", `{"model_type": "gemma3_text", ` + archSmall + `, "head_dim": 8, "sliding_window": 4,
	  "sliding_window_pattern": 2, "rope_scaling": {"rope_type": "linear", "factor": 2.0}}`},
	{"phi3", `{"model_type": "phi3", ` + archSmall + `, "partial_rotary_factor": 0.75,
	  "original_max_position_embeddings": 8, "sliding_window": 6, "rope_scaling": {"type": "longrope",
	  "short_factor": [1.0, 1.25, 1.5], "long_factor": [1.5, 3.0, 6.0]}}`},
}

// archSpecs trains, in layer 0, LoRA with dropout and the bias on the
// attention's modules and (IA)³ on the MLP's (input scaling); in layer 1,
// DoRA with dropout and the bias on every module.
func archSpecs(cfg *arch.Config) []Adapter {
	var s []Adapter
	for _, m := range cfg.AllLinear() {
		bias := hasBias(cfg, m)
		if strings.Contains(cfg.ModulePath(0, m), ".mlp.") {
			s = append(s, Adapter{Layer: 0, Module: m, IA3: true, FeedForward: true})
		} else {
			s = append(s, Adapter{Layer: 0, Module: m, Rank: 4, Scale: 1.5, Dropout: 0.2, Bias: bias})
		}
		s = append(s, Adapter{Layer: 1, Module: m, Rank: 4, Scale: 0.8, DoRA: true, Dropout: 0.1, Bias: bias})
	}
	return s
}

func hasBias(cfg *arch.Config, m string) bool {
	_, ok := cfg.Tensor(cfg.ModulePath(0, m) + ".bias")
	return ok
}

// randomBase serves seeded random weights of cfg's layout (norms near their
// identity, projections of unit-scale activations).
func randomBase(cfg *arch.Config, seed uint64) Loader {
	return func(name string) ([]float32, []int, error) {
		ti, ok := cfg.Tensor(name)
		if !ok {
			return nil, nil, fmt.Errorf("%s: %w", name, ErrNotFound)
		}
		h := fnv.New64a()
		io.WriteString(h, name)
		r := rand.New(rand.NewPCG(seed, h.Sum64()))
		shape := make([]int, len(ti.Shape))
		for i, d := range ti.Shape {
			shape[i] = int(d)
		}
		v := make([]float32, ti.Params())
		lo, hi := -1.0, 1.0
		switch {
		case ti.Role == arch.RoleNorm:
			lo, hi = 0.7-float64(cfg.Norm.Offset()), 1.3-float64(cfg.Norm.Offset())
		case ti.Bias:
			lo, hi = -0.2, 0.2
		case len(shape) == 2 && ti.Role != arch.RoleEmbedding && ti.Role != arch.RoleLMHead:
			b := 1.7 / math.Sqrt(float64(shape[1]))
			lo, hi = -b, b
		}
		for i := range v {
			v[i] = float32(lo + (hi-lo)*r.Float64())
		}
		return v, shape, nil
	}
}

// archBatch packs two documents in row 0 of 14 tokens (positions reach 11,
// beyond phi3's original 8: LongRoPE's long factors).
func archBatch(vocab int) Batch {
	b := Batch{Rows: 2, Seq: 14}
	r := rand.New(rand.NewPCG(3, 4))
	for row := range 2 {
		p := int32(0)
		for i := range b.Seq {
			if row == 0 && i == 5 {
				p = 0
			}
			id := int32(r.IntN(vocab))
			l := id
			if p == 0 || r.IntN(6) == 0 {
				l = -100
			}
			b.IDs, b.Labels, b.Positions = append(b.IDs, id), append(b.Labels, l), append(b.Positions, p)
			p++
		}
	}
	return b
}

func archModel(t *testing.T, be compute.Backend, cfg *arch.Config, opt Options) *Model {
	t.Helper()
	m, err := New(be, cfg, randomBase(cfg, 1), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if err := m.AddAdapters(archSpecs(cfg), randomAdaptersFor(cfg, 5)); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestArchDirectionalDerivative checks the backward pass of every
// architecture's features (biases trained, q/k and sandwich norms,
// soft-caps, windows, fused modules, partial rotary, LongRoPE) against
// central finite differences of the loss, with dropout masks held fixed.
func TestArchDirectionalDerivative(t *testing.T) {
	for _, c := range archConfigs {
		t.Run(c.name, func(t *testing.T) {
			cfg := mustConfig(c.js)
			be := newCPU()
			m := archModel(t, be, cfg, Options{})
			checkDirectional(t, m, archBatch(cfg.Vocab), SuffixA, SuffixB, SuffixMagnitude, SuffixIA3, "bias")
		})
	}
}

// TestArchDeterminism requires bit-identical losses and gradients with
// other thread counts, gradient checkpointing and small loss chunks, in
// f32 and bf16, for every architecture.
func TestArchDeterminism(t *testing.T) {
	for _, c := range archConfigs {
		for _, prec := range []Precision{PrecisionF32, PrecisionBF16} {
			t.Run(c.name+"/"+string(prec), func(t *testing.T) {
				cfg := mustConfig(c.js)
				b := archBatch(cfg.Vocab)
				run := func(be compute.Backend, opt Options) ([][]float32, float64) {
					opt.Precision = prec
					m := archModel(t, be, cfg, opt)
					m.ZeroGrad()
					sum, _, err := m.ForwardBackward(b, Step{Seed: 3, Denominator: 17})
					if err != nil {
						t.Fatal(err)
					}
					var gs [][]float32
					for _, p := range m.Params() {
						gs = append(gs, download(t, be, p.Grad))
					}
					return gs, sum
				}
				sameAcrossRuns(t, run)
			})
		}
	}
}

// TestArchPlanMemory checks the plan of every architecture against what
// the model allocates (weights, adapters with trained biases, workspace).
func TestArchPlanMemory(t *testing.T) {
	for _, c := range archConfigs {
		for _, opt := range []Options{{}, {Precision: PrecisionBF16, GradCheckpoint: true},
			{Precision: PrecisionBF16, Synthetic: &Synthetic{Seed: 1, Scale: 0.02, NF4: true}}} {
			cfg := mustConfig(c.js)
			if opt.Synthetic == nil {
				opt.Synthetic = &Synthetic{Seed: 1, Scale: 0.02}
			}
			checkPlan(t, cfg, opt, archSpecs(cfg), randomAdaptersFor(cfg, 1), 2, 11)
		}
	}
}

// TestArchQLoRA requires a model holding NF4 projections (fused ones too)
// to compute exactly what the model of their dequantized weights computes.
func TestArchQLoRA(t *testing.T) {
	for _, c := range archConfigs {
		t.Run(c.name, func(t *testing.T) {
			cfg := mustConfig(c.js)
			base := randomBase(cfg, 2)
			quant := nf4Random(base)
			dequantized := func(name string) ([]float32, []int, error) {
				qs, packed, ok, err := quant(name)
				if err != nil || !ok {
					return base(name)
				}
				v := make([]float32, qs.NumElements())
				if err := qs.Dequantize(v, packed); err != nil {
					return nil, nil, err
				}
				raw := make([]byte, 2*len(v)) // the bf16 weight's cast, as dequantize_4bit returns it
				dtype.FromF32(raw, v, dtype.BF16)
				dtype.ToF32(v, raw, dtype.BF16)
				return v, []int{int(qs.Shape[0]), int(qs.Shape[1])}, nil
			}
			b := archBatch(cfg.Vocab)
			q, err := New(newCPU(), cfg, base, Options{Quantized: quant})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			dense, err := New(newCPU(), cfg, dequantized, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer dense.Close()
			for _, m := range []*Model{q, dense} {
				if err := m.AddAdapters(archSpecs(cfg), randomAdaptersFor(cfg, 5)); err != nil {
					t.Fatal(err)
				}
			}
			lq, ld := make([]float32, b.Rows*b.Seq*cfg.Vocab), make([]float32, b.Rows*b.Seq*cfg.Vocab)
			if err := q.Logits(b, lq); err != nil {
				t.Fatal(err)
			}
			if err := dense.Logits(b, ld); err != nil {
				t.Fatal(err)
			}
			sameBits(t, "logits", lq, ld)
			sameStep(t, q, dense, b, Step{Seed: 9})
		})
	}
}
