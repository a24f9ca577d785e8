package nf4

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"sort"
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/dtype"
)

// fixtures returns the shared fixtures directory, walking up from the
// package directory; it skips the test when absent.
func fixtures(t testing.TB) string {
	t.Helper()
	return testbin.Fixtures(t)
}

// stFile is a safetensors file read whole by a minimal test-only reader
// (8-byte little-endian header length, JSON header, data section).
type stFile struct {
	names   []string // data order
	tensors map[string]Tensor
	meta    map[string]string
}

func readST(t testing.TB, path string) *stFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hl := binary.LittleEndian.Uint64(b)
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+hl], &raw); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	data := b[8+hl:]
	f := &stFile{tensors: map[string]Tensor{}}
	type ent struct {
		DType   string  `json:"dtype"`
		Shape   []int64 `json:"shape"`
		Offsets [2]int  `json:"data_offsets"`
	}
	offs := map[string]int{}
	for k, v := range raw {
		if k == "__metadata__" {
			if err := json.Unmarshal(v, &f.meta); err != nil {
				t.Fatal(err)
			}
			continue
		}
		var e ent
		if err := json.Unmarshal(v, &e); err != nil {
			t.Fatal(err)
		}
		f.tensors[k] = Tensor{DType: dtype.DType(e.DType), Shape: e.Shape, Data: data[e.Offsets[0]:e.Offsets[1]]}
		f.names = append(f.names, k)
		offs[k] = e.Offsets[0]
	}
	sort.Slice(f.names, func(i, j int) bool { return offs[f.names[i]] < offs[f.names[j]] })
	return f
}

func (f *stFile) f32(t testing.TB, name string) []float32 {
	t.Helper()
	tt, ok := f.tensors[name]
	if !ok || tt.DType != dtype.F32 {
		t.Fatalf("tensor %q missing or not F32", name)
	}
	out := make([]float32, len(tt.Data)/4)
	decodeF32(out, tt.Data)
	return out
}

func (f *stFile) get(name string) (Tensor, bool) {
	tt, ok := f.tensors[name]
	return tt, ok
}

// randFloats returns n deterministic normal-ish values scaled by scale.
func randFloats(seed uint64, n int, scale float32) []float32 {
	out := make([]float32, n)
	s := seed*0x9e3779b97f4a7c15 + 1
	next := func() float64 {
		s ^= s << 13
		s ^= s >> 7
		s ^= s << 17
		return float64(s>>11) / (1 << 53)
	}
	for i := range out {
		u1, u2 := next(), next()
		out[i] = float32(math.Sqrt(-2*math.Log(u1+1e-300))*math.Cos(2*math.Pi*u2)) * scale
	}
	return out
}

func f32bits(v []float32) []uint32 {
	out := make([]uint32, len(v))
	for i, f := range v {
		out[i] = math.Float32bits(f)
	}
	return out
}

type rawJSON = json.RawMessage

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonMarshalIndent(v any) ([]byte, error) { return json.MarshalIndent(v, "", "  ") }
func jsonUnmarshal(b []byte, v any) error     { return json.Unmarshal(b, v) }
