package randmodel

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/tokenizer"
)

// TestWrite checks that a model is a pure function of its Config (whatever
// the core count), that Bytes is its data size, that the defaults fill
// config.json, and that Adapter makes an adapter the openers accept.
func TestWrite(t *testing.T) {
	c := Config{Hidden: 32, Intermediate: 48, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 64, DType: dtype.BF16, Shards: 2, Seed: 7}
	dir := t.TempDir()
	write := func(name string, procs int) string {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		out := filepath.Join(dir, name)
		if err := c.Write(out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	a, b := write("a", 1), write("b", 4)
	for _, f := range []string{"config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"} {
		x, err := os.ReadFile(filepath.Join(a, f))
		if err != nil {
			t.Fatal(err)
		}
		if y, _ := os.ReadFile(filepath.Join(b, f)); !bytes.Equal(x, y) {
			t.Errorf("%s differs between 1 and 4 cores", f)
		}
	}
	base, err := model.OpenBase(a, nil, model.BaseOptions{Config: true})
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	var n int64
	for _, ti := range base.Source.Tensors {
		n += ti.NumBytes()
	}
	if n != c.Bytes() {
		t.Errorf("data %d bytes, Bytes() = %d", n, c.Bytes())
	}
	if cfg := base.Config; cfg.HeadDim != 8 || cfg.KVHeads != 2 || cfg.MaxPositions != 2048 {
		t.Errorf("config: head_dim %d, kv heads %d, max positions %d", cfg.HeadDim, cfg.KVHeads, cfg.MaxPositions)
	}
	ad := filepath.Join(dir, "adapter")
	if err := c.Adapter(ad, 4, 1, "q_proj", "down_proj"); err != nil {
		t.Fatal(err)
	}
	an, err := model.OpenAdapter(ad, nil, model.AdapterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer an.Close()
	if got := len(an.Analysis.Modules); got != 2*c.Layers {
		t.Errorf("%d adapter modules, want %d", got, 2*c.Layers)
	}
}

// TestEveryArchitecture writes a tiny model of every architecture and checks
// that the registry reads it back with exactly its tensors, that the
// tokenizer loads with the promised token count, and that adapters on every
// target, fused modules and biases included, are what PEFT would save.
func TestEveryArchitecture(t *testing.T) {
	for _, mt := range ModelTypes() {
		t.Run(mt, func(t *testing.T) {
			dir := t.TempDir()
			c := Tiny(mt, 3)
			if err := c.Write(filepath.Join(dir, "base")); err != nil {
				t.Fatal(err)
			}
			base, err := model.OpenBase(filepath.Join(dir, "base"), nil, model.BaseOptions{Config: true})
			if err != nil {
				t.Fatal(err)
			}
			defer base.Close()
			cfg := base.Config
			if cfg.ModelType != mt || (mt == "gemma3") != (cfg.Multimodal != nil) {
				t.Fatalf("model_type %q, multimodal %v", cfg.ModelType, cfg.Multimodal)
			}
			got := map[string][]int64{}
			for _, ti := range base.Source.Tensors {
				name, ok := cfg.TextName(ti.Name)
				if !ok {
					t.Errorf("%s: not the language model's", ti.Name)
				}
				got[name] = ti.Shape
			}
			want := cfg.Tensors()
			if len(got) != len(want) {
				t.Errorf("%d tensors, the registry lists %d", len(got), len(want))
			}
			for _, w := range want {
				if !slices.Equal(got[w.Name], w.Shape) {
					t.Errorf("%s: shape %v, want %v", w.Name, got[w.Name], w.Shape)
				}
			}
			values := c.Loader()
			norm := float32(1 - cfg.Norm.Offset())
			for _, ti := range c.Tensors() {
				v, _, err := values(ti.Name)
				if err != nil {
					t.Fatal(err)
				}
				if strings.HasSuffix(ti.Name, "norm.weight") && (v[0] == norm || math.Abs(float64(v[0]-norm)) > 0.5) {
					t.Errorf("%s: %v is not near %v", ti.Name, v[0], norm)
				}
			}
			tk, err := tokenizer.New(base.Source.Files["tokenizer.json"], base.Source.Files["tokenizer_config.json"])
			if err != nil || tk.VocabSize() != c.Tokens {
				t.Fatalf("tokenizer: %v, %d tokens", err, tk.VocabSize())
			}
			if ids := tk.Encode("aab", false); len(ids) != 2 {
				t.Errorf("aab → %v: the merges did not apply", ids)
			}

			for _, o := range []AdapterOptions{
				{Rank: 4, Seed: 1},
				{Rank: 2, Seed: 2, Targets: []string{"lm_head", "embed_tokens", cfg.AllLinear()[0]}, Bias: "all", LoraBias: true},
				{Rank: 2, Seed: 3, Targets: []string{cfg.AllLinear()[1]}, Bias: "lora_only"},
			} {
				out := filepath.Join(dir, fmt.Sprintf("adapter-%d", o.Seed))
				if err := c.AdapterWith(out, o); err != nil {
					t.Fatal(err)
				}
				ad, err := model.OpenAdapter(out, nil, model.AdapterOptions{})
				if err != nil {
					t.Fatal(err)
				}
				targets := o.Targets
				if targets == nil {
					targets = []string{"all-linear"}
				}
				lin, _ := cfg.ResolveTargets(targets)
				n := 0
				for _, l := range lin {
					n += l.Count
				}
				biases := 0
				for _, x := range cfg.Tensors() {
					if x.Bias && (o.Bias == "all" || o.Bias == "lora_only" && slices.ContainsFunc(lin, func(l arch.Linear) bool { return l.Module == x.Module })) {
						biases++
					}
				}
				if len(ad.Analysis.Modules) != n || len(ad.Analysis.Others) != biases || len(ad.Analysis.Warnings) != 0 {
					t.Errorf("%+v: %d modules, %d others, warnings %v; want %d, %d", o, len(ad.Analysis.Modules), len(ad.Analysis.Others), ad.Warnings(), n, biases)
				}
				for _, m := range ad.Analysis.Modules {
					if o.LoraBias && m.Kind == peft.KindLinear && m.BBias == "" {
						t.Errorf("%s: no lora_B.bias", m.Path)
					}
				}
				ad.Close()
			}
		})
	}
}
