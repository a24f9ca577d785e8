package dtype

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/lorakit/lorakit/internal/kernels/ktest"
)

func TestParse(t *testing.T) {
	sizes := map[DType]int{F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1,
		U16: 2, U32: 4, U64: 8, BOOL: 1, F8E4M3: 1, F8E5M2: 1}
	if len(sizes) != len(All) {
		t.Fatalf("All has %d types, want %d", len(All), len(sizes))
	}
	for _, d := range All {
		got, err := Parse(string(d))
		if err != nil || got != d {
			t.Errorf("Parse(%q) = %q, %v", d, got, err)
		}
		if d.Size() != sizes[d] {
			t.Errorf("%s.Size() = %d, want %d", d, d.Size(), sizes[d])
		}
		if got, err := ParseName(string(d)); err != nil || got != d {
			t.Errorf("ParseName(%q) = %q, %v", d, got, err)
		}
	}
	for _, s := range []string{"", "bf16", "F8_E4M3FN", "float32", "F 32", "C64", "F8_E8M0", "BF16 ", "torch.float32"} {
		if d, err := Parse(s); !errors.Is(err, ErrUnknown) || d != "" {
			t.Errorf("Parse(%q) = %q, %v; want ErrUnknown", s, d, err)
		}
	}
	if DType("X").Size() != 0 || DType("").Size() != 0 {
		t.Error("unknown Size() != 0")
	}
}

func TestParseName(t *testing.T) {
	for _, c := range []struct {
		in   string
		want DType
	}{
		{"bf16", BF16}, {"BF16", BF16}, {"bfloat16", BF16}, {"torch.bfloat16", BF16},
		{"f16", F16}, {"float16", F16}, {"half", F16}, {"torch.float16", F16},
		{"f32", F32}, {"float32", F32}, {"float", F32}, {"torch.float32", F32}, {"Float32", F32},
		{"f64", F64}, {"double", F64},
		{"int64", I64}, {"long", I64}, {"int32", I32}, {"int", I32}, {"uint8", U8}, {"bool", BOOL},
		{"float8_e4m3fn", F8E4M3}, {"torch.float8_e4m3fn", F8E4M3}, {"f8_e4m3", F8E4M3},
		{"float8_e5m2", F8E5M2},
	} {
		if got, err := ParseName(c.in); err != nil || got != c.want {
			t.Errorf("ParseName(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, s := range []string{"", "q4_0", "nf4", "float128", "torch.", "complex64", "torch.torch.float32"} {
		if _, err := ParseName(s); !errors.Is(err, ErrUnknown) {
			t.Errorf("ParseName(%q) err = %v; want ErrUnknown", s, err)
		}
	}
}

func TestIsFloat(t *testing.T) {
	for _, d := range All {
		want := slices.Contains([]DType{F64, F32, F16, BF16, F8E4M3, F8E5M2}, d)
		if d.IsFloat() != want {
			t.Errorf("%s.IsFloat() = %v", d, !want)
		}
	}
}

func le(vals ...any) []byte {
	var b []byte
	for _, v := range vals {
		b, _ = binary.Append(b, binary.LittleEndian, v)
	}
	return b
}

func TestToF32(t *testing.T) {
	nan := float32(math.NaN())
	for _, c := range []struct {
		d    DType
		src  []byte
		want []float32
	}{
		{F32, le(float32(1.5), float32(-0.25), uint32(0x7f800001)), []float32{1.5, -0.25, math.Float32frombits(0x7f800001)}},
		{F64, le(1.5, math.MaxFloat64, 1+0x1p-24, 1+0x1p-24+0x1p-50, math.NaN()), []float32{1.5, float32(math.Inf(1)), 1, 1 + 0x1p-23, nan}},
		{BF16, le(uint16(0x3f80), uint16(0xc040)), []float32{1, -3}},
		{F16, le(uint16(0x3c00), uint16(0xfbff), uint16(0x0001)), []float32{1, -65504, 0x1p-24}},
		{F8E4M3, []byte{0x38, 0xfe, 0x7f}, []float32{1, -448, nan}},
		{F8E5M2, []byte{0x3c, 0xfb, 0x7c}, []float32{1, -57344, float32(math.Inf(1))}},
		{I64, le(int64(-3), int64(1<<62+1)), []float32{-3, 0x1p62}},
		{U64, le(uint64(math.MaxUint64)), []float32{0x1p64}},
		{I32, le(int32(-7), int32(16777217)), []float32{-7, 16777216}}, // 2²⁴+1 ties to even
		{U32, le(uint32(math.MaxUint32)), []float32{0x1p32}},
		{I16, le(int16(-32768)), []float32{-32768}},
		{U16, le(uint16(65535)), []float32{65535}},
		{I8, []byte{0x80, 0x7f}, []float32{-128, 127}},
		{U8, []byte{0xff, 0}, []float32{255, 0}},
		{BOOL, []byte{0, 1, 2}, []float32{0, 1, 1}},
	} {
		got := make([]float32, len(c.want))
		if err := ToF32(got, c.src, c.d); err != nil {
			t.Errorf("%s: %v", c.d, err)
			continue
		}
		for i := range got {
			if !ktest.SameBits(got[i], c.want[i]) && !(math.IsNaN(float64(got[i])) && math.IsNaN(float64(c.want[i]))) {
				t.Errorf("%s[%d] = %g (%#08x), want %g", c.d, i, got[i], math.Float32bits(got[i]), c.want[i])
			}
		}
		if err := ToF32(got, c.src[1:], c.d); !errors.Is(err, ErrLength) {
			t.Errorf("%s short src: err = %v", c.d, err)
		}
	}
	if err := ToF32(nil, nil, "X"); !errors.Is(err, ErrUnknown) {
		t.Errorf("unknown dtype: err = %v", err)
	}
}

func TestFromF32(t *testing.T) {
	src := []float32{1, -2.5, float32(math.Inf(-1)), 1 + 0x1p-8, 65520}
	for _, c := range []struct {
		d    DType
		want []byte
	}{
		{F32, le(src)},
		{F64, le(1.0, -2.5, math.Inf(-1), 1+0x1p-8, 65520.0)},
		{BF16, le(uint16(0x3f80), uint16(0xc020), uint16(0xff80), uint16(0x3f80), uint16(0x477f)+1)},
		{F16, le(uint16(0x3c00), uint16(0xc100), uint16(0xfc00), uint16(0x3c04), uint16(0x7c00))},
		{F8E4M3, []byte{0x38, 0xc2, 0xff, 0x38, 0x7f}},
		{F8E5M2, []byte{0x3c, 0xc1, 0xfc, 0x3c, 0x7c}},
	} {
		got := make([]byte, len(src)*c.d.Size())
		if err := FromF32(got, src, c.d); err != nil {
			t.Errorf("%s: %v", c.d, err)
			continue
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: got % x, want % x", c.d, got, c.want)
		}
		if err := FromF32(got[1:], src, c.d); !errors.Is(err, ErrLength) {
			t.Errorf("%s short dst: err = %v", c.d, err)
		}
	}
	for _, d := range []DType{I64, I32, I16, I8, U8, U16, U32, U64, BOOL} {
		if err := FromF32(make([]byte, d.Size()), []float32{1}, d); !errors.Is(err, ErrUnsupported) {
			t.Errorf("FromF32 to %s: err = %v, want ErrUnsupported", d, err)
		}
	}
	if err := FromF32(nil, nil, "f32"); !errors.Is(err, ErrUnknown) {
		t.Errorf("unknown dtype: err = %v", err)
	}
}

func TestConvert(t *testing.T) {
	n := 3*convertChunk + 17 // several chunks and a tail
	src := ktest.Floats(ktest.Bits(n, 6))
	f32 := make([]byte, 4*n)
	if err := FromF32(f32, src, F32); err != nil {
		t.Fatal(err)
	}
	for _, sd := range []DType{F32, BF16, F16, F64} {
		in := make([]byte, n*sd.Size())
		if err := FromF32(in, src, sd); err != nil {
			t.Fatal(err)
		}
		decoded := make([]float32, n)
		if err := ToF32(decoded, in, sd); err != nil {
			t.Fatal(err)
		}
		for _, dd := range []DType{F32, BF16, F16, F8E4M3, F8E5M2, F64} {
			want := make([]byte, n*dd.Size())
			if err := FromF32(want, decoded, dd); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, n*dd.Size())
			if err := Convert(got, dd, in, sd); err != nil {
				t.Fatalf("%s to %s: %v", sd, dd, err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s to %s differs from ToF32+FromF32", sd, dd)
			}
		}
	}
	if err := Convert(make([]byte, 4), F32, make([]byte, 3), F16); !errors.Is(err, ErrLength) {
		t.Errorf("odd length: %v", err)
	}
	if err := Convert(make([]byte, 4), I32, make([]byte, 2), F16); !errors.Is(err, ErrUnsupported) {
		t.Errorf("to I32: %v", err)
	}
	if err := Convert(make([]byte, 4), I32, make([]byte, 4), I32); err != nil {
		t.Errorf("I32 copy: %v", err)
	}
	if err := Convert(nil, F32, nil, "Q4"); !errors.Is(err, ErrUnknown) {
		t.Errorf("unknown: %v", err)
	}
}

func TestBulkTyped(t *testing.T) {
	bits := ktest.Bits(1000, 7)
	src := ktest.Floats(bits)
	h := make([]uint16, len(src))
	back := make([]float32, len(src))
	F32sToBF16(h, src)
	BF16sToF32(back, h)
	for i, f := range src {
		if h[i] != F32ToBF16(f) || !ktest.SameBits(back[i], BF16ToF32(h[i])) {
			t.Fatalf("bf16 bulk %d: %#04x", i, h[i])
		}
	}
	F32sToF16(h, src)
	F16sToF32(back, h)
	for i, f := range src {
		if h[i] != F32ToF16(f) || !ktest.SameBits(back[i], F16ToF32(h[i])) {
			t.Fatalf("f16 bulk %d: %#04x", i, h[i])
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("length mismatch did not panic")
		}
	}()
	F32sToF16(h[1:], src)
}

// readSafetensors is a minimal reader for the fixture test (pkg/safetensors
// is the real one).
func readSafetensors(t *testing.T, path string) map[string][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(b)
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &hdr); err != nil {
		t.Fatal(err)
	}
	data := b[8+n:]
	out := map[string][]byte{}
	for name, raw := range hdr {
		if name == "__metadata__" {
			continue
		}
		var ti struct {
			DType   string   `json:"dtype"`
			Offsets [2]int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &ti); err != nil {
			t.Fatal(err)
		}
		out[name+":"+ti.DType] = data[ti.Offsets[0]:ti.Offsets[1]]
	}
	return out
}

// TestGoldenBF16 checks against PyTorch: tiny-bf16 is tiny's f32 weights
// after .to(torch.bfloat16).
func TestGoldenBF16(t *testing.T) {
	dir := filepath.Join(fixtures(t), "peft")
	f32 := readSafetensors(t, filepath.Join(dir, "tiny", "model.safetensors"))
	bf16 := readSafetensors(t, filepath.Join(dir, "tiny-bf16", "model.safetensors"))
	checked := 0
	for key, raw := range f32 {
		name := key[:len(key)-len(":F32")]
		want, ok := bf16[name+":BF16"]
		if !ok {
			t.Fatalf("%s: no BF16 twin", name)
		}
		vals := make([]float32, len(raw)/4)
		if err := ToF32(vals, raw, F32); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 2*len(vals))
		if err := Convert(got, BF16, raw, F32); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: bf16 differs from torch", name)
		}
		if err := FromF32(got, vals, BF16); err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: FromF32 differs from torch (%v)", name, err)
		}
		checked += len(vals)
	}
	if checked < 100000 {
		t.Fatalf("checked only %d values", checked)
	}
}

func TestTorchNameRoundTrip(t *testing.T) {
	for _, d := range []DType{F64, F32, F16, BF16} {
		back, err := ParseName(d.TorchName())
		if err != nil || back != d {
			t.Errorf("%s: TorchName %q parses as %s, %v", d, d.TorchName(), back, err)
		}
	}
	if I8.TorchName() != "" {
		t.Errorf("I8.TorchName() = %q", I8.TorchName())
	}
}
