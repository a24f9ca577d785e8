package nf4

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/dtype"
)

func TestQuantizationConfigJSON(t *testing.T) {
	c := QuantizationConfig{QuantType: FP4, DoubleQuant: false, ComputeDType: "float16", SkipModules: []string{"lm_head", "model.layers.0"}}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"_load_in_4bit":true,"_load_in_8bit":false,"bnb_4bit_compute_dtype":"float16","bnb_4bit_quant_storage":"uint8",` +
		`"bnb_4bit_quant_type":"fp4","bnb_4bit_use_double_quant":false,"llm_int8_enable_fp32_cpu_offload":false,` +
		`"llm_int8_has_fp16_weight":false,"llm_int8_skip_modules":["lm_head","model.layers.0"],"llm_int8_threshold":6.0,` +
		`"load_in_4bit":true,"load_in_8bit":false,"quant_method":"bitsandbytes"}`
	if string(b) != want {
		t.Errorf("got\n%s\nwant\n%s", b, want)
	}
	p, err := ParseQuantizationConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.QuantType != FP4 || p.DoubleQuant || p.ComputeDType != "float16" || strings.Join(p.SkipModules, ",") != "lm_head,model.layers.0" {
		t.Errorf("parsed %+v", p)
	}
	// Defaults of transformers' BitsAndBytesConfig for absent keys.
	p, err = ParseQuantizationConfig([]byte(`{"load_in_4bit": true}`))
	if err != nil || p.QuantType != FP4 || p.DoubleQuant || p.ComputeDType != "float32" || p.QuantStorage != "uint8" || p.SkipModules != nil {
		t.Errorf("defaults %+v %v", p, err)
	}
	for _, bad := range []string{
		`{"quant_method": "bitsandbytes", "load_in_8bit": true}`, `{"quant_method": "gptq", "load_in_4bit": true}`,
		`{"load_in_4bit": true, "bnb_4bit_quant_type": "int4"}`, `{"load_in_4bit": "yes"}`, `[`,
		`{"load_in_4bit": true, "llm_int8_skip_modules": [1]}`,
		`{"load_in_4bit": true, "x": "` + strings.Repeat("a", maxConfigJSON) + `"}`,
	} {
		if _, err := ParseQuantizationConfig([]byte(bad)); !errors.Is(err, ErrConfig) {
			t.Errorf("%.80s: %v", bad, err)
		}
	}
}

func TestSelector(t *testing.T) {
	def, err := NewSelector(nil)
	if err != nil {
		t.Fatal(err)
	}
	custom, err := NewSelector([]string{"lm_head", `model\.layers\.1\.`, "down_proj", "model.layers.0.mlp"})
	if err != nil {
		t.Fatal(err)
	}
	m2 := []int64{64, 64}
	for _, tc := range []struct {
		name       string
		dt         dtype.DType
		shape      []int64
		def, custm bool
	}{
		{"model.layers.0.self_attn.q_proj.weight", dtype.BF16, m2, true, true},
		{"model.layers.0.mlp.down_proj.weight", dtype.F32, m2, true, false}, // suffix match
		{"model.layers.0.mlp.up_proj.weight", dtype.F32, m2, true, false},   // prefix + "."
		{"model.layers.1.self_attn.k_proj.weight", dtype.F16, m2, true, false},
		{"model.layers.10.self_attn.k_proj.weight", dtype.F16, m2, true, true},
		{"lm_head.weight", dtype.BF16, m2, false, false},
		{"model.embed_tokens.weight", dtype.BF16, m2, false, false},
		{"transformer.wte.weight", dtype.BF16, m2, false, false},
		{"model.norm.weight", dtype.BF16, []int64{64}, false, false},
		{"model.layers.0.self_attn.q_proj.bias", dtype.BF16, []int64{64}, false, false},
		{"model.layers.0.self_attn.q_proj.weight", dtype.I8, m2, false, false},
		{"model.layers.0.self_attn.q_proj.weight", dtype.F32, []int64{0, 64}, false, false},
		{"model.layers.0.self_attn.q_proj.weight.absmax", dtype.F32, m2, false, false},
		{".weight", dtype.F32, m2, false, false},
	} {
		if got := def.Quantize(tc.name, tc.dt, tc.shape); got != tc.def {
			t.Errorf("default %s: %v", tc.name, got)
		}
		if got := custom.Quantize(tc.name, tc.dt, tc.shape); got != tc.custm {
			t.Errorf("custom %s: %v", tc.name, got)
		}
	}
	if _, err := NewSelector([]string{"(?=x)"}); !errors.Is(err, ErrConfig) {
		t.Errorf("bad regexp: %v", err)
	}
}
