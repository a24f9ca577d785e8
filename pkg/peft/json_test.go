package peft

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"testing"
)

// Expected strings are Python 3.11's json.dumps of the same values (a
// differential run over 25,000 random doubles also agreed).
func TestPyFloat(t *testing.T) {
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
	} {
		if got := pyFloat(tc.f); got != tc.want {
			t.Errorf("pyFloat(%v) = %s, want %s", tc.f, got, tc.want)
		}
	}
}

func TestPyNumber(t *testing.T) {
	for _, tc := range []struct{ lit, want string }{
		{"-0", "0"}, {"0", "0"}, {"16", "16"}, {"-7", "-7"}, {"1E5", "100000.0"}, {"1e400", "Infinity"},
		{"0e0", "0.0"}, {"12345678901234567890", "12345678901234567890"}, {"1.0e-7", "1e-07"}, {"2.50", "2.5"},
	} {
		if got := pyNumber(tc.lit); got != tc.want {
			t.Errorf("pyNumber(%s) = %s, want %s", tc.lit, got, tc.want)
		}
	}
}

func TestPyString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"abc", `"abc"`},
		{"é\u2028😀", `"\u00e9\u2028\ud83d\ude00"`},
		{"\x00\x1f\x7f\"\\/\b\f\n\r\t", `"\u0000\u001f\u007f\"\\/\b\f\n\r\t"`},
	} {
		var b bytes.Buffer
		writePyString(&b, tc.in)
		if b.String() != tc.want {
			t.Errorf("writePyString(%q) = %s, want %s", tc.in, b.String(), tc.want)
		}
	}
}

func TestWritePythonNesting(t *testing.T) {
	v, err := decodeJSON([]byte(`{"b": [], "a": {"y": [1, {"z": {}}], "x": true}}`))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	writePython(&b, v, 0)
	// json.dumps(..., indent=2, sort_keys=True)
	want := "{\n  \"a\": {\n    \"x\": true,\n    \"y\": [\n      1,\n      {\n        \"z\": {}\n      }\n    ]\n  },\n  \"b\": []\n}"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// TestDecodePython: decodeJSON accepts what Python's json.loads accepts and
// writePython reproduces json.dumps(indent=2, sort_keys=True)
// (testdata/gen_json_cases.py).
func TestDecodePython(t *testing.T) {
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
	for _, c := range cases {
		v, err := decodeJSON([]byte(c.In))
		if !c.OK {
			if err == nil {
				t.Errorf("decodeJSON(%q) accepted what Python rejects", c.In)
			}
			continue
		}
		if err != nil {
			t.Errorf("decodeJSON(%q): %v", c.In, err)
			continue
		}
		var out bytes.Buffer
		writePython(&out, v, 0)
		if out.String() != c.Out {
			t.Errorf("decodeJSON(%q) → %s, Python %s", c.In, out.String(), c.Out)
		}
	}
}
