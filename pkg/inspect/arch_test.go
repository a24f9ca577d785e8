package inspect

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/randmodel"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/checkpoint"
)

// TestEveryArchitecture inspects a tiny checkpoint of every architecture: the
// report names the architecture and model_type, gives the shape, the specifics
// and the ropes, splits the parameters by the registry's roles (nothing
// "other"), and warns about nothing.
func TestEveryArchitecture(t *testing.T) {
	for _, mt := range randmodel.ModelTypes() {
		t.Run(mt, func(t *testing.T) {
			c := randmodel.Tiny(mt, 1)
			dir := filepath.Join(t.TempDir(), "m")
			if err := c.Write(dir); err != nil {
				t.Fatal(err)
			}
			cfg, _ := c.Arch()
			r := inspectPath(t, dir, Options{})
			if len(r.Warnings) != 0 {
				t.Errorf("warnings: %q", r.Warnings)
			}
			s := r.Config
			if r.ModelType != mt || r.Architecture == "" || s == nil || s.Family != cfg.Arch.Name || s.GGUF != cfg.Arch.GGUFArch ||
				s.Hidden != 64 || s.HeadDim != cfg.HeadDim || s.Layers != cfg.Layers || len(s.Ropes) == 0 {
				t.Fatalf("report %s/%s, config %+v", r.Architecture, r.ModelType, s)
			}
			p, b := cfg.Params(), r.Breakdown
			if b.Other != 0 || b.Embeddings != p.Embeddings || b.Attention != p.Attention || b.MLP != p.MLP || b.Norms != p.Norms || b.LMHead != p.LMHead {
				t.Errorf("breakdown %+v, the registry counts %+v", *b, p)
			}
			if r.TotalParams != p.Total() {
				t.Errorf("%d parameters, the registry counts %d", r.TotalParams, p.Total())
			}
			var text bytes.Buffer
			WriteText(&text, r)
			for _, want := range []string{"model_type " + mt, "shape ", "rope "} {
				if !strings.Contains(text.String(), want) {
					t.Errorf("text report lacks %q:\n%s", want, text.String())
				}
			}
			if len(cfg.Specifics()) > 0 && !strings.Contains(text.String(), "specifics ") {
				t.Errorf("no specifics line:\n%s", text.String())
			}
		})
	}
}

// TestConfigWarnings: a config.json the registry does not know is shown without
// a warning; a warning names the tool that refuses, and --json always carries the
// architecture and model_type.
func TestConfigWarnings(t *testing.T) {
	tiny := randmodel.Tiny("llama", 1)
	for _, tc := range []struct {
		name string
		set  map[string]any
		warn string // "" for none
	}{
		{"unknown model_type", map[string]any{"model_type": "gpt_neox", "architectures": []string{"GPTNeoXForCausalLM"}, "rotary_pct": 0.25}, ""},
		{"unsupported rope", map[string]any{"rope_parameters": map[string]any{"rope_type": "yarn", "factor": 4.0}}, "lora-gguf and lora-train cannot use this config.json"},
		{"gemma2 untied", map[string]any{"model_type": "gemma2", "architectures": []string{"Gemma2ForCausalLM"}}, "lora-gguf cannot export this model: tie_word_embeddings"},
		{"no model_type", map[string]any{"model_type": nil}, "lora-gguf and lora-train cannot use this config.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A Llama checkpoint with the config.json changed (randmodel
			// itself writes only what the registry accepts).
			dir := filepath.Join(t.TempDir(), "m")
			if err := tiny.Write(dir); err != nil {
				t.Fatal(err)
			}
			c := tiny
			c.Extra = tc.set
			if err := os.WriteFile(filepath.Join(dir, "config.json"), c.ConfigJSON(), 0o644); err != nil {
				t.Fatal(err)
			}
			r := inspectPath(t, dir, Options{})
			if tc.warn == "" && len(r.Warnings) != 0 || tc.warn != "" && (len(r.Warnings) != 1 || !strings.HasPrefix(r.Warnings[0], tc.warn)) {
				t.Errorf("warnings %q, want %q", r.Warnings, tc.warn)
			}
			b, _ := json.Marshal(r)
			var m map[string]any
			json.Unmarshal(b, &m)
			if mt, _ := tc.set["model_type"].(string); mt != "" && (m["model_type"] != mt || m["architecture"] == nil) {
				t.Errorf("JSON architecture %v, model_type %v", m["architecture"], m["model_type"])
			}
			if r.Config == nil || r.Config.Hidden != 64 || r.Config.Layers != 2 {
				t.Errorf("shape %+v", r.Config)
			}
		})
	}
}

// TestPlanShapes checks plan figures for every built-in shape: the registry's
// verified LoRA counts at r = 16 (pkg/arch TestShapeCounts), the targets each
// architecture accepts, and a memory estimate that grows with what the layers
// keep.
func TestPlanShapes(t *testing.T) {
	for _, tc := range []struct {
		shape      string
		total      int64
		attn       string
		attnParams int64
		allLinear  int64
		targets    string
	}{
		{"llama3-8b", 8_030_261_248, "q_proj,k_proj,v_proj,o_proj", 13_631_488, 41_943_040, "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head, embed_tokens, all-linear"},
		{"llama3.2-1b", 1_235_814_400, "q_proj,k_proj,v_proj,o_proj", 3_407_872, 11_272_192, ""},
		{"mistral-7b-v0.3", 7_248_023_552, "q_proj,k_proj,v_proj,o_proj", 13_631_488, 41_943_040, ""},
		{"qwen2.5-7b", 7_615_616_512, "q_proj,k_proj,v_proj,o_proj", 10_092_544, 40_370_176, ""},
		{"qwen3-8b", 8_190_735_360, "q_proj,k_proj,v_proj,o_proj", 15_335_424, 43_646_976, ""},
		{"gemma2-9b", 9_241_705_984, "q_proj,k_proj,v_proj,o_proj", 17_891_328, 54_018_048, ""},
		{"gemma3-4b", 3_880_263_168, "q_proj,k_proj,v_proj,o_proj", 8_912_896, 29_802_496, ""},
		{"phi3.5-mini", 3_821_079_552, "qkv_proj,o_proj", 9_437_184, 25_165_824, "o_proj, qkv_proj, gate_up_proj, down_proj, lm_head, embed_tokens, all-linear"},
	} {
		t.Run(tc.shape, func(t *testing.T) {
			cfg, err := checkpoint.LoadConfig(tc.shape)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				targets string
				want    int64
			}{{tc.attn, tc.attnParams}, {"all-linear", tc.allLinear}} {
				r, err := Plan(cfg, PlanOptions{Rank: 16, Alpha: 32, Targets: []string{c.targets}, Batch: 1, Seq: 2048})
				if err != nil {
					t.Fatal(err)
				}
				if r.TotalParams != tc.total || r.TrainableParams != c.want {
					t.Errorf("%s: %d of %d, want %d of %d", c.targets, r.TrainableParams, r.TotalParams, c.want, tc.total)
				}
				if got := strings.Join(r.Config.Targets, ", "); tc.targets != "" && got != tc.targets {
					t.Errorf("targets %s, want %s", got, tc.targets)
				}
				m := r.Memory
				if m.QLoRA.Weights >= m.LoRA.Weights || m.LoRA.Weights != 2*tc.total || m.LoRA.Activations <= 0 {
					t.Errorf("memory %+v", m)
				}
			}
			if _, err := Plan(cfg, PlanOptions{Rank: 16, Targets: []string{"c_attn"}}); err == nil || !strings.Contains(err.Error(), "all-linear") {
				t.Errorf("unknown target: %v", err)
			}
		})
	}
	// What the layers keep: q/k norms and sandwich norms add activations.
	acts := func(js string) int64 {
		cfg, err := arch.ParseConfig([]byte(js))
		if err != nil {
			t.Fatal(err)
		}
		r, err := Plan(cfg, PlanOptions{Rank: 8, Targets: []string{"q_proj"}, Batch: 1, Seq: 128})
		if err != nil {
			t.Fatal(err)
		}
		return r.Memory.LoRA.Activations
	}
	sizes := `"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 100`
	llama, qwen3, gemma2 := acts(`{"model_type": "llama", `+sizes+`}`), acts(`{"model_type": "qwen3", `+sizes+`}`), acts(`{"model_type": "gemma2", `+sizes+`}`)
	per := int64(2 * 128 * 2) // 2 bytes × tokens × layers
	if qwen3-llama != per*(64+32) || gemma2-llama != per*2*64 {
		t.Errorf("activations: llama %d, qwen3 %d (+q/k norms), gemma2 %d (+sandwich norms)", llama, qwen3, gemma2)
	}
}

// TestPlanText prints the model line and the accepted targets.
func TestPlanText(t *testing.T) {
	o := DefaultPlanOptions()
	o.Targets = []string{"q_proj"}
	if r, err := PlanFile("phi3.5-mini", o); err == nil {
		t.Fatalf("phi3 has no q_proj, yet q_proj planned: %+v", r.Modules)
	}
	r, err := PlanFile("phi3.5-mini", DefaultPlanOptions()) // the default: qkv_proj and o_proj
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	WriteText(&b, r)
	for _, want := range []string{"model_type phi3: Phi-3 / Phi-3.5 / Phi-4, GGUF phi3", "targets         o_proj, qkv_proj, gate_up_proj",
		"fused qkv_proj", "longrope", "9,437,184"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
	if r.Modules[0].Name != "o_proj" || r.Modules[1].Name != "qkv_proj" {
		t.Errorf("modules %+v", r.Modules)
	}
}

// TestPlanDefaultTargets: the default targets are the architecture's own
// attention projections, Phi-3's fused qkv_proj and o_proj included.
func TestPlanDefaultTargets(t *testing.T) {
	for _, c := range []struct {
		shape     string
		trainable int64
	}{
		// r·(in + out) per projection per layer: Phi-3.5-mini's qkv_proj
		// 3072 → 9216 and o_proj 3072 → 3072 over 32 layers.
		{"phi3.5-mini", 16 * (3072 + 9216 + 3072 + 3072) * 32},
		// Llama 3 8B: q, o 4096 → 4096, k, v 4096 → 1024, 32 layers.
		{"llama3-8b", 16 * (2*(4096+4096) + 2*(4096+1024)) * 32},
	} {
		cfg, err := checkpoint.LoadConfig(c.shape)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Plan(cfg, DefaultPlanOptions())
		if err != nil {
			t.Fatalf("%s: %v", c.shape, err)
		}
		if r.TrainableParams != c.trainable {
			t.Errorf("%s: %d trainable, want %d", c.shape, r.TrainableParams, c.trainable)
		}
	}
}
