package cuda_test

import (
	"math"
	"testing"

	"github.com/lorakit/lorakit/internal/plaintrain"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
	"github.com/lorakit/lorakit/pkg/compute/cuda"
	"github.com/lorakit/lorakit/pkg/llama"
)

// TestVirtualTokensEmulated runs prompt tuning's forward and backward pass
// (the prompt written over each sequence's virtual rows with Convert, its
// gradient summed over the batch with Axpy, logits of the real positions)
// and prefix tuning's (per-layer keys and values built with Copy and
// Convert, attention with Attention.Prefix, the prefix gradient summed with
// Axpy) on the host emulation of the backend and on the CPU: f32 within
// 1e-4, bf16 mixed precision on an NF4 base within 1e-2, on Llama and on
// Gemma 2 (whose model scales the prompt as it scales inputs_embeds; its
// sliding window covers prefix keys).
func TestVirtualTokensEmulated(t *testing.T) {
	cuda.NewEmulated(t, cuda.Options{}) // skips without clang
	const P = 3
	type tc struct {
		name, method, js string
		opt              llama.Options
		tol              float64
	}
	var cases []tc
	for _, method := range []string{llama.MethodPrompt, llama.MethodPrefix} {
		cases = append(cases,
			tc{method + "_llama_f32", method, `{"model_type": "llama"}`, llama.Options{}, 1e-4},
			tc{method + "_gemma2_f32", method, `{"model_type": "gemma2", "head_dim": 16, "sliding_window": 8}`, llama.Options{}, 1e-4},
			tc{method + "_llama_nf4_bf16", method, `{"model_type": "llama"}`,
				llama.Options{Precision: llama.PrecisionBF16, GradCheckpoint: true}, 1e-2})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			js := c.js[:len(c.js)-1] + `, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
				"num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "rms_norm_eps": 1e-5}`
			cfg, err := arch.ParseConfig([]byte(js))
			if err != nil {
				t.Fatal(err)
			}
			opt := c.opt
			opt.Synthetic = &llama.Synthetic{Seed: 7, Scale: 0.05, NF4: opt.Precision == llama.PrecisionBF16}
			width := cfg.Hidden
			if c.method == llama.MethodPrefix {
				if width, err = llama.PrefixWidth(cfg); err != nil {
					t.Fatal(err)
				}
			}
			emb := make([]float32, P*width)
			for i := range emb {
				emb[i] = float32(math.Sin(float64(i)*0.37)) * 0.5
			}
			load := func(name string) ([]float32, []int, error) {
				if name != llama.PromptEmbeddings {
					return nil, nil, llama.ErrNotFound
				}
				return emb, []int{P, width}, nil
			}
			b := llama.Batch{Rows: 2, Seq: 12}
			for i := range b.Rows * b.Seq {
				b.IDs = append(b.IDs, int32(i*37%cfg.Vocab))
			}
			b.Labels = b.IDs
			run := func(be compute.Backend) (float64, []float64, []float32) {
				m, err := llama.New(be, cfg, nil, opt)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				if err := m.AddVirtual(llama.Virtual{Method: c.method, Tokens: P}, load); err != nil {
					t.Fatal(err)
				}
				m.ZeroGrad()
				sum, n, err := m.ForwardBackward(b, llama.Step{})
				if err != nil {
					t.Fatal(err)
				}
				lg := make([]float32, b.Rows*b.Seq*cfg.Vocab)
				if err := m.Logits(b, lg); err != nil {
					t.Fatal(err)
				}
				return sum / float64(n), gradNorms(t, be, m), lg
			}
			refLoss, refNorms, refLogits := run(cpu.New(0))
			loss, norms, logits := run(cuda.NewEmulated(t, cuda.Options{}))
			worstLogit := 0.0
			for i := range logits {
				worstLogit = math.Max(worstLogit, math.Abs(float64(logits[i]-refLogits[i])))
			}
			el, en := plaintrain.RelDiff(loss, refLoss), plaintrain.RelDiff(norms[0], refNorms[0])
			if el > c.tol || en > c.tol || worstLogit > 100*c.tol || refNorms[0] == 0 {
				t.Errorf("loss %v (cpu %v), virtual-token gradient norm %v (cpu %v), logits within %.3g", loss, refLoss, norms[0], refNorms[0], worstLogit)
			}
			t.Logf("loss %.6f (cpu %.6f), virtual-token gradient norm within %.3g, logits within %.3g", loss, refLoss, en, worstLogit)
		})
	}
}
