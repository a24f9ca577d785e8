package nf4

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/dtype"
)

func TestPythonFloat(t *testing.T) {
	// Expected strings are Python 3's json.dumps output.
	for _, tc := range []struct {
		f    float64
		want string
	}{
		{0.031807661056518555, "0.031807661056518555"}, {1e-05, "1e-05"}, {0.0001, "0.0001"},
		{1.5e+16, "1.5e+16"}, {1e16, "1e+16"}, {1e15, "1000000000000000.0"}, {1234567, "1234567.0"},
		{0, "0.0"}, {math.Copysign(0, -1), "-0.0"}, {1.5e-07, "1.5e-07"}, {123.456, "123.456"},
		{1e22, "1e+22"}, {1.7976931348623157e308, "1.7976931348623157e+308"}, {5e-324, "5e-324"},
		{-2.5e-05, "-2.5e-05"}, {0.1, "0.1"}, {100, "100.0"}, {9999999999999998, "9999999999999998.0"},
		{12345678901234567890, "1.2345678901234567e+19"}, {math.NaN(), "NaN"}, {math.Inf(1), "Infinity"},
		{math.Inf(-1), "-Infinity"}, {float64(float32(1e-38)), "9.999999350456404e-39"},
		{3.4028234663852886e+38, "3.4028234663852886e+38"}, {0.00012345, "0.00012345"},
	} {
		if got := PythonFloat(tc.f); got != tc.want {
			t.Errorf("PythonFloat(%v) = %q, want %q", tc.f, got, tc.want)
		}
	}
}

func TestStateJSON(t *testing.T) {
	qs := &QuantState{Type: NF4, Blocksize: 64, Shape: []int64{4096, 4096}, DType: dtype.BF16,
		Nested: &Nested{Offset: float32(0.031807661056518555), Blocksize: 256}}
	want := `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [4096, 4096], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.031807661056518555}`
	if got := string(qs.JSON()); got != want {
		t.Errorf("JSON\n%s\nwant\n%s", got, want)
	}
	qs = &QuantState{Type: FP4, Blocksize: 128, Shape: []int64{7}, DType: dtype.F16}
	want = `{"quant_type": "fp4", "blocksize": 128, "dtype": "float16", "shape": [7]}`
	if got := string(qs.JSON()); got != want {
		t.Errorf("JSON %s, want %s", got, want)
	}
	if got := StateSuffix(FP4); got != ".quant_state.bitsandbytes__fp4" {
		t.Error(got)
	}
}

func TestParseStateJSON(t *testing.T) {
	good := `{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [64, 128], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.05134176090359688}`
	qs, err := ParseStateJSON([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if qs.Type != NF4 || qs.Blocksize != 64 || qs.DType != dtype.F32 || !slices.Equal(qs.Shape, []int64{64, 128}) ||
		qs.Nested == nil || qs.Nested.Blocksize != 256 || qs.Nested.Offset != float32(0.05134176090359688) {
		t.Errorf("parsed %+v %+v", qs, qs.Nested)
	}
	if string(qs.JSON()) != good {
		t.Errorf("round trip %s", qs.JSON())
	}
	for _, ok := range []string{
		"\n{ \"shape\" :[ 3 ,5 ] ,\"dtype\":\"bfloat16\",\t\"blocksize\":4096,\"quant_type\":\"fp4\"}\r\n",
		`{"quant_type": "nf4", "blocksize": 32, "dtype": "float16", "shape": []}`,
		`{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [2], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": NaN}`,
		`{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [2], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": -Infinity}`,
		`{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [2], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 1}`,
		`{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [2], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 1e999}`,
	} {
		if _, err := ParseStateJSON([]byte(ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	base := `"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [2, 3]`
	nested := `, "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.5`
	for _, bad := range []string{
		``, `{`, `[]`, `{}`, `{` + base + `}x`, `{` + base + `,}`, `{` + base + `, "extra": 1}`,
		`{` + base + `, "blocksize": 64}`, `{"quant_type": "nf4", "blocksize": 64, "dtype": "float32"}`,
		`{` + strings.Replace(base, `"nf4"`, `"nf5"`, 1) + `}`,
		`{` + strings.Replace(base, `64`, `48`, 1) + `}`,
		`{` + strings.Replace(base, `64`, `64.0`, 1) + `}`,
		`{` + strings.Replace(base, `64`, `8192`, 1) + `}`,
		`{` + strings.Replace(base, `64`, `-64`, 1) + `}`,
		`{` + strings.Replace(base, `64`, `"64"`, 1) + `}`,
		`{` + strings.Replace(base, `float32`, `int8`, 1) + `}`,
		`{` + strings.Replace(base, `[2, 3]`, `[2, -3]`, 1) + `}`,
		`{` + strings.Replace(base, `[2, 3]`, `[2.5]`, 1) + `}`,
		`{` + strings.Replace(base, `[2, 3]`, `null`, 1) + `}`,
		`{` + strings.Replace(base, `[2, 3]`, `[[2]]`, 1) + `}`,
		`{` + strings.Replace(base, `[2, 3]`, `[65536, 65536, 65536, 65536]`, 1) + `}`,
		`{` + strings.Replace(base, `[2, 3]`, `[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]`, 1) + `}`,
		`{` + strings.Replace(base, `[2, 3]`, `[2, 3`, 1) + `}`,
		`{` + strings.Replace(base, `"nf4"`, `"n\u0066"`, 1) + `}`,
		`{` + strings.Replace(base, `"nf4"`, `"nf4`, 1) + `}`,
		`{` + base + `, "nested_blocksize": 256}`,
		`{` + base + strings.Replace(nested, `"float32"`, `"float16"`, 1) + `}`,
		`{` + base + strings.Replace(nested, `0.5`, `"0.5"`, 1) + `}`,
		`{` + base + strings.Replace(nested, `0.5`, `.5`, 1) + `}`,
		`{` + base + strings.Replace(nested, `0.5`, `nan`, 1) + `}`,
		`{` + base + strings.Replace(nested, `256`, `0`, 1) + `}`,
		`{"quant_type": ` + strings.Repeat(" ", MaxStateJSON) + `"nf4"}`,
	} {
		if _, err := ParseStateJSON([]byte(bad)); !errors.Is(err, ErrState) {
			t.Errorf("%.120s: err %v, want ErrState", bad, err)
		}
	}
}

// moduleTensors quantizes x and returns a getter over its serialized tensors.
func moduleTensors(t *testing.T, x []float32, shape []int64, opts Options) (map[string]Tensor, *Quantized) {
	t.Helper()
	q, err := QuantizeTensor(x, shape, opts)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]Tensor{}
	for _, nt := range q.Tensors("m.weight") {
		m[nt.Name] = nt.Tensor
	}
	return m, q
}

func TestParseModuleRoundTrip(t *testing.T) {
	x := randFloats(11, 333*77, 0.02)
	for _, opts := range []Options{
		{Type: NF4, Blocksize: 64, DoubleQuant: true, DType: dtype.BF16},
		{Type: FP4, Blocksize: 128, DoubleQuant: true},
		{Type: NF4, Blocksize: 4096, DoubleQuant: false, DType: dtype.F16},
		{Type: FP4, Blocksize: 32, DoubleQuant: false},
	} {
		m, q := moduleTensors(t, x, []int64{333, 77}, opts)
		wantKeys := 4
		if opts.DoubleQuant {
			wantKeys = 6
		}
		if len(m) != wantKeys {
			t.Errorf("%+v: %d keys", opts, len(m))
		}
		qs, packed, err := ParseModule("m.weight", func(n string) (Tensor, bool) { v, ok := m[n]; return v, ok })
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(packed, q.Packed) || qs.Type != opts.Type || qs.Blocksize != opts.Blocksize ||
			(qs.Nested != nil) != opts.DoubleQuant || !slices.Equal(qs.Shape, []int64{333, 77}) {
			t.Errorf("%+v: parsed %+v", opts, qs)
		}
		a, b := make([]float32, len(x)), make([]float32, len(x))
		if err := q.State.Dequantize(a, q.Packed); err != nil {
			t.Fatal(err)
		}
		if err := qs.Dequantize(b, packed); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(f32bits(a), f32bits(b)) {
			t.Errorf("%+v: dequantization differs after parsing", opts)
		}
		// Serialized tensors never share storage.
		ts := q.Tensors("m.weight")
		for i := range ts {
			for j := i + 1; j < len(ts); j++ {
				if len(ts[i].Data) > 0 && len(ts[j].Data) > 0 && &ts[i].Data[0] == &ts[j].Data[0] {
					t.Errorf("%s and %s share storage", ts[i].Name, ts[j].Name)
				}
			}
		}
	}
}

func TestParseModuleQuantStorage(t *testing.T) {
	// bnb_4bit_quant_storage=bfloat16: the same bytes as BF16 [n/4, 1].
	m, q := moduleTensors(t, randFloats(5, 64*64, 0.1), []int64{64, 64}, DefaultOptions())
	w := m["m.weight"]
	m["m.weight"] = Tensor{DType: dtype.BF16, Shape: []int64{int64(len(w.Data) / 2), 1}, Data: w.Data}
	_, packed, err := ParseModule("m.weight", func(n string) (Tensor, bool) { v, ok := m[n]; return v, ok })
	if err != nil || !bytes.Equal(packed, q.Packed) {
		t.Errorf("bf16 storage: %v", err)
	}
}

func TestParseModuleErrors(t *testing.T) {
	base, _ := moduleTensors(t, randFloats(5, 64*64+3, 0.1), []int64{64*64 + 3}, DefaultOptions())
	clone := func() map[string]Tensor {
		m := map[string]Tensor{}
		for k, v := range base {
			m[k] = v
		}
		return m
	}
	js := func(s string) Tensor { return Tensor{dtype.U8, []int64{int64(len(s))}, []byte(s)} }
	for _, tc := range []struct {
		name string
		edit func(m map[string]Tensor)
		want error
	}{
		{"no state", func(m map[string]Tensor) { delete(m, "m.weight"+SuffixQuantStateNF4) }, ErrMissing},
		{"no weight", func(m map[string]Tensor) { delete(m, "m.weight") }, ErrMissing},
		{"no absmax", func(m map[string]Tensor) { delete(m, "m.weight.absmax") }, ErrMissing},
		{"no quant_map", func(m map[string]Tensor) { delete(m, "m.weight.quant_map") }, ErrMissing},
		{"no nested map", func(m map[string]Tensor) { delete(m, "m.weight.nested_quant_map") }, ErrMissing},
		{"no nested absmax", func(m map[string]Tensor) { delete(m, "m.weight.nested_absmax") }, ErrState},
		{"both types", func(m map[string]Tensor) { m["m.weight"+SuffixQuantStateFP4] = m["m.weight"+SuffixQuantStateNF4] }, ErrState},
		{"type vs key", func(m map[string]Tensor) {
			m["m.weight"+SuffixQuantStateFP4] = m["m.weight"+SuffixQuantStateNF4]
			delete(m, "m.weight"+SuffixQuantStateNF4)
		}, ErrState},
		{"json dtype", func(m map[string]Tensor) {
			tt := m["m.weight"+SuffixQuantStateNF4]
			m["m.weight"+SuffixQuantStateNF4] = Tensor{dtype.I8, tt.Shape, tt.Data}
		}, ErrState},
		{"bad json", func(m map[string]Tensor) { m["m.weight"+SuffixQuantStateNF4] = js(`{"quant_type": "nf4"`) }, ErrState},
		{"shape vs packed", func(m map[string]Tensor) {
			m["m.weight"+SuffixQuantStateNF4] = js(`{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [4101], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.1}`)
		}, ErrState},
		{"blocksize vs absmax", func(m map[string]Tensor) {
			m["m.weight"+SuffixQuantStateNF4] = js(`{"quant_type": "nf4", "blocksize": 128, "dtype": "float32", "shape": [4099], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.1}`)
		}, ErrState},
		{"no nested fields", func(m map[string]Tensor) {
			m["m.weight"+SuffixQuantStateNF4] = js(`{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [4099]}`)
		}, ErrState},
		{"weight bytes vs shape", func(m map[string]Tensor) {
			w := m["m.weight"]
			m["m.weight"] = Tensor{w.DType, []int64{int64(len(w.Data)) + 1, 1}, w.Data}
		}, ErrState},
		{"weight dtype unknown", func(m map[string]Tensor) {
			w := m["m.weight"]
			m["m.weight"] = Tensor{"X9", w.Shape, w.Data}
		}, ErrState},
		{"absmax dtype", func(m map[string]Tensor) {
			a := m["m.weight.absmax"]
			m["m.weight.absmax"] = Tensor{dtype.I8, a.Shape, a.Data}
		}, ErrState},
		{"quant_map length", func(m map[string]Tensor) {
			a := m["m.weight.quant_map"]
			m["m.weight.quant_map"] = Tensor{dtype.F32, []int64{15}, a.Data[:60]}
		}, ErrState},
		{"nested_absmax length", func(m map[string]Tensor) {
			m["m.weight.nested_absmax"] = Tensor{dtype.F32, []int64{2}, make([]byte, 8)}
		}, ErrState},
		{"nested map dtype", func(m map[string]Tensor) {
			a := m["m.weight.nested_quant_map"]
			m["m.weight.nested_quant_map"] = Tensor{dtype.U8, []int64{1024}, a.Data}
		}, ErrState},
	} {
		m := clone()
		tc.edit(m)
		_, _, err := ParseModule("m.weight", func(n string) (Tensor, bool) { v, ok := m[n]; return v, ok })
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		} else if !strings.Contains(err.Error(), "m.weight") {
			t.Errorf("%s: error %q does not name the tensor", tc.name, err)
		}
	}
}

func TestSplitStateKey(t *testing.T) {
	for _, tc := range []struct{ name, w, s string }{
		{"a.q_proj.weight.absmax", "a.q_proj.weight", SuffixAbsmax},
		{"a.q_proj.weight.nested_absmax", "a.q_proj.weight", SuffixNestedAbsmax},
		{"a.q_proj.weight.quant_map", "a.q_proj.weight", SuffixQuantMap},
		{"a.q_proj.weight.nested_quant_map", "a.q_proj.weight", SuffixNestedQuantMap},
		{"a.q_proj.weight.quant_state.bitsandbytes__fp4", "a.q_proj.weight", SuffixQuantStateFP4},
		{"a.q_proj.weight", "", ""}, {".absmax", "", ""}, {"a.bias", "", ""},
	} {
		w, s, ok := SplitStateKey(tc.name)
		if w != tc.w || s != tc.s || ok != (tc.w != "") {
			t.Errorf("%s: %q %q %v", tc.name, w, s, ok)
		}
	}
}

func TestQuantizeTensorErrors(t *testing.T) {
	x := make([]float32, 6)
	for _, tc := range []struct {
		shape []int64
		opts  Options
		want  error
	}{
		{[]int64{2, 4}, DefaultOptions(), ErrLength},
		{[]int64{0}, DefaultOptions(), ErrLength},
		{[]int64{-2, -3}, DefaultOptions(), ErrState},
		{[]int64{2, 3}, Options{Blocksize: 100}, ErrBlocksize},
		{[]int64{2, 3}, Options{Type: 9}, ErrType},
		{[]int64{2, 3}, Options{DType: dtype.I8}, ErrDType},
	} {
		if _, err := QuantizeTensor(x[:min(len(x), 6)], tc.shape, tc.opts); !errors.Is(err, tc.want) {
			t.Errorf("%v %+v: %v, want %v", tc.shape, tc.opts, err, tc.want)
		}
	}
	if _, err := QuantizeTensor(x, []int64{2, 3}, Options{}); err != nil {
		t.Errorf("zero Options: %v", err)
	}
}

func TestOffsetSensitivity(t *testing.T) {
	// With an offset a few ulp away from the fixture's (what a different
	// summation order would give), only offset-dependent bytes change.
	fx := fixtures(t)
	src := readST(t, filepath.Join(fx, "peft", "tiny", "model.safetensors"))
	golden := readST(t, filepath.Join(fx, "bnb", "tiny-nf4", "model.safetensors"))
	total := 0
	for _, d := range []int32{-2, -1, 1, 2} {
		diffs := 0
		for _, w := range quantizedWeights(golden) {
			qs, _, err := ParseModule(w, golden.get)
			if err != nil {
				t.Fatal(err)
			}
			off := math.Float32frombits(uint32(int32(math.Float32bits(qs.Nested.Offset)) + d))
			opts := DefaultOptions()
			opts.Offset = &off
			q, err := QuantizeTensor(src.f32(t, w), src.tensors[w].Shape, opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, nt := range q.Tensors(w) {
				g := golden.tensors[nt.Name].Data
				switch {
				case strings.HasSuffix(nt.Name, SuffixAbsmax), strings.HasSuffix(nt.Name, SuffixNestedAbsmax):
					for i := range g {
						if g[i] != nt.Data[i] {
							diffs++
						}
					}
				case strings.HasSuffix(nt.Name, SuffixQuantStateNF4):
					var a, b map[string]any
					_ = json.Unmarshal(g, &a)
					_ = json.Unmarshal(nt.Data, &b)
					delete(a, "nested_offset")
					delete(b, "nested_offset")
					if len(a) != 6 || !jsonEqual(a, b) {
						t.Errorf("%s: JSON differs beyond nested_offset", nt.Name)
					}
				default:
					if !bytes.Equal(g, nt.Data) {
						t.Errorf("%s: changed with the offset", nt.Name)
					}
				}
			}
		}
		t.Logf("offset %+d ulp: %d absmax/nested_absmax bytes differ over 14 weights", d, diffs)
		total += diffs
	}
	if total == 0 {
		t.Log("no byte depends on the offset's last bits here")
	}
}

func jsonEqual(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func TestDequantizeTo(t *testing.T) {
	// 1 + 2^-8 lies exactly between two bf16 values: ties to even gives 1.0.
	qs := &QuantState{Type: NF4, Blocksize: 64, Shape: []int64{2}, DType: dtype.BF16, Absmax: []float32{1}}
	qs.Map[1] = 1 + 1.0/256
	qs.Map[2] = 1 + 3.0/256 // between 0x3f81 and 0x3f82: even is 0x3f82
	dst := make([]byte, 4)
	if err := qs.DequantizeTo(dst, []byte{0x12}); err != nil {
		t.Fatal(err)
	}
	if got := []uint16{uint16(dst[0]) | uint16(dst[1])<<8, uint16(dst[2]) | uint16(dst[3])<<8}; got[0] != 0x3f80 || got[1] != 0x3f82 {
		t.Errorf("bf16 %04x", got)
	}
	if err := qs.DequantizeTo(dst[:3], []byte{0x12}); !errors.Is(err, ErrLength) {
		t.Errorf("short dst: %v", err)
	}
	bad := *qs
	bad.Absmax = nil
	if err := bad.DequantizeTo(dst, []byte{0x12}); !errors.Is(err, ErrState) {
		t.Errorf("invalid state: %v", err)
	}
	// QuantizeRaw from bf16 bytes equals QuantizeTensor of the widened values.
	x := randFloats(4, 1000, 0.1)
	raw := make([]byte, 2000)
	if err := dtype.FromF32(raw, x, dtype.BF16); err != nil {
		t.Fatal(err)
	}
	q1, err := QuantizeRaw(raw, dtype.BF16, []int64{10, 100}, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	wide := make([]float32, 1000)
	_ = dtype.ToF32(wide, raw, dtype.BF16)
	opts := DefaultOptions()
	opts.DType = dtype.BF16
	q2, _ := QuantizeTensor(wide, []int64{10, 100}, opts)
	if !bytes.Equal(q1.Packed, q2.Packed) || !bytes.Equal(q1.State.JSON(), q2.State.JSON()) ||
		!strings.Contains(string(q1.State.JSON()), `"dtype": "bfloat16"`) {
		t.Error("QuantizeRaw differs")
	}
	if _, err := QuantizeRaw(raw[:3], dtype.BF16, []int64{1}, DefaultOptions()); !errors.Is(err, ErrLength) {
		t.Errorf("odd bytes: %v", err)
	}
	if _, err := QuantizeRaw(raw, dtype.I16, []int64{1000}, DefaultOptions()); !errors.Is(err, ErrDType) {
		t.Errorf("I16: %v", err)
	}
}
