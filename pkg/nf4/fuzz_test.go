package nf4

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/lorakit/lorakit/pkg/dtype"
)

var stateSeeds = []string{
	`{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [64, 128], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.05134176090359688}`,
	`{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [64, 128]}`,
	`{"quant_type": "fp4", "blocksize": 4096, "dtype": "bfloat16", "shape": [7], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 1e-05}`,
	`{"shape":[],"dtype":"float16","blocksize":32,"quant_type":"nf4"}`,
	`{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [3], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": NaN}`,
	`{"a": [1, 2, null, true, -0.5e+3]}`, `{`, `{"quant_type": "nf4",}`,
}

func FuzzParseStateJSON(f *testing.F) {
	for _, s := range stateSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		qs, err := ParseStateJSON(b)
		if err != nil {
			if !errors.Is(err, ErrState) {
				t.Fatalf("error %v is not ErrState", err)
			}
			return
		}
		if CheckBlocksize(qs.Blocksize) != nil || len(qs.Shape) > maxRank || !qs.Type.valid() {
			t.Fatalf("accepted invalid state %+v", qs)
		}
		if _, err := numElements(qs.Shape); err != nil {
			t.Fatal(err)
		}
		// What we write, we read back to the same state.
		qs2, err := ParseStateJSON(qs.JSON())
		if err != nil {
			t.Fatalf("re-parse of %s: %v", qs.JSON(), err)
		}
		if qs2.Type != qs.Type || qs2.Blocksize != qs.Blocksize || qs2.DType != qs.DType ||
			!slices.Equal(qs2.Shape, qs.Shape) || (qs2.Nested == nil) != (qs.Nested == nil) {
			t.Fatalf("round trip %+v vs %+v", qs2, qs)
		}
		if qs.Nested != nil && math.Float32bits(qs2.Nested.Offset) != math.Float32bits(qs.Nested.Offset) &&
			!(qs.Nested.Offset != qs.Nested.Offset && qs2.Nested.Offset != qs2.Nested.Offset) {
			t.Fatalf("offset round trip %v vs %v", qs2.Nested.Offset, qs.Nested.Offset)
		}
	})
}

// FuzzParseModule feeds a module whose JSON and tensor sizes come from the
// fuzzer: ParseModule must reject every inconsistency without panicking, and
// whatever it accepts must dequantize.
func FuzzParseModule(f *testing.F) {
	for _, s := range stateSeeds[:3] {
		f.Add([]byte(s), uint16(4096), uint16(128), uint16(1), uint8(0), []byte{1, 2, 3})
	}
	f.Add([]byte(stateSeeds[1]), uint16(4096), uint16(128), uint16(0), uint8(1), []byte{})
	f.Fuzz(func(t *testing.T, js []byte, nPacked, nAbsmax, nNested uint16, kinds uint8, fill []byte) {
		filled := func(n int) []byte {
			b := make([]byte, n)
			for i := range b {
				if len(fill) > 0 {
					b[i] = fill[i%len(fill)]
				}
			}
			return b
		}
		m := map[string]Tensor{}
		key := "w" + SuffixQuantStateNF4
		if kinds&1 != 0 {
			key = "w" + SuffixQuantStateFP4
		}
		m[key] = Tensor{dtype.U8, []int64{int64(len(js))}, js}
		m["w"] = Tensor{dtype.U8, []int64{int64(nPacked), 1}, filled(int(nPacked))}
		m["w.quant_map"] = Tensor{dtype.F32, []int64{16}, filled(64)}
		if kinds&2 != 0 {
			m["w.absmax"] = Tensor{dtype.F32, []int64{int64(nAbsmax)}, filled(4 * int(nAbsmax))}
		} else {
			m["w.absmax"] = Tensor{dtype.U8, []int64{int64(nAbsmax)}, filled(int(nAbsmax))}
		}
		if kinds&4 == 0 {
			m["w.nested_absmax"] = Tensor{dtype.F32, []int64{int64(nNested)}, filled(4 * int(nNested))}
			m["w.nested_quant_map"] = Tensor{dtype.F32, []int64{256}, filled(1024)}
		}
		qs, packed, err := ParseModule("w", func(n string) (Tensor, bool) { v, ok := m[n]; return v, ok })
		if err != nil {
			if !errors.Is(err, ErrState) && !errors.Is(err, ErrMissing) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		n := qs.NumElements()
		if int64(len(packed)) != int64(PackedLen(int(n))) {
			t.Fatalf("accepted %d packed bytes for %d elements", len(packed), n)
		}
		dst := make([]float32, n)
		if err := qs.Dequantize(dst, packed); err != nil {
			t.Fatalf("accepted state fails to dequantize: %v", err)
		}
	})
}

// FuzzQuantize checks the fast kernels against the literal spec
// transcription on arbitrary float32 bit patterns.
func FuzzQuantize(f *testing.F) {
	f.Add([]byte{0, 0, 128, 63, 0, 0, 0, 0, 1, 2, 3, 4}, uint8(0), false)
	f.Add(make([]byte, 4*65), uint8(1), true)
	f.Fuzz(func(t *testing.T, raw []byte, bsExp uint8, fp4 bool) {
		n := len(raw) / 4
		if n == 0 {
			return
		}
		x := make([]float32, n)
		for i := range x {
			x[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		bs := 32 << (bsExp % 8)
		typ := NF4
		if fp4 {
			typ = FP4
		}
		p := make([]byte, PackedLen(n))
		a := make([]float32, NumBlocks(n, bs))
		if err := Quantize(p, a, x, bs, typ); err != nil {
			t.Fatal(err)
		}
		wp, wa := specQuantize(x, bs, typ)
		if !slices.Equal(p, wp) {
			t.Fatalf("packed % x, spec % x", p, wp)
		}
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(wa[i]) && !(a[i] != a[i] && wa[i] != wa[i]) {
				t.Fatalf("absmax[%d] %v, spec %v", i, a[i], wa[i])
			}
		}
	})
}
