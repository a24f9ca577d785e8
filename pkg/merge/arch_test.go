package merge

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/randmodel"
	"github.com/lorakit/lorakit/pkg/arch"
)

// TestEveryArchitecture merges random adapters into a tiny random checkpoint of
// every architecture of the registry and checks every output tensor against the
// merge computed here in float64 from the spec (W' = W + s·B·A; embeddings
// (B·A)ᵀ; fused modules with their one A and B over the whole fused output;
// PEFT's bias="all"/"lora_only" biases replacing the base's, then
// b' = b + s·lora_B.bias), all other tensors unchanged.
func TestEveryArchitecture(t *testing.T) {
	for _, mt := range randmodel.ModelTypes() {
		t.Run(mt, func(t *testing.T) {
			c := randmodel.Tiny(mt, 5)
			if mt == "llama" {
				c.Extra["attention_bias"], c.Extra["mlp_bias"] = true, true
			}
			cfg, err := c.Arch()
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			base := filepath.Join(dir, "base")
			if err := c.Write(base); err != nil {
				t.Fatal(err)
			}
			// Every linear, lm_head and the embedding; on a model with
			// biases, PEFT's bias="all" and lora_bias on the modules with a
			// bias, and bias="lora_only" on one of them.
			adapters := []randmodel.AdapterOptions{
				{Rank: 4, Alpha: 6, Seed: 1, Targets: []string{"all-linear", "lm_head", "embed_tokens"}},
			}
			var biased []string
			for _, l := range cfg.Linears() {
				if x, ok := cfg.Tensor(cfg.ModulePath(0, l.Module) + ".bias"); ok && x.Bias {
					biased = append(biased, l.Module)
				}
			}
			if len(biased) > 0 {
				adapters = append(adapters, randmodel.AdapterOptions{Rank: 2, Seed: 2, Targets: biased, Bias: "all", LoraBias: true},
					randmodel.AdapterOptions{Rank: 3, Seed: 3, Targets: biased[:1], Bias: "lora_only"})
			}
			for i, o := range adapters {
				ad := filepath.Join(dir, fmt.Sprintf("adapter-%d", i))
				if err := c.AdapterWith(ad, o); err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(dir, fmt.Sprintf("merged-%d", i))
				mergeTo(t, base, one(ad), out, Options{})
				checkArchMerge(t, cfg, base, ad, out, o)
			}
		})
	}
}

// checkArchMerge compares the merged checkpoint out with the merge of adapter ad
// into base computed here.
func checkArchMerge(t *testing.T, cfg *arch.Config, base, ad, out string, o randmodel.AdapterOptions) {
	t.Helper()
	w0, _ := tensorsOf(t, base)
	a, _ := tensorsOf(t, ad)
	got, infos := tensorsOf(t, out)
	s := float64(o.Alpha) / float64(o.Rank)
	if o.Alpha == 0 {
		s = 2
	}
	want := map[string][]float64{}
	for name, v := range w0 {
		want[name] = make([]float64, len(v))
		for i, x := range v {
			want[name][i] = float64(x)
		}
	}
	inf := map[string][]int64{}
	for n, ti := range infos {
		inf[n] = ti.Shape
	}
	adapted := 0
	for key, av := range a {
		p := strings.TrimPrefix(key, "base_model.model.")
		switch {
		case strings.HasSuffix(p, ".lora_A.weight"), strings.HasSuffix(p, ".lora_embedding_A"):
			module := strings.TrimSuffix(strings.TrimSuffix(p, ".lora_A.weight"), ".lora_embedding_A")
			embedding := strings.HasSuffix(p, ".lora_embedding_A")
			bv := a["base_model.model."+module+map[bool]string{true: ".lora_embedding_B", false: ".lora_B.weight"}[embedding]]
			weight := module + ".weight"
			if module == "lm_head" && want[weight] == nil {
				// A tied lm_head becomes a weight of its own: the base
				// embedding plus the lm_head delta (spec §7.5).
				for _, x := range w0[embedName(cfg)] {
					want[weight] = append(want[weight], float64(x))
				}
			}
			w := want[weight]
			r := o.Rank
			ba := product(bv, av, r) // (out, in) = B·A; for an embedding (D, V)
			in, outF := len(av)/r, len(bv)/r
			for i := range outF {
				for j := range in {
					if embedding { // ΔW = (B·A)ᵀ
						w[j*outF+i] += s * ba[i*in+j]
					} else {
						w[i*in+j] += s * ba[i*in+j]
					}
				}
			}
			adapted++
		case strings.HasSuffix(p, ".base_layer.bias"), strings.HasSuffix(p, ".bias") && !strings.Contains(p, "lora_"):
			bias := strings.Replace(p, ".base_layer.bias", ".bias", 1)
			for i, x := range av {
				want[bias][i] = float64(x)
			}
		}
	}
	for key, bv := range a { // lora_B.bias after the bias replacement
		if p := strings.TrimPrefix(key, "base_model.model."); strings.HasSuffix(p, ".lora_B.bias") {
			bias := strings.TrimSuffix(p, ".lora_B.bias") + ".bias"
			for i, x := range bv {
				want[bias][i] += s * float64(x)
			}
		}
	}
	if adapted == 0 {
		t.Fatal("the adapter adapts nothing")
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: missing from the merge", name)
			continue
		}
		worst := 0.0
		for i := range w {
			worst = max(worst, math.Abs(float64(g[i])-w[i])/(1+math.Abs(w[i])))
		}
		if worst > 2e-6 {
			t.Errorf("%s: merged values differ by %.3g (relative) from W + s·B·A", name, worst)
		}
	}
	if len(got) != len(want) {
		t.Errorf("the merge has %d tensors, want %d", len(got), len(want))
	}
}

// product is B·A in float64 for B (out, r) and A (r, in), row-major.
func product(b, a []float32, r int) []float64 {
	in, out := len(a)/r, len(b)/r
	p := make([]float64, out*in)
	for i := range out {
		for j := range in {
			for k := range r {
				p[i*in+j] += float64(b[i*r+k]) * float64(a[k*in+j])
			}
		}
	}
	return p
}

// embedName is the checkpoint name of the embedding a tied lm_head shares.
func embedName(cfg *arch.Config) string {
	if cfg.Multimodal != nil {
		return "model.language_model.embed_tokens.weight"
	}
	return "model.embed_tokens.weight"
}
