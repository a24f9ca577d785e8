package peft

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var fixtureConfigs = []string{"lora", "dora", "train/plain/init", "train/plain/final"}

// TestMarshalGolden: PEFT wrote these with json.dumps(indent=2,
// sort_keys=True); parse + Marshal must reproduce them byte for byte.
func TestMarshalGolden(t *testing.T) {
	dir := fixtures(t)
	for _, name := range fixtureConfigs {
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join(dir, name, "adapter_config.json"))
			if err != nil {
				t.Fatal(err)
			}
			c, err := Parse(want)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if len(c.Extra) != 0 {
				t.Errorf("unexpected Extra %v", c.Extra)
			}
			got, err := Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Marshal differs from the PEFT file:\n got: %s\nwant: %s", got, want)
			}
		})
	}
}

func TestParseFixtureFields(t *testing.T) {
	dir := fixtures(t)
	load := func(name string) *Config {
		b, err := os.ReadFile(filepath.Join(dir, name, "adapter_config.json"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := load("lora")
	if c.R != 8 || c.LoraAlpha != 16 || c.PeftType != TypeLoRA || c.TaskType != TaskCausalLM ||
		c.InitLoraWeights != InitFalse || c.UseDoRA || c.PeftVersion != "0.21.0" || c.QALoRAGroupSize != 16 ||
		c.MegatronCore != "megatron.core" || string(c.LoftQConfig) != "{}" || c.Bias != BiasNone {
		t.Errorf("lora config fields: %+v", c)
	}
	wantTargets := []string{"v_proj", "gate_proj", "q_proj", "k_proj", "up_proj", "o_proj", "down_proj"}
	if c.TargetModules.Kind != SelectList || strings.Join(c.TargetModules.List, ",") != strings.Join(wantTargets, ",") {
		t.Errorf("target_modules = %+v, want JSON order %v", c.TargetModules, wantTargets)
	}
	d := load("dora")
	if !d.UseDoRA || d.R != 4 || d.LoraAlpha != 8 {
		t.Errorf("dora config fields: %+v", d)
	}
	if i := load("train/plain/init"); i.InitLoraWeights != InitTrue {
		t.Errorf("init: init_lora_weights = %q", i.InitLoraWeights)
	}
}

func TestMarshalCompat(t *testing.T) {
	c := NewLoraConfig(16, 32, Names("v_proj", "q_proj", "k_proj", "o_proj", "q_proj"))
	c.LoraDropout = 0.05
	c.BaseModelNameOrPath = "meta-llama/Llama-3.1-8B"
	c.PeftVersion = "0.21.0"                                        // never written in compat mode
	c.Extra = []Field{{Key: "custom", Value: json.RawMessage(`1`)}} // dropped too
	got, err := MarshalCompat(c)
	if err != nil {
		t.Fatal(err)
	}
	// json.dumps(d, indent=2, sort_keys=True) from Python 3.11.
	want := `{
  "alpha_pattern": {},
  "base_model_name_or_path": "meta-llama/Llama-3.1-8B",
  "bias": "none",
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_lora_weights": true,
  "layers_pattern": null,
  "layers_to_transform": null,
  "lora_alpha": 32,
  "lora_dropout": 0.05,
  "modules_to_save": null,
  "peft_type": "LORA",
  "r": 16,
  "rank_pattern": {},
  "revision": null,
  "target_modules": [
    "k_proj",
    "o_proj",
    "q_proj",
    "v_proj"
  ],
  "task_type": "CAUSAL_LM"
}`
	if string(got) != want {
		t.Errorf("MarshalCompat:\n got: %s\nwant: %s", got, want)
	}
	// The input config is not modified by the sorting.
	if c.TargetModules.List[0] != "v_proj" {
		t.Errorf("MarshalCompat modified the config: %v", c.TargetModules.List)
	}

	c.UseRSLoRA, c.UseDoRA = true, true
	c.RankPattern = []RankEntry{{"v_proj", 4}, {"model.layers.0.self_attn.q_proj", 8}}
	c.AlphaPattern = []AlphaEntry{{Pattern: "down_proj", Alpha: 64}, {Pattern: "o_proj", Alpha: 1.5e-05}}
	c.ModulesToSave = []string{"lm_head"}
	c.LayersToTransform = []int{0, 1}
	c.LayersPattern = Pattern("layers")
	c.BaseModelNameOrPath = "bäse/ü😀"
	c.LoraAlpha, c.LoraDropout = 16.5, 0
	c.InitLoraWeights = InitGaussian
	got, err = MarshalCompat(c)
	if err != nil {
		t.Fatal(err)
	}
	want = `{
  "alpha_pattern": {
    "down_proj": 64,
    "o_proj": 1.5e-05
  },
  "base_model_name_or_path": "b\u00e4se/\u00fc\ud83d\ude00",
  "bias": "none",
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_lora_weights": "gaussian",
  "layers_pattern": "layers",
  "layers_to_transform": [
    0,
    1
  ],
  "lora_alpha": 16.5,
  "lora_dropout": 0.0,
  "modules_to_save": [
    "lm_head"
  ],
  "peft_type": "LORA",
  "r": 16,
  "rank_pattern": {
    "model.layers.0.self_attn.q_proj": 8,
    "v_proj": 4
  },
  "revision": null,
  "target_modules": [
    "k_proj",
    "o_proj",
    "q_proj",
    "v_proj"
  ],
  "task_type": "CAUSAL_LM",
  "use_dora": true,
  "use_rslora": true
}`
	if string(got) != want {
		t.Errorf("MarshalCompat with options:\n got: %s\nwant: %s", got, want)
	}
	// A compat file parses back to the same values.
	back, err := Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	if back.LoraAlpha != 16.5 || !back.UseDoRA || back.RankPattern[0].Pattern != "model.layers.0.self_attn.q_proj" ||
		back.BaseModelNameOrPath != "bäse/ü😀" || back.InitLoraWeights != InitGaussian || back.R != 16 {
		t.Errorf("round trip: %+v", back)
	}
}

func TestMarshalCompatFeatureKeys(t *testing.T) {
	c := NewLoraConfig(8, 16, Names("q_proj"))
	c.LoraBias = true
	c.ExcludeModules = Names("b", "a")
	c.LayerReplication = json.RawMessage(`[[0,4],[2,5]]`)
	got, err := MarshalCompat(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"lora_bias": true`, `"exclude_modules": [
    "a",
    "b"
  ]`, `"layer_replication": [
    [
      0,
      4
    ],`} {
		if !strings.Contains(string(got), k) {
			t.Errorf("missing %s in\n%s", k, got)
		}
	}
	for _, k := range []string{"peft_version", "use_dora", "use_rslora", "megatron", "loftq", "qalora", "ensure_weight_tying"} {
		if strings.Contains(string(got), k) {
			t.Errorf("unexpected %s in\n%s", k, got)
		}
	}
	ia3 := &Config{PeftType: TypeIA3}
	if _, err := MarshalCompat(ia3); !errors.Is(err, ErrUnsupportedType) {
		t.Errorf("MarshalCompat(IA3) err = %v", err)
	}
}

// TestRoundTripPreserves: unknown keys, nested values, number spellings and
// pattern order survive Parse + Marshal (as Python would re-save them).
func TestRoundTripPreserves(t *testing.T) {
	in := `{"peft_type": "LORA", "r": 8, "lora_alpha": 16.0, "lora_dropout": 0,
	"rank_pattern": {"z": 2, "a": 4}, "alpha_pattern": {"q": 3.0, "k": 2},
	"layers_to_transform": 3, "layers_pattern": ["layers", "h"], "target_modules": ".*\\.q_proj",
	"mystery": {"b": [1, 2.50, 1E5, -0, "\u00e9"], "a": null}, "lora_parameters": {"scale": 20.0},
	"init_lora_weights": "pissa_niter_4", "peft_version": "0.15.0"}`
	c, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if c.RankPattern[0].Pattern != "z" || c.RankPattern[1].Rank != 4 {
		t.Errorf("rank_pattern order lost: %+v", c.RankPattern)
	}
	if len(c.Extra) != 2 || c.Extra[0].Key != "mystery" || c.Extra[1].Key != "lora_parameters" {
		t.Fatalf("Extra = %+v", c.Extra)
	}
	if v, ok := c.ExtraValue("lora_parameters"); !ok || string(v) != `{"scale":20.0}` {
		t.Errorf("ExtraValue = %s %v", v, ok)
	}
	if c.TargetModules.Kind != SelectString || c.TargetModules.String != `.*\.q_proj` {
		t.Errorf("target_modules = %+v", c.TargetModules)
	}
	got, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, frag := range []string{
		`"lora_alpha": 16.0,`, `"lora_dropout": 0,`, `"layers_to_transform": 3,`,
		`"alpha_pattern": {
    "k": 2,
    "q": 3.0
  },`,
		`"mystery": {
    "a": null,
    "b": [
      1,
      2.5,
      100000.0,
      0,
      "\u00e9"
    ]
  },`,
		`"lora_parameters": {
    "scale": 20.0
  },`,
		`"init_lora_weights": "pissa_niter_4",`, `"peft_version": "0.15.0",`,
		`"target_modules": ".*\\.q_proj",`,
	} {
		if !strings.Contains(string(got), frag) {
			t.Errorf("missing %s in\n%s", frag, got)
		}
	}
	// Marshal output is a fixed point.
	c2, err := Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	got2, err := Marshal(c2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, got2) {
		t.Errorf("Marshal not idempotent:\n%s\n%s", got, got2)
	}
}

func TestParseDefaultsAndDuplicates(t *testing.T) {
	c, err := Parse([]byte(`{"peft_type": "LORA", "r": 4, "r": 16, "target_modules": ["q_proj", "v_proj"]}`))
	if err != nil {
		t.Fatal(err)
	}
	// Python: the last duplicate wins; absent keys take LoraConfig defaults.
	if c.R != 16 || c.LoraAlpha != 8 || c.Bias != BiasNone || c.InitLoraWeights != InitTrue ||
		c.InferenceMode || c.LoraDropout != 0 || c.UseRSLoRA || c.ModulesToSave != nil {
		t.Errorf("defaults: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, key string }{
		{``, ""},
		{`[]`, ""},
		{`{"r": 8}`, "peft_type"},
		{`{"peft_type": 1}`, "peft_type"},
		{`{"peft_type": "LORA", "r": "8"}`, "r"},
		{`{"peft_type": "LORA", "r": 8.5}`, "r"},
		{`{"peft_type": "LORA", "r": 99999999999}`, "r"},
		{`{"peft_type": "LORA", "lora_alpha": "16"}`, "lora_alpha"},
		{`{"peft_type": "LORA", "lora_alpha": 1e999}`, "lora_alpha"},
		{`{"peft_type": "LORA", "target_modules": [1]}`, "target_modules"},
		{`{"peft_type": "LORA", "target_modules": {"a": 1}}`, "target_modules"},
		{`{"peft_type": "LORA", "use_dora": "yes"}`, "use_dora"},
		{`{"peft_type": "LORA", "rank_pattern": {"q": 2.0}}`, "rank_pattern"},
		{`{"peft_type": "LORA", "rank_pattern": []}`, "rank_pattern"},
		{`{"peft_type": "LORA", "alpha_pattern": {"q": "x"}}`, "alpha_pattern"},
		{`{"peft_type": "LORA", "layers_to_transform": [0, "1"]}`, "layers_to_transform"},
		{`{"peft_type": "LORA", "init_lora_weights": 1}`, "init_lora_weights"},
		{`{"peft_type": "LORA", "modules_to_save": "lm_head"}`, "modules_to_save"},
		{`{"peft_type": "LORA"} {}`, ""},
		{"{\"peft_type\": \"LORA\", \"x\": \"\xff\"}", ""},
		{strings.Repeat("[", 100) + strings.Repeat("]", 100), ""},
	} {
		_, err := Parse([]byte(tc.in))
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Parse(%.60q) err = %v, want ErrInvalidConfig", tc.in, err)
			continue
		}
		if tc.key != "" && !strings.Contains(err.Error(), `"`+tc.key+`"`) {
			t.Errorf("Parse(%.60q) err = %v, does not name key %q", tc.in, err, tc.key)
		}
	}
}

func TestParseOtherTypes(t *testing.T) {
	ia3 := `{"peft_type": "IA3", "task_type": "CAUSAL_LM", "target_modules": ["k_proj", "v_proj", "down_proj"],
	"feedforward_modules": ["down_proj"], "fan_in_fan_out": false, "init_ia3_weights": true, "modules_to_save": null,
	"inference_mode": true, "base_model_name_or_path": "m"}`
	c, err := Parse([]byte(ia3))
	if err != nil {
		t.Fatal(err)
	}
	if c.FeedforwardModules.Kind != SelectList || c.FeedforwardModules.List[0] != "down_proj" ||
		len(c.TargetModules.List) != 3 || c.R != 0 {
		t.Errorf("IA3: %+v", c)
	}
	if err := c.Validate(); !errors.Is(err, ErrUnsupportedType) {
		t.Errorf("IA3 Validate = %v", err)
	}
	if err := c.ValidateWith(ValidateOptions{AllowIA3: true}); err != nil {
		t.Errorf("IA3 ValidateWith(AllowIA3) = %v", err)
	}
	m, err := NewMatcher(c)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Feedforward("model.layers.0.mlp.down_proj") || m.Feedforward("model.layers.0.self_attn.k_proj") {
		t.Error("IA3 feedforward matching")
	}
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	// Only the keys present are written back; nothing LoRA-specific is added.
	want := `{
  "base_model_name_or_path": "m",
  "fan_in_fan_out": false,
  "feedforward_modules": [
    "down_proj"
  ],
  "inference_mode": true,
  "init_ia3_weights": true,
  "modules_to_save": null,
  "peft_type": "IA3",
  "target_modules": [
    "k_proj",
    "v_proj",
    "down_proj"
  ],
  "task_type": "CAUSAL_LM"
}`
	if string(out) != want {
		t.Errorf("IA3 Marshal:\n%s", out)
	}

	ada := `{"peft_type": "ADALORA", "r": 8, "lora_alpha": 32, "target_r": 4, "init_r": 12,
	"rank_pattern": {"model.layers.0.self_attn.q_proj": [true, false, true]}}`
	c, err = Parse([]byte(ada))
	if err != nil {
		t.Fatal(err)
	}
	if c.R != 8 || c.LoraAlpha != 32 {
		t.Errorf("ADALORA: %+v", c)
	}
	if _, ok := c.ExtraValue("rank_pattern"); !ok {
		t.Error("ADALORA rank_pattern not kept raw")
	}
	if err := c.Validate(); !errors.Is(err, ErrUnsupportedType) {
		t.Errorf("ADALORA Validate = %v", err)
	}

	pt := `{"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 20, "token_dim": 4096,
	"num_transformer_submodules": 1, "num_attention_heads": 32, "num_layers": 32, "prompt_tuning_init": "RANDOM"}`
	c, err = Parse([]byte(pt))
	if err != nil {
		t.Fatal(err)
	}
	if c.NumVirtualTokens != 20 || c.TokenDim != 4096 || c.NumTransformerSubmodules != 1 ||
		c.NumAttentionHeads != 32 || c.NumLayers != 32 {
		t.Errorf("PROMPT_TUNING: %+v", c)
	}
	if err := c.Validate(); !errors.Is(err, ErrUnsupportedType) {
		t.Errorf("PROMPT_TUNING Validate = %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		opts     ValidateOptions
		want     error
		key      string
	}{
		{"ok", `{"peft_type":"LORA","target_modules":["q_proj"]}`, ValidateOptions{}, nil, ""},
		{"loha", `{"peft_type":"LOHA"}`, ValidateOptions{}, ErrUnsupportedType, "peft_type"},
		{"qalora", `{"peft_type":"LORA","use_qalora":true}`, ValidateOptions{}, ErrUnsupportedVariant, "use_qalora"},
		{"alora", `{"peft_type":"LORA","alora_invocation_tokens":[1,2]}`, ValidateOptions{}, ErrUnsupportedVariant, "alora_invocation_tokens"},
		{"alora empty", `{"peft_type":"LORA","alora_invocation_tokens":[]}`, ValidateOptions{}, nil, ""},
		{"velora", `{"peft_type":"LORA","velora_config":{"a":1}}`, ValidateOptions{}, ErrUnsupportedVariant, "velora_config"},
		{"monteclora", `{"peft_type":"LORA","monteclora_config":{"a":1}}`, ValidateOptions{}, ErrUnsupportedVariant, "monteclora_config"},
		{"bdlora", `{"peft_type":"LORA","use_bdlora":true}`, ValidateOptions{}, ErrUnsupportedVariant, "use_bdlora"},
		{"arrow", `{"peft_type":"LORA","arrow_config":{"top_k":3}}`, ValidateOptions{}, ErrUnsupportedVariant, "arrow_config"},
		{"kasa", `{"peft_type":"LORA","kasa_config":{"x":1}}`, ValidateOptions{}, ErrUnsupportedVariant, "kasa_config"},
		{"mica", `{"peft_type":"LORA","init_lora_weights":"mica"}`, ValidateOptions{}, ErrUnsupportedVariant, "init_lora_weights"},
		{"moe", `{"peft_type":"LORA","target_parameters":["experts.gate_up_proj"]}`, ValidateOptions{}, ErrUnsupportedFeature, "target_parameters"},
		{"replication", `{"peft_type":"LORA","layer_replication":[[0,4]]}`, ValidateOptions{}, ErrUnsupportedFeature, "layer_replication"},
		{"pissa", `{"peft_type":"LORA","init_lora_weights":"pissa_niter_16"}`, ValidateOptions{}, ErrMutatedBase, "init_lora_weights"},
		{"pissa allowed", `{"peft_type":"LORA","init_lora_weights":"pissa"}`, ValidateOptions{AllowMutatedBase: true}, nil, ""},
		{"olora", `{"peft_type":"LORA","init_lora_weights":"olora"}`, ValidateOptions{}, ErrMutatedBase, "init_lora_weights"},
		{"corda", `{"peft_type":"LORA","init_lora_weights":"corda"}`, ValidateOptions{}, ErrMutatedBase, "init_lora_weights"},
		{"loftq", `{"peft_type":"LORA","init_lora_weights":"loftq"}`, ValidateOptions{}, ErrMutatedBase, "init_lora_weights"},
		{"lora_ga", `{"peft_type":"LORA","init_lora_weights":"lora_ga"}`, ValidateOptions{}, ErrMutatedBase, "init_lora_weights"},
		{"eva ok", `{"peft_type":"LORA","init_lora_weights":"eva"}`, ValidateOptions{}, nil, ""},
		{"unknown init", `{"peft_type":"LORA","init_lora_weights":"magic"}`, ValidateOptions{}, ErrInvalidConfig, "init_lora_weights"},
		{"merged linear", `{"peft_type":"LORA","enable_lora":[true,false,true],"merge_weights":false}`, ValidateOptions{}, ErrMergedLinear, "enable_lora"},
		{"r zero", `{"peft_type":"LORA","r":0}`, ValidateOptions{}, ErrInvalidConfig, "r"},
		{"bias", `{"peft_type":"LORA","bias":"some"}`, ValidateOptions{}, ErrInvalidConfig, "bias"},
		{"task", `{"peft_type":"LORA","task_type":"CHAT"}`, ValidateOptions{}, ErrInvalidConfig, "task_type"},
		{"dropout", `{"peft_type":"LORA","lora_dropout":1.5}`, ValidateOptions{}, ErrInvalidConfig, "lora_dropout"},
		{"lora_bias dora", `{"peft_type":"LORA","lora_bias":true,"use_dora":true}`, ValidateOptions{}, ErrInvalidConfig, "lora_bias"},
		{"lora_bias init", `{"peft_type":"LORA","lora_bias":true,"init_lora_weights":"gaussian"}`, ValidateOptions{}, ErrInvalidConfig, "lora_bias"},
		{"layers str target", `{"peft_type":"LORA","target_modules":".*q_proj","layers_to_transform":[0]}`, ValidateOptions{}, ErrInvalidConfig, "layers_to_transform"},
		{"pattern without layers", `{"peft_type":"LORA","target_modules":["q_proj"],"layers_pattern":"layers"}`, ValidateOptions{}, ErrInvalidConfig, "layers_pattern"},
		{"pattern with layer 0 int", `{"peft_type":"LORA","target_modules":["q_proj"],"layers_pattern":"layers","layers_to_transform":0}`, ValidateOptions{}, ErrInvalidConfig, "layers_pattern"},
		{"pattern with layers", `{"peft_type":"LORA","target_modules":["q_proj"],"layers_pattern":"layers","layers_to_transform":[0]}`, ValidateOptions{}, nil, ""},
		{"rank pattern 0", `{"peft_type":"LORA","rank_pattern":{"q":0}}`, ValidateOptions{}, ErrInvalidConfig, "rank_pattern"},
		{"lookahead target", `{"peft_type":"LORA","target_modules":"^(?!.*lm_head).*proj"}`, ValidateOptions{}, ErrUnsupportedPattern, "target_modules"},
		{"backref rank", `{"peft_type":"LORA","rank_pattern":{"(a)\\1":2}}`, ValidateOptions{}, ErrUnsupportedPattern, "rank_pattern"},
		{"bad exclude", `{"peft_type":"LORA","exclude_modules":"(?<=x)y"}`, ValidateOptions{}, ErrUnsupportedPattern, "exclude_modules"},
		{"bad mts", `{"peft_type":"LORA","modules_to_save":["a(?=b)"]}`, ValidateOptions{}, ErrUnsupportedPattern, "modules_to_save"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			err = c.ValidateWith(tc.opts)
			if tc.want == nil {
				if err != nil {
					t.Errorf("Validate = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("Validate = %v, want %v", err, tc.want)
			} else if !strings.Contains(err.Error(), `"`+tc.key+`"`) {
				t.Errorf("Validate = %v, does not name key %q", err, tc.key)
			}
		})
	}
}

func TestValidateJoinsAll(t *testing.T) {
	c, err := Parse([]byte(`{"peft_type":"LORA","use_qalora":true,"layer_replication":[[0,1]],"r":-1}`))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	for _, want := range []error{ErrUnsupportedVariant, ErrUnsupportedFeature, ErrInvalidConfig} {
		if !errors.Is(err, want) {
			t.Errorf("Validate = %v, missing %v", err, want)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	if dir := fixturesOrEmpty(); dir != "" {
		for _, name := range fixtureConfigs {
			if b, err := os.ReadFile(filepath.Join(dir, name, "adapter_config.json")); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte(`{"peft_type":"LORA","r":8,"lora_alpha":16.5,"rank_pattern":{"q":2},"alpha_pattern":{"k":1e-05},"x":[1,{"y":null}]}`))
	f.Add([]byte(`{"peft_type":"IA3","target_modules":".*","feedforward_modules":"(?!x)"}`))
	f.Add([]byte(`{"peft_type":"LORA","target_modules":"all-linear","layers_to_transform":2,"layers_pattern":["h"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Parse error without ErrInvalidConfig: %v", err)
			}
			return
		}
		_ = c.Validate()
		out, err := Marshal(c)
		if err != nil {
			t.Fatalf("Marshal of a parsed config: %v", err)
		}
		c2, err := Parse(out)
		if err != nil {
			t.Fatalf("re-Parse of Marshal output: %v\n%s", err, out)
		}
		out2, err := Marshal(c2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("Marshal not a fixed point:\n%s\n%s", out, out2)
		}
		if c.PeftType == TypeLoRA {
			if _, err := MarshalCompat(c); err != nil {
				t.Fatalf("MarshalCompat: %v", err)
			}
		}
	})
}

// fixturesOrEmpty is fixtures for fuzz seeding, without a testing.TB.
func fixturesOrEmpty() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		for _, c := range []string{"shared/fixtures", "../shared/fixtures"} {
			p := filepath.Join(dir, c, "peft")
			if st, err := os.Stat(p); err == nil && st.IsDir() {
				return p
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
