package pyjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
)

// Expected strings are Python 3.11's json.dumps of the same values (a
// differential run over 25,000 random doubles also agreed).
func TestFormatFloat(t *testing.T) {
	for _, tc := range []struct {
		f    float64
		want string
	}{
		{0.05, "0.05"}, {1e-05, "1e-05"}, {0.0001, "0.0001"}, {1e16, "1e+16"},
		{1e15, "1000000000000000.0"}, {16, "16.0"}, {0.1, "0.1"}, {1.0 / 3, "0.3333333333333333"},
		{2.5e-7, "2.5e-07"}, {123456789012345678, "1.2345678901234568e+17"}, {1e22, "1e+22"},
		{5e-324, "5e-324"}, {math.MaxFloat64, "1.7976931348623157e+308"}, {math.Copysign(0, -1), "-0.0"},
		{0, "0.0"}, {-1.5, "-1.5"}, {0.00030000000000000003, "0.00030000000000000003"}, {0.00012345, "0.00012345"},
		{1.5e300, "1.5e+300"}, {-2.5e-10, "-2.5e-10"}, {100, "100.0"}, {1e100, "1e+100"},
		{math.Inf(1), "Infinity"}, {math.Inf(-1), "-Infinity"}, {math.NaN(), "NaN"},
		{float64(float32(0.05151717737317085)), "0.05151717737317085"}, {0.015625, "0.015625"},
		{-0.0001, "-0.0001"}, {9999999999999998, "9999999999999998.0"}, {1.5e-5, "1.5e-05"},
	} {
		if got := FormatFloat(tc.f); got != tc.want {
			t.Errorf("FormatFloat(%v) = %s, want %s", tc.f, got, tc.want)
		}
	}
}

func TestFormatNumber(t *testing.T) {
	for _, tc := range []struct{ lit, want string }{
		{"-0", "0"}, {"0", "0"}, {"16", "16"}, {"-7", "-7"}, {"1E5", "100000.0"}, {"1e400", "Infinity"},
		{"-1e400", "-Infinity"}, {"1e-400", "0.0"}, {"0e0", "0.0"}, {"12345678901234567890", "12345678901234567890"},
		{"1.0e-7", "1e-07"}, {"2.50", "2.5"}, {"100.0e-2", "1.0"}, {"-0.0", "-0.0"}, {"NaN", "NaN"},
		{"Infinity", "Infinity"}, {"-Infinity", "-Infinity"}, {"-123456789012345678901234567890", "-123456789012345678901234567890"},
	} {
		if got := FormatNumber(tc.lit); got != tc.want {
			t.Errorf("FormatNumber(%s) = %s, want %s", tc.lit, got, tc.want)
		}
	}
}

func TestAppendString(t *testing.T) {
	for _, tc := range []struct {
		in          string
		ascii, utf8 string
	}{
		{"abc", `"abc"`, `"abc"`},
		{"é\u2028😀", `"\u00e9\u2028\ud83d\ude00"`, "\"é\u2028😀\""},
		{"\x00\x1f\x7f\"\\/\b\f\n\r\t", `"\u0000\u001f\u007f\"\\/\b\f\n\r\t"`, "\"\\u0000\\u001f\x7f\\\"\\\\/\\b\\f\\n\\r\\t\""},
		{"a\xffb", `"a\ufffdb"`, "\"a\ufffdb\""},
	} {
		if got := string(AppendString(nil, tc.in, true)); got != tc.ascii {
			t.Errorf("AppendString(%q, true) = %s, want %s", tc.in, got, tc.ascii)
		}
		if got := string(AppendString(nil, tc.in, false)); got != tc.utf8 {
			t.Errorf("AppendString(%q, false) = %s, want %s", tc.in, got, tc.utf8)
		}
	}
}

// TestOptions: the expected strings are Python 3's json.dumps of
// json.loads(doc) with the named arguments.
func TestOptions(t *testing.T) {
	const doc = `{"b": [1, 2.50, {"é": "😀\u007f"}], "a": null, "c": {}}`
	v, err := Decode([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"default", Default, `{"b": [1, 2.5, {"\u00e9": "\ud83d\ude00\u007f"}], "a": null, "c": {}}`},
		{"ensure_ascii=False", Options{}, "{\"b\": [1, 2.5, {\"é\": \"😀\x7f\"}], \"a\": null, \"c\": {}}"},
		{"sort_keys, separators=(',', ':')", Options{SortKeys: true, EnsureASCII: true, ItemSep: ",", KeySep: ":"},
			`{"a":null,"b":[1,2.5,{"\u00e9":"\ud83d\ude00\u007f"}],"c":{}}`},
		{"indent=0", Options{Pretty: true, EnsureASCII: true},
			"{\n\"b\": [\n1,\n2.5,\n{\n\"\\u00e9\": \"\\ud83d\\ude00\\u007f\"\n}\n],\n\"a\": null,\n\"c\": {}\n}"},
		{"indent='\\t', sort_keys, ensure_ascii=False", Options{Pretty: true, Indent: "\t", SortKeys: true},
			"{\n\t\"a\": null,\n\t\"b\": [\n\t\t1,\n\t\t2.5,\n\t\t{\n\t\t\t\"é\": \"😀\x7f\"\n\t\t}\n\t],\n\t\"c\": {}\n}"},
		{"raw numbers (not Python)", Options{RawNumbers: true, EnsureASCII: true, ItemSep: ",", KeySep: ":"},
			`{"b":[1,2.50,{"\u00e9":"\ud83d\ude00\u007f"}],"a":null,"c":{}}`},
	} {
		if got := string(tc.o.Marshal(v)); got != tc.want {
			t.Errorf("%s:\ngot  %q\nwant %q", tc.name, got, tc.want)
		}
	}
	// AppendAt: a value as it appears nested inside json.dumps(indent=2).
	in := Array(Int(1))
	if got, want := string(Indent2.AppendAt([]byte("x"), in, 2)), "x[\n      1\n    ]"; got != want {
		t.Errorf("AppendAt = %q, want %q", got, want)
	}
}

// The expected strings are what Python 3's json.dumps(json.loads(in),
// indent=2) prints (order kept).
var indentCases = []struct{ in, want string }{
	{`{"a": 1, "b": [1, 2.5, "x", [], {}], "c": {"d": null, "e": true, "f": false}}`,
		"{\n  \"a\": 1,\n  \"b\": [\n    1,\n    2.5,\n    \"x\",\n    [],\n    {}\n  ],\n  \"c\": {\n    \"d\": null,\n    \"e\": true,\n    \"f\": false\n  }\n}"},
	{`[1e-05, 10000.0, 1E5, 0.1, 1e16, -0.0, 3, -0, 123456789012345678901234567890, 1.5e300, 2.5E-7, 0.0001, 100.0e-2]`,
		"[\n  1e-05,\n  10000.0,\n  100000.0,\n  0.1,\n  1e+16,\n  -0.0,\n  3,\n  0,\n  123456789012345678901234567890,\n  1.5e+300,\n  2.5e-07,\n  0.0001,\n  1.0\n]"},
	{`["é", "😀", "\u007f", "\u0001", "\t\n\r\b\f", "/<>&", "\"\\", "ü\u2028"]`,
		`[` + "\n" + `  "\u00e9",` + "\n" + `  "\ud83d\ude00",` + "\n" + `  "\u007f",` + "\n" + `  "\u0001",` + "\n" +
			`  "\t\n\r\b\f",` + "\n" + `  "/<>&",` + "\n" + `  "\"\\",` + "\n" + `  "\u00fc\u2028"` + "\n]"},
	{`{"a": 1, "b": 2, "a": 3}`, "{\n  \"a\": 3,\n  \"b\": 2\n}"},
	{`{"b": [], "a": {"y": [1, {"z": {}}], "x": true}}`,
		"{\n  \"b\": [],\n  \"a\": {\n    \"y\": [\n      1,\n      {\n        \"z\": {}\n      }\n    ],\n    \"x\": true\n  }\n}"},
	{`{}`, `{}`},
	{` [ ] `, `[]`},
	{`"s"`, `"s"`},
	{`1e400`, `Infinity`},
	{`-1e400`, `-Infinity`},
	{`[NaN, -Infinity]`, "[\n  NaN,\n  -Infinity\n]"},
}

func TestIndent2(t *testing.T) {
	for _, c := range indentCases {
		v, err := Decode([]byte(c.in))
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if got := string(Indent2.Marshal(v)); got != c.want {
			t.Errorf("%s:\ngot  %q\nwant %q", c.in, got, c.want)
		}
	}
}

// TestPythonCases: Decode accepts what Python's json.loads accepts and
// json.dumps(indent=2, sort_keys=True) is reproduced
// (testdata/json_cases.json, generated by pkg/peft/testdata/gen_json_cases.py).
func TestPythonCases(t *testing.T) {
	b, err := os.ReadFile("testdata/json_cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		In  string
		OK  bool
		Out string
	}
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	o := Indent2
	o.SortKeys = true
	for _, c := range cases {
		v, err := Decode([]byte(c.In))
		if !c.OK {
			if err == nil {
				t.Errorf("Decode(%q) accepted what Python rejects", c.In)
			} else if !errors.Is(err, ErrInvalid) {
				t.Errorf("Decode(%q) = %v, not ErrInvalid", c.In, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Decode(%q): %v", c.In, err)
			continue
		}
		if out := string(o.Marshal(v)); out != c.Out {
			t.Errorf("Decode(%q) → %s, Python %s", c.In, out, c.Out)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct{ in, msg string }{
		{``, "offset 0: unexpected end of input"},
		{`{`, "offset 1: expecting a property name in double quotes"},
		{`{"a" 1}`, "offset 5: expecting ':' delimiter"},
		{`[1,]`, "offset 3: expecting a value"},
		{`{} {}`, "offset 3: extra data after the JSON value"},
		{`{"a": 1}x`, "offset 8: extra data after the JSON value"},
		{`["a` + "\x01" + `"]`, "offset 3: invalid control character in string"},
		{`["\x"]`, "offset 4: invalid escape"},
		{`["\u12"]`, `offset 4: invalid \uXXXX escape`},
		{`"abc`, "offset 4: unterminated string"},
		{"\"\xff\"", "invalid UTF-8"},
		{strings.Repeat("[", MaxDepth+2) + strings.Repeat("]", MaxDepth+2), "offset 65: nesting deeper than 64"},
	} {
		_, err := Decode([]byte(tc.in))
		if err == nil || err.Error() != tc.msg || !errors.Is(err, ErrInvalid) {
			t.Errorf("Decode(%q) = %v, want %q", tc.in, err, tc.msg)
		}
	}
	if _, err := Decode([]byte(strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1))); err != nil {
		t.Errorf("%d nested arrays: %v", MaxDepth+1, err)
	}
	big := make([]byte, MaxBytes+1)
	if _, err := Decode(big); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "byte limit") {
		t.Errorf("oversized input: %v", err)
	}
}

func TestDecodeValues(t *testing.T) {
	v, err := Decode([]byte(`{"s": "a\ud800b\ud83d\ude00", "n": -1.5e3, "t": true, "z": null, "a": [], "o": {"k": 0}, "s": "x"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Object(
		Member{"s", String("x")},
		Member{"n", Number("-1.5e3")},
		Member{"t", Bool(true)},
		Member{"z", Null},
		Member{"a", Array()},
		Member{"o", Object(Member{"k", Int(0)})},
	)
	if !reflect.DeepEqual(v, want) {
		t.Errorf("got %#v\nwant %#v", v, want)
	}
	s, _ := Decode([]byte(`"a\ud800b\ud83d\ude00\udc00"`))
	if s.Str != "a\ufffdb😀\ufffd" {
		t.Errorf("surrogates: %q", s.Str)
	}
}

func TestAccessors(t *testing.T) {
	v := Object(Member{"a", Int(1)}, Member{"b", Null})
	if p, ok := v.Get("b"); !ok || p.Kind != KindNull {
		t.Error("Get b")
	}
	v.Set("a", Float(2))
	v.Set("c", Strings([]string{"x"}))
	if !v.Remove("b") || v.Remove("b") {
		t.Error("Remove")
	}
	if got, want := string(Default.Marshal(v)), `{"a": 2.0, "c": ["x"]}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	for _, tc := range []struct {
		v       Value
		truthy  bool
		isInt   bool
		comment string
	}{
		{Null, false, false, "null"}, {Bool(false), false, false, "false"}, {Bool(true), true, false, "true"},
		{Int(0), false, true, "0"}, {Number("-0"), false, true, "-0"}, {Number("0.0"), false, false, "0.0"},
		{Number("1e-400"), false, false, "underflow"}, {Number("1e400"), true, false, "overflow"},
		{Number("NaN"), true, false, "NaN"}, {Int(-3), true, true, "-3"}, {String(""), false, false, `""`},
		{String("x"), true, false, `"x"`}, {Array(), false, false, "[]"}, {Array(Null), true, false, "[null]"},
		{Object(), false, false, "{}"}, {Object(Member{"", Null}), true, false, `{"": null}`},
	} {
		if tc.v.Truthy() != tc.truthy || tc.v.IsInt() != tc.isInt {
			t.Errorf("%s: Truthy %v IsInt %v", tc.comment, tc.v.Truthy(), tc.v.IsInt())
		}
	}
}

// FuzzDecode: what decodes re-encodes, under every option set, to a
// document that decodes to the same tree and re-encodes identically.
func FuzzDecode(f *testing.F) {
	for _, c := range indentCases {
		f.Add([]byte(c.in))
	}
	f.Add([]byte(`{"architectures": ["LlamaForCausalLM"], "rope_scaling": {"factor": 8.0, "rope_type": "llama3"}, "eos_token_id": [128001, 128009]}`))
	f.Add([]byte(`["a\ud800", "\u00e9\t", 1E+2, -0, 0.1e-9, {"": {"": []}}]`))
	opts := []Options{Default, Indent2, {}, {Pretty: true, Indent: "\t", SortKeys: true}, {RawNumbers: true, EnsureASCII: true, ItemSep: ",", KeySep: ":"}}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Decode(b)
		if err != nil {
			return
		}
		for _, o := range opts {
			out := o.Marshal(v)
			v2, err := Decode(out)
			if err != nil {
				t.Fatalf("%+v: %q → %q does not decode: %v", o, b, out, err)
			}
			if out2 := o.Marshal(v2); !bytes.Equal(out, out2) {
				t.Fatalf("%+v: not a fixed point:\n%q\n%q", o, out, out2)
			}
			if o.RawNumbers && !o.SortKeys && !reflect.DeepEqual(v, v2) {
				t.Fatalf("%+v: tree changed:\n%#v\n%#v", o, v, v2)
			}
			if !bytes.Contains(out, []byte("Infinity")) && !bytes.Contains(out, []byte("NaN")) && !json.Valid(out) {
				t.Fatalf("%+v: invalid JSON %q", o, out)
			}
		}
	})
}

func BenchmarkIndent2(b *testing.B) {
	doc := []byte(`{"architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02, "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}, "rope_theta": 500000.0, "torch_dtype": "bfloat16", "vocab_size": 128256}`)
	b.SetBytes(int64(len(doc)))
	var dst []byte
	for b.Loop() {
		v, err := Decode(doc)
		if err != nil {
			b.Fatal(err)
		}
		dst = Indent2.Append(dst[:0], v)
	}
}

// TestSortedIndentNesting: adapter_config.json's formatting,
// json.dumps(..., indent=2, sort_keys=True), on nested empty containers.
func TestSortedIndentNesting(t *testing.T) {
	v, err := Decode([]byte(`{"b": [], "a": {"y": [1, {"z": {}}], "x": true}}`))
	if err != nil {
		t.Fatal(err)
	}
	o := Indent2
	o.SortKeys = true
	want := "{\n  \"a\": {\n    \"x\": true,\n    \"y\": [\n      1,\n      {\n        \"z\": {}\n      }\n    ]\n  },\n  \"b\": []\n}"
	if got := string(o.Marshal(v)); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
