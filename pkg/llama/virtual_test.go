package llama

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/compute"
)

// virtualConfigs are the tiny Llama and the small configs of every other
// architecture (embedding scales: Gemma 2 scales inputs_embeds in the
// model, Gemma 3 in its embedding module).
func virtualConfigs() []struct {
	name string
	cfg  *arch.Config
} {
	out := []struct {
		name string
		cfg  *arch.Config
	}{{"llama", tinyConfig()}}
	for _, c := range archConfigs {
		out = append(out, struct {
			name string
			cfg  *arch.Config
		}{c.name, mustConfig(c.js)})
	}
	return out
}

// plainBatch is rows×seq random tokens, some labels −100 (the first
// included, so the prompt's last position is scored only where it is not).
func plainBatch(vocab, rows, seq int, seed uint64) Batch {
	r := rand.New(rand.NewPCG(seed, 1))
	b := Batch{Rows: rows, Seq: seq}
	for range rows * seq {
		id := int32(r.IntN(vocab))
		l := id
		if r.IntN(5) == 0 {
			l = compute.IgnoreIndex
		}
		b.IDs, b.Labels = append(b.IDs, id), append(b.Labels, l)
	}
	return b
}

func newVirtualModel(t *testing.T, be compute.Backend, cfg *arch.Config, v Virtual, load Loader) *Model {
	t.Helper()
	m, err := New(be, cfg, randomBase(cfg, 1), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if v.Tokens > 0 {
		if err := m.AddVirtual(v, load); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// tensorLoader serves one tensor.
func tensorLoader(name string, data []float32, shape ...int) Loader {
	return func(n string) ([]float32, []int, error) {
		if n != name {
			return nil, nil, ErrNotFound
		}
		return data, shape, nil
	}
}

// TestPromptEqualsRealTokens: prompt embeddings equal to the word-embedding
// module's output for tokens x give, on the real positions, the logits of
// the sequence x followed by the real tokens (PEFT concatenates
// inputs_embeds; transformers numbers the positions from 0), on every
// architecture.
func TestPromptEqualsRealTokens(t *testing.T) {
	const P, T = 3, 7
	for _, c := range virtualConfigs() {
		t.Run(c.name, func(t *testing.T) {
			be := newCPU()
			cfg := c.cfg
			plain := newVirtualModel(t, be, cfg, Virtual{}, nil)
			full := plainBatch(cfg.Vocab, 2, P+T, 9)
			full.Labels = nil
			x := full.IDs[:P] // the same prefix in both rows
			copy(full.IDs[P+T:], x)
			emb, err := plain.TokenEmbeddings(x)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]float32, 2*(P+T)*cfg.Vocab)
			if err := plain.Logits(full, want); err != nil {
				t.Fatal(err)
			}
			pm := newVirtualModel(t, be, cfg, Virtual{Method: MethodPrompt, Tokens: P},
				tensorLoader(PromptEmbeddings, emb, P, cfg.Hidden))
			compareRealLogits(t, pm, full, want, P, T, 1e-6)
		})
	}
}

// TestPromptLossLabels: the virtual positions have no label, and the last
// one is scored against the first real label, as PEFT's labels
// cat((−100,) * P, labels) shifted by transformers.
func TestPromptLossLabels(t *testing.T) {
	cfg := tinyConfig()
	be := newCPU()
	const P = 2
	emb := make([]float32, P*cfg.Hidden)
	pm := newVirtualModel(t, be, cfg, Virtual{Method: MethodPrompt, Tokens: P}, tensorLoader(PromptEmbeddings, emb, P, cfg.Hidden))
	b := plainBatch(cfg.Vocab, 2, 6, 3)
	b.Labels[0], b.Labels[6] = b.IDs[0], compute.IgnoreIndex
	_, n, err := pm.Loss(b)
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, l := range b.Labels {
		if l != compute.IgnoreIndex {
			want++
		}
	}
	if n != want {
		t.Errorf("%d scored positions, want %d (every label, the first of each row included)", n, want)
	}
	if err := pm.Reserve(2, 6); err != nil {
		t.Fatal(err)
	}
	reserved := pm.WorkspaceBytes()
	if _, _, err := pm.ForwardBackward(b, Step{}); err != nil || pm.WorkspaceBytes() != reserved {
		t.Errorf("Reserve(2, 6) made %d bytes, the pass %d (%v)", reserved, pm.WorkspaceBytes(), err)
	}
	b.Positions = make([]int32, len(b.IDs))
	if _, _, err := pm.Loss(b); err == nil {
		t.Error("a batch with Positions was accepted with virtual tokens")
	}
}

// TestPromptGradient checks the prompt's gradient against finite
// differences on every architecture, alone and with LoRA adapters below
// it, and requires bit-identical gradients with gradient checkpointing.
func TestPromptGradient(t *testing.T) {
	const P = 3
	for _, c := range virtualConfigs() {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			r := rand.New(rand.NewPCG(4, 4))
			emb := make([]float32, P*cfg.Hidden)
			for i := range emb {
				emb[i] = float32(r.NormFloat64())
			}
			load := tensorLoader(PromptEmbeddings, emb, P, cfg.Hidden)
			b := plainBatch(cfg.Vocab, 2, 8, 5)
			grads := func(opt Options, lora bool) []float32 {
				m, err := New(newCPU(), cfg, randomBase(cfg, 1), opt)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(m.Close)
				if err := m.AddVirtual(Virtual{Method: MethodPrompt, Tokens: P}, load); err != nil {
					t.Fatal(err)
				}
				if lora {
					if err := m.AddAdapters([]Adapter{{Layer: 1, Module: "o_proj", Rank: 4, Scale: 2}}, randomAdaptersFor(cfg, 5)); err != nil {
						t.Fatal(err)
					}
				}
				g0 := gradNorm(t, m, b)
				if g0 == 0 {
					t.Fatal("zero prompt gradient")
				}
				checkDirectional(t, m, b, PromptEmbeddings)
				return download(t, m.be, m.Params()[0].Grad)
			}
			g := grads(Options{}, false)
			gc := grads(Options{GradCheckpoint: true}, false)
			for i := range g {
				if g[i] != gc[i] {
					t.Fatalf("gradient checkpointing changes the prompt's gradient at %d: %g vs %g", i, gc[i], g[i])
				}
			}
			grads(Options{}, true)
		})
	}
}

// gradNorm runs one ForwardBackward from zero gradients and returns the
// norm of the first parameter's gradient.
func gradNorm(t *testing.T, m *Model, b Batch) float64 {
	t.Helper()
	m.ZeroGrad()
	if _, _, err := m.ForwardBackward(b, Step{}); err != nil {
		t.Fatal(err)
	}
	var s float64
	for _, v := range download(t, m.be, m.Params()[0].Grad) {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s)
}

// capturePrefix runs the plain model on a batch whose rows start with the
// same P tokens and returns, in PEFT's prefix layout [P, Layers·2·kv], the
// keys (rotated at positions 0 … P−1, after any q/k norm) and values every
// layer computes for them: what transformers' cache holds after those
// tokens.
func capturePrefix(t *testing.T, cfg *arch.Config, full Batch, P int) []float32 {
	t.Helper()
	m := newVirtualModel(t, newCPU(), cfg, Virtual{}, nil)
	// A zero LoRA on layer 0 makes the training workspace keep every
	// layer's keys and values without changing them.
	zero := func(name string) ([]float32, []int, error) {
		out, in := projShape(cfg, cfg.AllLinear()[0])
		if strings.HasSuffix(name, SuffixA) {
			return make([]float32, 4*in), []int{4, in}, nil
		}
		return make([]float32, out*4), []int{out, 4}, nil
	}
	if err := m.AddAdapters([]Adapter{{Layer: 0, Module: cfg.AllLinear()[0], Rank: 4, Scale: 1}}, zero); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.ForwardBackward(full, Step{}); err != nil {
		t.Fatal(err)
	}
	hkv := cfg.KVHeads * cfg.HeadDim
	W := cfg.Layers * 2 * hkv
	out := make([]float32, P*W)
	for l := range cfg.Layers {
		for kv, b := range []compute.Buffer{m.ws.layers[l].k, m.ws.layers[l].v} {
			x := download(t, m.be, b)
			for p := range P {
				copy(out[p*W+(2*l+kv)*hkv:p*W+(2*l+kv+1)*hkv], x[p*hkv:(p+1)*hkv])
			}
		}
	}
	return out
}

// prefixConfigs are virtualConfigs whose head_dim is hidden/heads (PEFT's
// prefix layout); the others are refused.
func prefixConfigs(t *testing.T) []struct {
	name string
	cfg  *arch.Config
} {
	var out []struct {
		name string
		cfg  *arch.Config
	}
	for _, c := range virtualConfigs() {
		if _, err := PrefixWidth(c.cfg); err != nil {
			if !errors.Is(err, ErrAdapter) || c.name != "qwen3" {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		out = append(out, c)
	}
	return out
}

// TestPrefixEqualsRealTokens: a prefix whose keys and values are those a
// real prefix x produces (its keys rotated at positions 0 … P−1, as a
// cache holds them) gives the logits of the sequence x followed by the real
// tokens on the real positions: the prefix is used as given and the real
// tokens are numbered from P.
func TestPrefixEqualsRealTokens(t *testing.T) {
	const P, T = 3, 7
	for _, c := range prefixConfigs(t) {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			full := plainBatch(cfg.Vocab, 2, P+T, 9)
			copy(full.IDs[P+T:], full.IDs[:P])
			pre := capturePrefix(t, cfg, full, P)
			plain := newVirtualModel(t, newCPU(), cfg, Virtual{}, nil)
			want := make([]float32, 2*(P+T)*cfg.Vocab)
			full.Labels = nil
			if err := plain.Logits(full, want); err != nil {
				t.Fatal(err)
			}
			W := cfg.Layers * 2 * cfg.KVHeads * cfg.HeadDim
			pm := newVirtualModel(t, newCPU(), cfg, Virtual{Method: MethodPrefix, Tokens: P}, tensorLoader(PromptEmbeddings, pre, P, W))
			compareRealLogits(t, pm, full, want, P, T, 1e-5)
		})
	}
}

// TestPrefixGradient checks the prefix's gradient against finite
// differences, alone and with a LoRA adapter, and requires bit-identical
// gradients with gradient checkpointing.
func TestPrefixGradient(t *testing.T) {
	const P = 2
	for _, c := range prefixConfigs(t) {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			W, err := PrefixWidth(cfg)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(4, 4))
			pre := make([]float32, P*W)
			for i := range pre {
				pre[i] = float32(r.NormFloat64())
			}
			load := tensorLoader(PromptEmbeddings, pre, P, W)
			b := plainBatch(cfg.Vocab, 2, 8, 5)
			grads := func(opt Options, lora bool) []float32 {
				m, err := New(newCPU(), cfg, randomBase(cfg, 1), opt)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(m.Close)
				if err := m.AddVirtual(Virtual{Method: MethodPrefix, Tokens: P}, load); err != nil {
					t.Fatal(err)
				}
				if lora {
					if err := m.AddAdapters([]Adapter{{Layer: 1, Module: "o_proj", Rank: 4, Scale: 2}}, randomAdaptersFor(cfg, 5)); err != nil {
						t.Fatal(err)
					}
				}
				if gradNorm(t, m, b) == 0 {
					t.Fatal("zero prefix gradient")
				}
				checkDirectional(t, m, b, PromptEmbeddings)
				return download(t, m.be, m.Params()[0].Grad)
			}
			g := grads(Options{}, false)
			gc := grads(Options{GradCheckpoint: true}, false)
			for i := range g {
				if g[i] != gc[i] {
					t.Fatalf("gradient checkpointing changes the prefix's gradient at %d: %g vs %g", i, gc[i], g[i])
				}
			}
			grads(Options{}, true)
		})
	}
}

// compareRealLogits runs m (with P virtual tokens) on the last T tokens of
// each row of full (rows of P+T tokens) and requires its logits to be
// want's, the logits of a plain model on full, at those positions.
func compareRealLogits(t *testing.T, m *Model, full Batch, want []float32, P, T int, tol float64) {
	t.Helper()
	real := Batch{Rows: full.Rows, Seq: T}
	for r := range full.Rows {
		real.IDs = append(real.IDs, full.IDs[r*(P+T)+P:(r+1)*(P+T)]...)
	}
	V := m.Config().Vocab
	got := make([]float32, full.Rows*T*V)
	if err := m.Logits(real, got); err != nil {
		t.Fatal(err)
	}
	for r := range full.Rows {
		w := want[(r*(P+T)+P)*V : (r+1)*(P+T)*V]
		g := got[r*T*V : (r+1)*T*V]
		if d, s := maxAbs(g, w); d > tol*max(s, 1) {
			t.Errorf("row %d: logits differ by %.3g (scale %.3g)", r, d, s)
		}
	}
}
