package train

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/llama"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// writeArchBase writes a random checkpoint folder of config js: the text
// model's tensors under their names with prefix replacing "model." (a
// multimodal wrapper's layout), plus extra tensors.
func writeArchBase(t *testing.T, dir, js, prefix string, extra map[string][]int64) *arch.Config {
	t.Helper()
	cfg, err := arch.ParseConfig([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	ts := map[string]safetensors.Tensor{}
	add := func(name string, shape []int64, lo, hi float64) {
		v := make([]float32, num.Elements(shape))
		for i := range v {
			v[i] = float32(lo + (hi-lo)*r.Float64())
		}
		ts[name] = safetensors.Tensor{DType: dtype.F32, Shape: shape, Data: num.F32Bytes(v)}
	}
	for _, ti := range cfg.Tensors() {
		name := ti.Name
		if p, ok := strings.CutPrefix(name, "model."); ok && prefix != "" {
			name = prefix + p
		}
		lo, hi := -0.3, 0.3
		if ti.Role == arch.RoleNorm {
			lo, hi = 0.8-float64(cfg.Norm.Offset()), 1.2-float64(cfg.Norm.Offset())
		}
		add(name, ti.Shape, lo, hi)
	}
	for name, shape := range extra {
		add(name, shape, -1, 1)
	}
	var st bytes.Buffer
	if err := safetensors.Encode(&st, map[string]string{"format": "pt"}, ts); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "model.safetensors"), st.String())
	write(t, filepath.Join(dir, "config.json"), js)
	return cfg
}

// idsData writes n examples of pre-tokenized ids below vocab.
func idsData(t *testing.T, path string, vocab, n, seq int) string {
	r := rand.New(rand.NewPCG(3, 4))
	var b strings.Builder
	for range n {
		ids := make([]string, seq)
		for i := range ids {
			ids[i] = fmt.Sprint(r.IntN(vocab))
		}
		fmt.Fprintf(&b, `{"input_ids": [%s]}`+"\n", strings.Join(ids, ", "))
	}
	return write(t, path, b.String())
}

const archTiny = `"hidden_size": 32, "intermediate_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2,
  "vocab_size": 64, "num_hidden_layers": 2`

// TestArchRun trains Qwen2 with PEFT's bias "lora_only" and Phi-3 with the
// default targets (its fused qkv_proj and o_proj) end to end: the adapter
// has PEFT's names and config, the trained biases are saved as
// <module>.base_layer.bias, the loss falls, and the adapter reads back with
// the same structure (as a resumed run needs).
func TestArchRun(t *testing.T) {
	for _, c := range []struct {
		name, js, bias string
		want           []string // tensor name suffixes of layer 0
	}{
		{"qwen2", `{"model_type": "qwen2", ` + archTiny + `, "tie_word_embeddings": true}`, "lora_only",
			[]string{"self_attn.q_proj.base_layer.bias", "self_attn.q_proj.lora_A.weight", "self_attn.v_proj.base_layer.bias",
				"self_attn.o_proj.lora_B.weight"}},
		{"phi3", `{"model_type": "phi3", ` + archTiny + `, "partial_rotary_factor": 0.5}`, "",
			[]string{"self_attn.qkv_proj.lora_A.weight", "self_attn.qkv_proj.lora_B.weight", "self_attn.o_proj.lora_A.weight"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			base := filepath.Join(dir, "base")
			cfg := writeArchBase(t, base, c.js, "", nil)
			o := DefaultOptions()
			o.Base, o.Output, o.Device, o.Seq = base, filepath.Join(dir, "out"), "cpu", 16
			o.Data = idsData(t, filepath.Join(dir, "d.jsonl"), cfg.Vocab, 4, 12)
			o.Rank, o.Dropout, o.Bias, o.MaxSteps, o.Batch, o.LR = 4, 0, c.bias, 4, 2, 1e-2
			res, err := Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if !(res.Last.Loss < res.First.Loss) {
				t.Errorf("loss %v → %v", res.First.Loss, res.Last.Loss)
			}
			ad, pc := analyze(t, o.Output, nil)
			if want := map[string]string{"": "none", "lora_only": "lora_only"}[c.bias]; pc.Bias != want {
				t.Errorf("adapter_config bias %q, want %q", pc.Bias, want)
			}
			var names []string
			for _, m := range ad.Modules {
				names = append(names, m.A, m.B)
			}
			for _, o := range ad.Others {
				names = append(names, o.Key.Name)
			}
			for _, w := range c.want {
				if !slices.Contains(names, "base_model.model.model.layers.0."+w) {
					t.Errorf("no %s in %v", w, names)
				}
			}
			back, _, err := OpenAdapter(o.Output, nil, cfg, 0)
			if err != nil {
				t.Fatal(err)
			}
			fresh, err := NewAdapter(cfg, AdapterOptions{Rank: 4, Alpha: 32, Targets: cfg.AttentionTargets(), Bias: c.bias})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(back.Specs, fresh.Specs) {
				t.Errorf("read back %+v\nwant %+v", back.Specs, fresh.Specs)
			}
		})
	}
}

// TestGemma3Multimodal: a Gemma3ForConditionalGeneration checkpoint (text
// model under model.language_model, a vision tower beside it) computes
// what the same weights as a gemma3_text checkpoint compute, and an
// adapter trained on it is written in its layout and read back.
func TestGemma3Multimodal(t *testing.T) {
	text := `"model_type": "gemma3_text", ` + archTiny + `, "head_dim": 8, "sliding_window": 4, "sliding_window_pattern": 2`
	dir := t.TempDir()
	mm := filepath.Join(dir, "mm")
	cfg := writeArchBase(t, mm, `{"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"],
	  "text_config": {`+text+`}}`, "model.language_model.",
		map[string][]int64{"model.vision_tower.vision_model.embeddings.patch_embedding.weight": {8, 3, 2, 2}})
	plain := filepath.Join(dir, "text")
	writeArchBase(t, plain, `{`+text+`}`, "", nil)
	b := llama.Batch{Rows: 1, Seq: 10, IDs: []int32{1, 5, 9, 2, 33, 7, 60, 3, 8, 11}}
	var logits [2][]float32
	for i, p := range []string{mm, plain} {
		base, err := OpenBase(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		m, err := base.NewModel(cpu.New(0), llama.Options{Precision: llama.PrecisionF32})
		if err != nil {
			t.Fatal(err)
		}
		logits[i] = make([]float32, b.Seq*cfg.Vocab)
		if err := m.Logits(b, logits[i]); err != nil {
			t.Fatal(err)
		}
		m.Close()
		base.Close()
	}
	if !slices.Equal(logits[0], logits[1]) {
		t.Error("the multimodal checkpoint's language model computes something else")
	}
	o := DefaultOptions()
	o.Base, o.Output, o.Device, o.Seq = mm, filepath.Join(dir, "out"), "cpu", 16
	o.Data = idsData(t, filepath.Join(dir, "d.jsonl"), cfg.Vocab, 2, 12)
	o.Rank, o.Dropout, o.MaxSteps, o.Batch = 4, 0, 1, 2
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	src, err := checkpoint.Open(o.Output, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, ok := src.Info("base_model.model.model.language_model.layers.1.self_attn.o_proj.lora_B.weight"); !ok {
		t.Errorf("adapter tensors %v", src.Tensors)
	}
	back, _, err := OpenAdapter(o.Output, nil, cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Specs) != 4*cfg.Layers || back.Specs[0].Module != "q_proj" {
		t.Errorf("read back %+v", back.Specs)
	}
}
