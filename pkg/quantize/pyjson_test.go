package quantize

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
)

// The expected strings are what Python 3's json.dumps(json.loads(in),
// indent=2) prints.
var pythonCases = []struct{ in, want string }{
	{`{"a": 1, "b": [1, 2.5, "x", [], {}], "c": {"d": null, "e": true, "f": false}}`,
		"{\n  \"a\": 1,\n  \"b\": [\n    1,\n    2.5,\n    \"x\",\n    [],\n    {}\n  ],\n  \"c\": {\n    \"d\": null,\n    \"e\": true,\n    \"f\": false\n  }\n}"},
	{`[1e-05, 10000.0, 1E5, 0.1, 1e16, -0.0, 3, -0, 123456789012345678901234567890, 1.5e300, 2.5E-7, 0.0001, 100.0e-2]`,
		"[\n  1e-05,\n  10000.0,\n  100000.0,\n  0.1,\n  1e+16,\n  -0.0,\n  3,\n  0,\n  123456789012345678901234567890,\n  1.5e+300,\n  2.5e-07,\n  0.0001,\n  1.0\n]"},
	{`["é", "😀", "\u007f", "\u0001", "\t\n\r\b\f", "/<>&", "\"\\", "ü\u2028"]`,
		`[` + "\n" + `  "\u00e9",` + "\n" + `  "\ud83d\ude00",` + "\n" + `  "\u007f",` + "\n" + `  "\u0001",` + "\n" +
			`  "\t\n\r\b\f",` + "\n" + `  "/<>&",` + "\n" + `  "\"\\",` + "\n" + `  "\u00fc\u2028"` + "\n]"},
	{`{"a": 1, "b": 2, "a": 3}`, "{\n  \"a\": 3,\n  \"b\": 2\n}"},
	{`{}`, `{}`},
	{` [ ] `, `[]`},
	{`"s"`, `"s"`},
	{`1e400`, `Infinity`},
	{`-1e400`, `-Infinity`},
}

func TestPythonIndent(t *testing.T) {
	for _, c := range pythonCases {
		v, err := parseJSONOrdered([]byte(c.in))
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if got := string(pythonIndent(v)); got != c.want {
			t.Errorf("%s:\ngot  %q\nwant %q", c.in, got, c.want)
		}
	}
	for _, bad := range []string{``, `{`, `{"a" 1}`, `[1,]`, `{} {}`, `{"a": 1}x`, strings.Repeat("[", 100) + strings.Repeat("]", 100)} {
		if _, err := parseJSONOrdered([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestConfigRewrite: the block is appended after the input's keys, in their
// order, and the dequantized config drops it again.
func TestConfigRewrite(t *testing.T) {
	in := []byte("{\n  \"z\": 1,\n  \"a\": {\"k\": [1.0, 2]},\n  \"dtype\": \"bfloat16\"\n}\n")
	qc := nf4.QuantizationConfig{QuantType: nf4.FP4, DoubleQuant: false, ComputeDType: "float16", SkipModules: []string{"lm_head", "x"}}
	out, err := quantizedConfig(in, qc)
	if err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"z\": 1,\n  \"a\": {\n    \"k\": [\n      1.0,\n      2\n    ]\n  },\n  \"dtype\": \"bfloat16\",\n  \"quantization_config\": {\n" +
		"    \"_load_in_4bit\": true,\n    \"_load_in_8bit\": false,\n    \"bnb_4bit_compute_dtype\": \"float16\",\n" +
		"    \"bnb_4bit_quant_storage\": \"uint8\",\n    \"bnb_4bit_quant_type\": \"fp4\",\n    \"bnb_4bit_use_double_quant\": false,\n" +
		"    \"llm_int8_enable_fp32_cpu_offload\": false,\n    \"llm_int8_has_fp16_weight\": false,\n    \"llm_int8_skip_modules\": [\n" +
		"      \"lm_head\",\n      \"x\"\n    ],\n    \"llm_int8_threshold\": 6.0,\n    \"load_in_4bit\": true,\n    \"load_in_8bit\": false,\n" +
		"    \"quant_method\": \"bitsandbytes\"\n  }\n}"
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	if _, err := quantizedConfig(out, qc); err == nil {
		t.Error("a second quantization_config block was accepted")
	}
	if !hasQuantizationConfig(out) || hasQuantizationConfig(in) {
		t.Error("hasQuantizationConfig")
	}
	back, err := dequantizedConfig(out, dtype.F32)
	if err != nil {
		t.Fatal(err)
	}
	if want := "{\n  \"z\": 1,\n  \"a\": {\n    \"k\": [\n      1.0,\n      2\n    ]\n  },\n  \"dtype\": \"float32\"\n}"; string(back) != want {
		t.Errorf("dequantized config\n%s", back)
	}
	if out, err := quantizedConfig([]byte(`{"a": 1, "quantization_config": null, "b": 2}`), qc); err != nil ||
		!strings.HasPrefix(string(out), "{\n  \"a\": 1,\n  \"quantization_config\": {\n") {
		t.Errorf("a null block is not replaced in place: %v\n%s", err, out)
	}
	for _, bad := range []string{`[1]`, `{"a":`, `"x"`} {
		if _, err := quantizedConfig([]byte(bad), qc); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// TestFixtureConfigs: the fixture configs are reproduced from peft/tiny's.
func TestFixtureConfigs(t *testing.T) {
	fx := fixtures(t)
	in := readFile(t, filepath.Join(fx, "peft", "tiny", "config.json"))
	for _, tc := range goldenCases {
		out, err := quantizedConfig(in, nf4.QuantizationConfig{QuantType: nf4.NF4, DoubleQuant: tc.dq})
		if err != nil {
			t.Fatal(err)
		}
		if want := readFile(t, filepath.Join(fx, "bnb", tc.dir, "config.json")); !bytes.Equal(out, want) {
			t.Errorf("%s: config differs:\n%s", tc.dir, out)
		}
	}
}

func FuzzPythonJSON(f *testing.F) {
	for _, c := range pythonCases {
		f.Add([]byte(c.in))
	}
	f.Add([]byte(`{"architectures": ["LlamaForCausalLM"], "rope_scaling": {"factor": 8.0, "rope_type": "llama3"}, "eos_token_id": [128001, 128009]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseJSONOrdered(b)
		if err != nil {
			return
		}
		out := pythonIndent(v)
		if bytes.Contains(out, []byte("Infinity")) || bytes.Contains(out, []byte("NaN")) {
			return // Python's extension of JSON
		}
		if !json.Valid(out) {
			t.Fatalf("invalid JSON out of %q:\n%s", b, out)
		}
		// The rendering is a fixed point, and means what the input meant.
		v2, err := parseJSONOrdered(out)
		if err != nil {
			t.Fatal(err)
		}
		if out2 := pythonIndent(v2); !bytes.Equal(out, out2) {
			t.Fatalf("not a fixed point:\n%s\n%s", out, out2)
		}
		var a, c any
		if json.Unmarshal(b, &a) == nil && json.Unmarshal(out, &c) == nil {
			if !reflect.DeepEqual(a, c) && !bytes.Contains(b, []byte(`\ud`)) && !bytes.Contains(b, []byte(`\uD`)) {
				t.Fatalf("meaning changed:\n%v\n%v", a, c)
			}
		}
	})
}
