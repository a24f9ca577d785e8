package llama

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
)

// bench100M is a ~100M-parameter Llama shape (tied embeddings).
var bench100M = mustConfig(`{"model_type": "llama", "hidden_size": 768, "intermediate_size": 2048,
  "num_hidden_layers": 12, "num_attention_heads": 12, "num_key_value_heads": 4, "head_dim": 64,
  "vocab_size": 32000, "rms_norm_eps": 1e-5, "rope_theta": 500000, "tie_word_embeddings": true}`)

// randomLoader serves N(0, 0.02²)-ish weights (norms: 1) of the right shapes.
func randomLoader(cfg *arch.Config, rank int) Loader {
	r := rand.New(rand.NewPCG(1, 2))
	return func(name string) ([]float32, []int, error) {
		var shape []int
		switch {
		case strings.HasSuffix(name, "norm.weight"):
			shape = []int{cfg.Hidden}
		case name == "model.embed_tokens.weight" || name == "lm_head.weight":
			shape = []int{cfg.Vocab, cfg.Hidden}
		default:
			for _, tg := range allTargets {
				if !strings.Contains(name, tg) {
					continue
				}
				o, i := projShape(cfg, tg)
				switch {
				case strings.HasSuffix(name, SuffixA):
					shape = []int{rank, i}
				case strings.HasSuffix(name, SuffixB):
					shape = []int{o, rank}
				default:
					shape = []int{o, i}
				}
			}
		}
		n := 1
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			if strings.HasSuffix(name, "norm.weight") {
				v[i] = 1
			} else {
				v[i] = float32(0.02 * (2*r.Float64() - 1) * 1.7)
			}
		}
		return v, shape, nil
	}
}

// benchTrainStep times ForwardBackward with rank-16 LoRA on targets and,
// when given, virtual tokens (N(0, 1) values).
func benchTrainStep(b *testing.B, cfg *arch.Config, rows, seq int, opt Options, targets []string, virt ...Virtual) {
	be := cpu.New(0)
	load := randomLoader(cfg, 16)
	m, err := New(be, cfg, load, opt)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	var specs []Adapter
	for l := range cfg.Layers {
		for _, tg := range targets {
			specs = append(specs, Adapter{Layer: l, Module: tg, Rank: 16, Scale: 2})
		}
	}
	if len(specs) > 0 {
		if err := m.AddAdapters(specs, load); err != nil {
			b.Fatal(err)
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, v := range virt {
		w := cfg.Hidden
		if v.Method == MethodPrefix {
			if w, err = PrefixWidth(cfg); err != nil {
				b.Fatal(err)
			}
		}
		x := make([]float32, v.Tokens*w)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		if err := m.AddVirtual(v, tensorLoader(PromptEmbeddings, x, v.Tokens, w)); err != nil {
			b.Fatal(err)
		}
	}
	batch := Batch{Rows: rows, Seq: seq}
	for range rows * seq {
		id := int32(r.IntN(cfg.Vocab))
		batch.IDs = append(batch.IDs, id)
		batch.Labels = append(batch.Labels, id)
	}
	if _, _, err := m.ForwardBackward(batch, Step{}); err != nil { // warm the workspace
		b.Fatal(err)
	}
	b.ResetTimer()
	t0 := cpuTime()
	for b.Loop() {
		if _, _, err := m.ForwardBackward(batch, Step{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*rows*seq)/b.Elapsed().Seconds(), "tokens/s")
	if dt := cpuTime() - t0; dt > 0 {
		b.ReportMetric(float64(b.N*rows*seq)/dt.Seconds(), "tokens/cpu-s")
	}
}

var qkvo = []string{Q, K, V, O}

// BenchmarkTrainStep100M is one LoRA training step (forward + backward,
// r=16 on q,k,v,o) of a ~100M-parameter Llama at 1×128 tokens.
func BenchmarkTrainStep100M(b *testing.B) {
	benchTrainStep(b, bench100M, 1, 128, Options{}, qkvo)
}

// BenchmarkTrainStep100MBF16 is the same with bf16 weight storage.
func BenchmarkTrainStep100MBF16(b *testing.B) {
	benchTrainStep(b, bench100M, 1, 128, Options{WeightDType: compute.BF16}, qkvo)
}

// BenchmarkTrainStep100MAllLinear adapts all seven projections.
func BenchmarkTrainStep100MAllLinear(b *testing.B) {
	benchTrainStep(b, bench100M, 1, 128, Options{}, []string{Q, K, V, O, Gate, Up, Down})
}

// BenchmarkTrainStep100MPrompt is one prompt-tuning step (20 virtual
// tokens, no module adapters) at 1×128 tokens: the layers run 148 rows and
// the backward pass reaches the embeddings.
func BenchmarkTrainStep100MPrompt(b *testing.B) {
	benchTrainStep(b, bench100M, 1, 128, Options{}, nil, Virtual{Method: MethodPrompt, Tokens: 20})
}

// BenchmarkTrainStep100MPrefix is one prefix-tuning step (20 keys and
// values per layer) at 1×128 tokens.
func BenchmarkTrainStep100MPrefix(b *testing.B) {
	benchTrainStep(b, bench100M, 1, 128, Options{}, nil, Virtual{Method: MethodPrefix, Tokens: 20})
}

// nf4Random quantizes the projections of load (QLoRA's defaults, bf16
// original dtype) for Options.Quantized.
func nf4Random(load Loader) QuantLoader {
	return func(name string) (*nf4.QuantState, []byte, bool, error) {
		if !strings.Contains(name, "_proj.weight") {
			return nil, nil, false, nil
		}
		w, shape, err := load(name)
		if err != nil {
			return nil, nil, false, err
		}
		opts := nf4.DefaultOptions()
		opts.DType = dtype.BF16
		q, err := nf4.QuantizeTensor(w, []int64{int64(shape[0]), int64(shape[1])}, opts)
		if err != nil {
			return nil, nil, false, err
		}
		return &q.State, q.Packed, true, nil
	}
}

// BenchmarkTrainStep100MQLoRA is BenchmarkTrainStep100M over NF4
// projections (double quantization, bf16 original dtype) dequantized on the
// fly, embeddings and lm_head in bf16.
func BenchmarkTrainStep100MQLoRA(b *testing.B) {
	benchTrainStep(b, bench100M, 1, 128, Options{WeightDType: compute.BF16,
		Quantized: nf4Random(randomLoader(bench100M, 16))}, qkvo)
}

// BenchmarkTrainStep100MMixed is BenchmarkTrainStep100M in bf16 mixed
// precision.
func BenchmarkTrainStep100MMixed(b *testing.B) {
	benchTrainStep(b, bench100M, 1, 128, Options{Precision: PrecisionBF16}, qkvo)
}
