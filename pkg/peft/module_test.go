package peft

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/arch"
)

func TestAnalyzeFixtures(t *testing.T) {
	dir := fixtures(t)
	for _, tc := range []struct {
		name      string
		modules   int
		types     []string
		rank      int
		scaling   float32
		dora      bool
		trainable int64
	}{
		// PEFT's get_nb_trainable_parameters for tiny + r=8 all-linear: 16,384.
		{"lora", 14, llamaProjections, 8, 2, false, 16384},
		{"dora", 8, []string{"q_proj", "k_proj", "v_proj", "o_proj"}, 4, 2, true, 3968},
		{"train/plain/init", 8, []string{"q_proj", "k_proj", "v_proj", "o_proj"}, 8, 2, false, 7168},
		{"train/plain/final", 8, []string{"q_proj", "k_proj", "v_proj", "o_proj"}, 8, 2, false, 7168},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, tc.name, "adapter_config.json"))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			tensors := readTensors(t, filepath.Join(dir, tc.name, "adapter_model.safetensors"))
			a, err := Analyze(tensors, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(a.Warnings) != 0 {
				t.Errorf("warnings: %v", a.Warnings)
			}
			if len(a.Modules) != tc.modules || len(a.Others) != 0 {
				t.Fatalf("%d modules, %d others; want %d, 0", len(a.Modules), len(a.Others), tc.modules)
			}
			if a.Trainable != tc.trainable {
				t.Errorf("trainable %d, want %d", a.Trainable, tc.trainable)
			}
			// Linear shapes of the tiny Llama: hidden 64, intermediate 128, 4×16 q heads, 2×16 kv heads.
			shapes := map[string]arch.Linear{}
			for _, l := range tinyLlama(t).Linears() {
				shapes[l.Module] = l
			}
			var sum int64
			for i, m := range a.Modules {
				wantLayer := i / len(tc.types)
				if m.Layer != wantLayer || m.Rank != tc.rank || m.DoRA() != tc.dora || m.Kind != KindLinear ||
					m.ConfigRank != tc.rank || m.Scaling != tc.scaling || m.Transposed {
					t.Errorf("module %+v", m)
				}
				want := shapes[m.Type]
				if m.In != want.In || m.Out != want.Out {
					t.Errorf("%s: (in, out) = (%d, %d), want (%d, %d)", m.Path, m.In, m.Out, want.In, want.Out)
				}
				if m.BaseName() != m.Path+".weight" || !strings.HasPrefix(m.BaseName(), "model.layers.") {
					t.Errorf("%s: BaseName %q", m.Path, m.BaseName())
				}
				if m.BaseShape(false) != [2]int64{want.Out, want.In} || m.BaseShape(true) != [2]int64{want.In, want.Out} {
					t.Errorf("%s: BaseShape %v", m.Path, m.BaseShape(false))
				}
				if m.Params != Count(m.Rank, m.In, m.Out, m.DoRA(), false) {
					t.Errorf("%s: params %d", m.Path, m.Params)
				}
				if !strings.HasPrefix(m.A, Prefix+m.Path+".lora_A") || !strings.HasPrefix(m.B, Prefix+m.Path+".lora_B") {
					t.Errorf("%s: tensor names %q %q", m.Path, m.A, m.B)
				}
				sum += m.Params
			}
			if sum != a.Trainable {
				t.Errorf("Σ module params %d != trainable %d", sum, a.Trainable)
			}
			// Modules sorted by path, layer 0 before layer 1.
			if a.Modules[0].Layer != 0 || a.Modules[len(a.Modules)-1].Layer != 1 {
				t.Errorf("order: %s ... %s", a.Modules[0].Path, a.Modules[len(a.Modules)-1].Path)
			}
		})
	}
}

// synth builds LoRA tensors for modules "model.layers.<i>.<type>".
func synth(prefix string, layers int, types []string, r, in, out int64) []Tensor {
	var ts []Tensor
	for l := 0; l < layers; l++ {
		for _, ty := range types {
			p := fmt.Sprintf("%smodel.layers.%d.%s", prefix, l, ty)
			ts = append(ts, Tensor{p + ".lora_A.weight", []int64{r, in}}, Tensor{p + ".lora_B.weight", []int64{out, r}})
		}
	}
	return ts
}

func TestAnalyzeVariants(t *testing.T) {
	// Double prefix and adapter name: normalised, one aggregated warning each.
	var ts []Tensor
	for _, x := range synth(Prefix+Prefix, 3, []string{"self_attn.q_proj"}, 4, 8, 8) {
		x.Name = strings.Replace(x.Name, ".weight", ".default.weight", 1)
		ts = append(ts, x)
	}
	a, err := Analyze(ts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Modules) != 3 || a.Adapter != "default" || a.Modules[2].Path != "model.layers.2.self_attn.q_proj" {
		t.Errorf("modules %+v adapter %q", a.Modules, a.Adapter)
	}
	codes := map[string]string{}
	for _, w := range a.Warnings {
		codes[w.Code] = w.Msg
	}
	if !strings.Contains(codes[WarnDoublePrefix], "and 5 more") || !strings.Contains(codes[WarnAdapterName], "and 5 more") || len(a.Warnings) != 2 {
		t.Errorf("warnings %v", a.Warnings)
	}

	// MLX: transposed shapes.
	a, err = Analyze([]Tensor{
		{"model.layers.0.self_attn.q_proj.lora_a", []int64{64, 8}},
		{"model.layers.0.self_attn.q_proj.lora_b", []int64{8, 32}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := a.Modules[0]; !m.Transposed || m.Rank != 8 || m.In != 64 || m.Out != 32 {
		t.Errorf("MLX module %+v", m)
	}

	// Embedding LoRA with DoRA, lora_bias, modules_to_save, trainable tokens.
	cfg := NewLoraConfig(8, 16, Names("embed_tokens", "q_proj"))
	cfg.ModulesToSave = []string{"lm_head"}
	cfg.LoraBias = true
	cfg.UseDoRA = true
	a, err = Analyze([]Tensor{
		{Prefix + "model.embed_tokens.lora_embedding_A", []int64{8, 256}},
		{Prefix + "model.embed_tokens.lora_embedding_B", []int64{64, 8}},
		{Prefix + "model.embed_tokens.lora_magnitude_vector", []int64{64}},
		{Prefix + "model.layers.0.self_attn.q_proj.lora_A.weight", []int64{8, 64}},
		{Prefix + "model.layers.0.self_attn.q_proj.lora_B.weight", []int64{64, 8}},
		{Prefix + "model.layers.0.self_attn.q_proj.lora_B.bias", []int64{64}},
		{Prefix + "model.layers.0.self_attn.q_proj.lora_magnitude_vector", []int64{64}},
		{Prefix + "lm_head.weight", []int64{256, 64}},
		{Prefix + "model.embed_tokens.token_adapter.trainable_tokens_delta", []int64{3, 64}},
		{Prefix + "model.norm.weight", []int64{64}},
	}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Modules) != 2 || len(a.Others) != 3 {
		t.Fatalf("modules %+v others %+v", a.Modules, a.Others)
	}
	emb, q := a.Modules[0], a.Modules[1]
	if emb.Kind != KindEmbedding || emb.In != 256 || emb.Out != 64 || !emb.DoRA() || emb.BaseShape(false) != [2]int64{256, 64} {
		t.Errorf("embedding module %+v", emb)
	}
	if q.BBias == "" || !q.DoRA() || q.Params != Count(8, 64, 64, true, true) {
		t.Errorf("q module %+v", q)
	}
	if a.Trainable != 8*256+64*8+64+8*64+64*8+64+64+256*64+3*64+64 {
		t.Errorf("trainable %d", a.Trainable)
	}
	// model.norm.weight is not in modules_to_save: warned; lm_head is.
	if len(a.Warnings) != 1 || a.Warnings[0].Code != WarnExtraTensor || a.Warnings[0].Tensor != Prefix+"model.norm.weight" {
		t.Errorf("warnings %v", a.Warnings)
	}

	// IA3 and AdaLoRA modules.
	a, err = Analyze([]Tensor{
		{Prefix + "model.layers.0.mlp.down_proj.ia3_l", []int64{1, 128}},
		{Prefix + "model.layers.0.self_attn.k_proj.ia3_l", []int64{32, 1}},
		{Prefix + "model.layers.1.self_attn.q_proj.lora_A", []int64{4, 64}},
		{Prefix + "model.layers.1.self_attn.q_proj.lora_B", []int64{64, 4}},
		{Prefix + "model.layers.1.self_attn.q_proj.lora_E", []int64{4, 1}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := a.Modules[0]; m.Kind != KindIA3 || !m.Feedforward || m.In != 128 {
		t.Errorf("IA3 feedforward %+v", m)
	}
	if m := a.Modules[1]; m.Kind != KindIA3 || m.Feedforward || m.Out != 32 {
		t.Errorf("IA3 %+v", m)
	}
	if m := a.Modules[2]; m.Kind != KindAdaLoRA || m.Rank != 4 || m.E == "" {
		t.Errorf("AdaLoRA %+v", m)
	}
}

func TestAnalyzeConfigWarnings(t *testing.T) {
	cfg := NewLoraConfig(8, 16, Names("q_proj"))
	cfg.RankPattern = []RankEntry{{"k_proj", 4}}
	cfg.AlphaPattern = []AlphaEntry{{Pattern: "k_proj", Alpha: 4}}
	ts := append(synth(Prefix, 1, []string{"self_attn.q_proj"}, 16, 64, 64),
		synth(Prefix, 1, []string{"self_attn.k_proj"}, 4, 64, 32)...)
	ts = append(ts, Tensor{Prefix + "model.layers.0.self_attn.q_proj.lora_magnitude_vector", []int64{64}},
		Tensor{Prefix + "model.layers.0.self_attn.q_proj.base_layer.bias", []int64{64}})
	a, err := Analyze(ts, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, w := range a.Warnings {
		got[w.Code]++
	}
	// q: rank 16 vs r=8; k: not targeted; q: DoRA without use_dora; bias with bias=none.
	want := map[string]int{WarnRankMismatch: 1, WarnNotTargeted: 1, WarnDoRAMismatch: 1, WarnBiasMode: 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("warnings %v", a.Warnings)
	}
	k, q := a.Modules[0], a.Modules[1]
	if k.Type != "k_proj" || k.Alpha != 4 || k.Scaling != 1 || k.ConfigRank != 4 {
		t.Errorf("k module %+v", k)
	}
	if q.Alpha != 16 || q.Scaling != 1 || q.ConfigRank != 8 || q.Rank != 16 { // scaling from the shape's rank
		t.Errorf("q module %+v", q)
	}
}

func TestAnalyzeErrors(t *testing.T) {
	const p = Prefix + "model.layers.0.self_attn.q_proj"
	for _, tc := range []struct {
		name    string
		tensors []Tensor
		want    error
		tensor  string
	}{
		{"A without B", []Tensor{{p + ".lora_A.weight", []int64{8, 64}}}, ErrMissingTensor, p + ".lora_A.weight"},
		{"B without A", []Tensor{{p + ".lora_B.weight", []int64{64, 8}}}, ErrMissingTensor, p + ".lora_B.weight"},
		{"magnitude alone", []Tensor{{p + ".lora_magnitude_vector", []int64{64}}}, ErrMissingTensor, p + ".lora_magnitude_vector"},
		{"rank mismatch", []Tensor{{p + ".lora_A.weight", []int64{8, 64}}, {p + ".lora_B.weight", []int64{64, 4}}}, ErrShape, p + ".lora_B.weight"},
		{"A 1-D", []Tensor{{p + ".lora_A.weight", []int64{8}}, {p + ".lora_B.weight", []int64{64, 8}}}, ErrShape, p + ".lora_A.weight"},
		{"zero rank", []Tensor{{p + ".lora_A.weight", []int64{0, 64}}, {p + ".lora_B.weight", []int64{64, 0}}}, ErrShape, p + ".lora_A.weight"},
		{"negative dim", []Tensor{{p + ".lora_A.weight", []int64{-8, 64}}}, ErrShape, p + ".lora_A.weight"},
		{"overflow", []Tensor{{p + ".lora_A.weight", []int64{1 << 40, 1 << 40}}}, ErrShape, p + ".lora_A.weight"},
		{"magnitude size", []Tensor{{p + ".lora_A.weight", []int64{8, 64}}, {p + ".lora_B.weight", []int64{64, 8}}, {p + ".lora_magnitude_vector", []int64{32}}}, ErrShape, p + ".lora_magnitude_vector"},
		{"bias size", []Tensor{{p + ".lora_A.weight", []int64{8, 64}}, {p + ".lora_B.weight", []int64{64, 8}}, {p + ".lora_B.bias", []int64{8}}}, ErrShape, p + ".lora_B.bias"},
		{"merged linear", []Tensor{{p + ".lora_A.weight", []int64{16, 64}}, {p + ".lora_B.weight", []int64{128, 8, 1}}}, ErrMergedLinear, p + ".lora_B.weight"},
		{"conv", []Tensor{{p + ".lora_A.weight", []int64{8, 3, 3, 3}}, {p + ".lora_B.weight", []int64{16, 8, 1, 1}}}, ErrShape, p + ".lora_A.weight"},
		{"duplicate", []Tensor{{p + ".lora_A.weight", []int64{8, 64}}, {"model.layers.0.self_attn.q_proj.lora_A.weight", []int64{8, 64}}}, ErrDuplicateTensor, "model.layers.0.self_attn.q_proj.lora_A.weight"},
		{"mixed layouts", []Tensor{{p + ".lora_A.weight", []int64{8, 64}}, {"model.layers.0.self_attn.q_proj.lora_b", []int64{8, 64}}}, ErrBadKey, p + ".lora_A.weight"},
		{"mixed kinds", []Tensor{{p + ".lora_A.weight", []int64{8, 64}}, {p + ".lora_B.weight", []int64{64, 8}}, {p + ".ia3_l", []int64{64, 1}}}, ErrBadKey, ""},
		{"two adapters", []Tensor{{p + ".lora_A.a.weight", []int64{8, 64}}, {p + ".lora_B.b.weight", []int64{64, 8}}}, ErrUnsupportedKey, p + ".lora_B.b.weight"},
		{"adalora without E", []Tensor{{p + ".lora_A", []int64{8, 64}}, {p + ".lora_B", []int64{64, 8}}}, ErrMissingTensor, p + ".lora_A"},
		{"kohya", []Tensor{{"lora_unet_a.lora_down.weight", []int64{8, 64}}}, ErrUnsupportedKey, "lora_unet_a.lora_down.weight"},
		{"tokens shape", []Tensor{{Prefix + "model.embed_tokens.token_adapter.trainable_tokens_delta", []int64{64}}}, ErrShape, Prefix + "model.embed_tokens.token_adapter.trainable_tokens_delta"},
	} {
		_, err := Analyze(tc.tensors, nil)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		} else if tc.tensor != "" && !strings.Contains(err.Error(), `"`+tc.tensor+`"`) {
			t.Errorf("%s: err %q does not name %q", tc.name, err, tc.tensor)
		}
	}
}

func TestModulesNaturalOrder(t *testing.T) {
	ts := synth(Prefix, 12, []string{"self_attn.q_proj"}, 2, 4, 4)
	// Reverse the input order: output is still layer 0..11.
	for i, j := 0, len(ts)-1; i < j; i, j = i+1, j-1 {
		ts[i], ts[j] = ts[j], ts[i]
	}
	mods, err := Modules(ts)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range mods {
		if m.Layer != i {
			t.Fatalf("module %d is %s", i, m.Path)
		}
	}
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"a.2.x", "a.10.x", true}, {"a.10.x", "a.2.x", false}, {"a.02", "a.2", true}, {"a", "a.b", true},
		{"a.b", "a", false}, {"a.b", "a.b", false}, {"b", "a.z", false}, {"x.k", "x.q", true},
	} {
		if got := naturalLess(tc.a, tc.b); got != tc.want {
			t.Errorf("naturalLess(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}

func FuzzAnalyze(f *testing.F) {
	f.Add("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", int64(8), int64(64),
		"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", int64(64), int64(8))
	f.Add("x.lora_a", int64(64), int64(8), "x.lora_b", int64(8), int64(32))
	f.Add("x.lora_embedding_A", int64(8), int64(256), "x.lora_magnitude_vector", int64(64), int64(-1))
	f.Fuzz(func(t *testing.T, n1 string, a0, a1 int64, n2 string, b0, b1 int64) {
		shape := func(x, y int64) []int64 {
			if y < 0 {
				return []int64{x}
			}
			return []int64{x, y}
		}
		a, err := Analyze([]Tensor{{n1, shape(a0, a1)}, {n2, shape(b0, b1)}}, NewLoraConfig(8, 16, Names("q_proj")))
		if err != nil {
			return
		}
		var sum int64
		for _, m := range a.Modules {
			if m.Kind != KindIA3 && (m.Rank < 1 || m.In < 1 || m.Out < 1) {
				t.Fatalf("bad module %+v", m)
			}
			sum += m.Params
		}
		for _, o := range a.Others {
			n, _ := Tensor{Shape: o.Shape}.NumElements()
			sum += n
		}
		if sum != a.Trainable {
			t.Fatalf("Σ params %d != trainable %d", sum, a.Trainable)
		}
	})
}
