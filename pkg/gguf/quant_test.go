package gguf

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"testing"

	"github.com/lorakit/lorakit/internal/kernels/q8"
	"github.com/lorakit/lorakit/pkg/dtype"
)

func pad32(xs ...float32) []float32 {
	out := make([]float32, 32)
	copy(out, xs)
	return out
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// genInput is the deterministic input shared with the Python reference
// (float32 arithmetic of quantize_row_q8_0_ref / quantize_row_q4_0_ref simulated with
// struct-packed floats) that produced the digests below: values k/37·2^e with
// k ∈ [−1000, 1000] from a 64-bit LCG and e cycling through −12…11 per block.
func genInput(n int) []float32 {
	out := make([]float32, n)
	s := uint64(12345)
	for i := range out {
		s = s*6364136223846793005 + 1442695040888963407
		k := int64((s>>33)%2001) - 1000
		e := (i/32)%24 - 12
		out[i] = float32(float64(k) / 37.0 * math.Ldexp(1, e))
	}
	return out
}

// Expected blocks computed independently (Python reference, see genInput) and checked
// by hand against spec §2.3: ties round away from zero, the quants use the float32 d,
// d is stored as F16 rounded to nearest even.
var q8Golden = []struct {
	name string
	in   []float32
	want string
}{
	{"zeros", pad32(), "0000" + "0000000000000000000000000000000000000000000000000000000000000000"},
	// d = 1: 63.5 → 64, −63.5 → −64, 0.5 → 1, 2.5 → 3 (not 2), 0.49999997 → 0, −0 → 0
	{"ties_d1", pad32(127, -127, 63.5, -63.5, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999997, -0.49999997, 126.5, -126.5, 0.25, 3.4999998, 0, float32(math.Copysign(0, -1))),
		"003c7f8140c001ff02fe03fd00007f81000300000000000000000000000000000000"},
	// max |x| is negative: d = 254/127 = 2 (positive), −254 → −127
	{"negmax_d2", pad32(3, -3, 1, -1, 253, -254, 0.9999999, 5, -5, 0.5),
		"004002fe01ff7f810003fd0000000000000000000000000000000000000000000000"},
	// d = 1/127 is stored as F16 0x2008 but the quants use id = 1/(float32 d) = 127
	{"scale_1_127", pad32(1, 0.5, -0.5, 0.25, 0.75, float32(1.0/3), float32(-2.0/3), 0.1, 0.2, 0.3, 0.125, -0.0625, 0.9, 0.99),
		"08207f40c0205f2aab0d192610f8727e000000000000000000000000000000000000"},
	// d = 1 + 2⁻¹¹ lies halfway between two halves: ties to even (0x3c00)
	{"f16_tie_down", pad32(127.06201171875, 64, -32, 0.5, 1, 100),
		"003c7f40e00001640000000000000000000000000000000000000000000000000000"},
	// d = 1 + 3·2⁻¹¹: ties to even upwards (0x3c02); negative max
	{"f16_tie_up", pad32(-127.18603515625, 64, 32, 0.5, 1, 100),
		"023c8140200001640000000000000000000000000000000000000000000000000000"},
	// d = 7.87e-8 is a subnormal half (0x0001)
	{"f16_subnormal_scale", pad32(1e-5, -5e-6, 2.5e-6, 1e-7),
		"01007fc0200100000000000000000000000000000000000000000000000000000000"},
	// 1/d overflows float32: all-zero quants and d = +0 (what x86 builds of the
	// reference produce: the C conversion of ±Inf/NaN to int8 yields 0)
	{"tiny_block", pad32(1e-38, -5e-39, 1e-40),
		"0000" + "0000000000000000000000000000000000000000000000000000000000000000"},
}

func TestQuantizeQ8_0Golden(t *testing.T) {
	for _, tc := range q8Golden {
		t.Run(tc.name, func(t *testing.T) {
			want := unhex(t, tc.want)
			for name, f := range q8Impls() {
				got := make([]byte, BlockBytesQ8_0)
				if bad := f(got, tc.in); bad != -1 {
					t.Fatalf("%s: non-finite block %d", name, bad)
				}
				if hex.EncodeToString(got) != tc.want {
					t.Errorf("%s:\n got %x\nwant %x", name, got, want)
				}
			}
			got := make([]byte, BlockBytesQ8_0)
			if err := Quantize(got, tc.in, TypeQ8_0); err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got) != tc.want {
				t.Errorf("Quantize:\n got %x\nwant %x", got, want)
			}
		})
	}
}

// q8Impls returns the kernel to check: the active tier's (LORAKIT_CPU selects it).
func q8Impls() map[string]func([]byte, []float32) int {
	return map[string]func([]byte, []float32) int{q8.Impl(): q8.Quantize}
}

func TestQuantizeQ8_0Reference(t *testing.T) {
	src := genInput(4096)
	dst := make([]byte, len(src)/32*34)
	if err := QuantizeQ8_0(dst, src); err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(dst[:34]), "4903d465ca42783b42c440f475817337d4ad0de1a1d8daf5cf94186b2d60b0f96fba"; got != want {
		t.Errorf("first block\n got %s\nwant %s", got, want)
	}
	sum := sha256.Sum256(dst)
	if got, want := hex.EncodeToString(sum[:]), "e37fa4a79562c776cf08b16366a6e350c0a5f814e9b0fc1d7145d184cd1cb840"; got != want {
		t.Errorf("sha256 %s, want %s", got, want)
	}
	// splitting the tensor on block boundaries gives the same bytes
	split := make([]byte, len(dst))
	for i := 0; i < len(src); i += 96 {
		j := min(i+96, len(src))
		if err := QuantizeQ8_0(split[i/32*34:j/32*34], src[i:j]); err != nil {
			t.Fatal(err)
		}
	}
	if string(split) != string(dst) {
		t.Error("split quantization differs")
	}
}

func TestQuantizeNonFinite(t *testing.T) {
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		for _, typ := range []Type{TypeQ8_0, TypeQ4_0} {
			src := genInput(96)
			src[70] = bad
			dst := make([]byte, 3*typ.TypeSize())
			err := Quantize(dst, src, typ)
			if !errors.Is(err, ErrNonFinite) {
				t.Fatalf("%s %v: err = %v", typ, bad, err)
			}
			if want := "element 70"; !contains(err.Error(), want) {
				t.Errorf("%s: error %q does not name %q", typ, err, want)
			}
		}
		for name, f := range q8Impls() {
			src := genInput(96)
			src[40] = bad
			if got := f(make([]byte, 3*34), src); got != 1 {
				t.Errorf("%s: bad block %d, want 1", name, got)
			}
		}
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub))
}

var q4Golden = []struct {
	name string
	in   []float32
	want string
}{
	// zeros: d = 0/−8 = −0 (F16 0x8000), id = 0, every nibble trunc(0 + 8.5) = 8
	{"zeros", pad32(), "0080" + "88888888888888888888888888888888"},
	// max = 8: d = −1; 8 → 0, −8 → 16 → 15, 4 → 4.5 → 4; low nibble j, high nibble j+16
	{"posmax", pad32(8, 4, -4, 1, -1, 0.5, 7.5, -8, 3), "00bc80848c878988818f8588888888888888"},
	// −8 and 8 tie for the largest magnitude: the first (−8) wins, d = 1
	{"negmax_first_tie", pad32(-8, 8, 4, -4, 1, -1, 0.5, 2), "003c808f8c848987898a8888888888888888"},
	// d = 2, id = 0.5: values on nibble boundaries
	{"halfway", pad32(-16, 1, 3, 5, -1, -3, -5, 15, 0.99999994, 2), "004080898a8b8887868f8889888888888888"},
	// d = −1.25e-39 (F16 −0), 1/d overflows: all-zero nibbles as x86 builds produce
	{"tiny_block", pad32(1e-38, -5e-39), "0080" + "00000000000000000000000000000000"},
}

func TestQuantizeQ4_0Golden(t *testing.T) {
	for _, tc := range q4Golden {
		got := make([]byte, BlockBytesQ4_0)
		if err := Quantize(got, tc.in, TypeQ4_0); err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(got) != tc.want {
			t.Errorf("%s:\n got %x\nwant %s", tc.name, got, tc.want)
		}
	}
	src := genInput(4096)
	dst := make([]byte, len(src)/32*18)
	if err := QuantizeQ4_0(dst, src); err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(dst[:18]), "8512956e255c6f7c5c14acf7bfe03f8bf543"; got != want {
		t.Errorf("first block\n got %s\nwant %s", got, want)
	}
	sum := sha256.Sum256(dst)
	if got, want := hex.EncodeToString(sum[:]), "ed25ad4b2a0a696f166b3c960a7866c6b0133336ba3fde54ac82f68b1eb51194"; got != want {
		t.Errorf("sha256 %s, want %s", got, want)
	}
}

func TestDequantize(t *testing.T) {
	// exact values: Q8_0 block with d = 2 and Q4_0 block with d = −1
	q8 := unhex(t, "004002fe01ff7f810003fd0000000000000000000000000000000000000000000000")
	got := make([]float32, 32)
	if err := Dequantize(got, q8, TypeQ8_0); err != nil {
		t.Fatal(err)
	}
	wantQ8 := pad32(4, -4, 2, -2, 254, -254, 0, 6, -6, 0)
	for i := range got {
		if got[i] != wantQ8[i] {
			t.Fatalf("Q8_0[%d] = %v, want %v", i, got[i], wantQ8[i])
		}
	}
	q4 := unhex(t, "00bc80848c878988818f8588888888888888")
	if err := Dequantize(got, q4, TypeQ4_0); err != nil {
		t.Fatal(err)
	}
	// nibble n → (n − 8)·(−1)
	wantQ4 := pad32(8, 4, -4, 1, -1, 0, 7, -7, 3)
	for i := range got {
		if got[i] != wantQ4[i] && !(got[i] == 0 && wantQ4[i] == 0) {
			t.Fatalf("Q4_0[%d] = %v, want %v", i, got[i], wantQ4[i])
		}
	}

	// round trips within the quantization step for every type
	src := genInput(2048)
	for _, typ := range []Type{TypeF32, TypeF16, TypeBF16, TypeQ8_0, TypeQ4_0} {
		n, _ := typ.RowBytes(int64(len(src)))
		enc := make([]byte, n)
		if err := Quantize(enc, src, typ); err != nil {
			t.Fatal(typ, err)
		}
		dec := make([]float32, len(src))
		if err := Dequantize(dec, enc, typ); err != nil {
			t.Fatal(typ, err)
		}
		for b := 0; b < len(src); b += 32 {
			var amax float64
			for _, v := range src[b : b+32] {
				amax = max(amax, math.Abs(float64(v)))
			}
			for i := b; i < b+32; i++ {
				var tol float64
				switch typ {
				case TypeF16:
					tol = max(math.Abs(float64(src[i]))*0x1p-11, 0x1p-25)
				case TypeBF16:
					tol = math.Abs(float64(src[i])) * 0x1p-8
				case TypeQ8_0:
					tol = amax/127*0.5 + amax*0x1p-10 // half a step + F16 scale error
				case TypeQ4_0:
					tol = amax/8 + amax*0x1p-9 // a full step where +7 clips
				}
				if d := math.Abs(float64(dec[i]) - float64(src[i])); d > tol {
					t.Fatalf("%s: element %d: %v → %v (error %g > %g)", typ, i, src[i], dec[i], d, tol)
				}
			}
		}
	}
}

func TestQuantizeFloatEncodings(t *testing.T) {
	le16 := func(b []byte, i int) uint16 { return uint16(b[2*i]) | uint16(b[2*i+1])<<8 }
	// spec §2.2: BF16 is ggml_compute_fp32_to_bf16: round to nearest even, NaN forced quiet.
	bfIn := []float32{1, -2, 1 + 0x1p-8, 1 + 3*0x1p-8, math.Float32frombits(0x7f800001), math.Float32frombits(0xff812345), 0x1p-130, math.MaxFloat32}
	bfWant := []uint16{0x3f80, 0xc000, 0x3f80, 0x3f82, 0x7fc0, 0xffc1, 0x0008, 0x7f80}
	bf := make([]byte, 2*len(bfIn))
	if err := Quantize(bf, bfIn, TypeBF16); err != nil {
		t.Fatal(err)
	}
	for i, w := range bfWant {
		if got := le16(bf, i); got != w {
			t.Errorf("BF16(%v) = %#04x, want %#04x", bfIn[i], got, w)
		}
	}
	// F16: round to nearest even, subnormals kept, ≥ 65520 overflows to Inf.
	fIn := []float32{1, -2, 1 + 0x1p-11, 1 + 3*0x1p-11, 65504, 65519.99, 65520, -1e6, 1e-8, 0x1p-24, 0x1p-25, 0x1.8p-25}
	fWant := []uint16{0x3c00, 0xc000, 0x3c00, 0x3c02, 0x7bff, 0x7bff, 0x7c00, 0xfc00, 0x0000, 0x0001, 0x0000, 0x0001}
	f16 := make([]byte, 2*len(fIn))
	if err := Quantize(f16, fIn, TypeF16); err != nil {
		t.Fatal(err)
	}
	for i, w := range fWant {
		if got := le16(f16, i); got != w {
			t.Errorf("F16(%v) = %#04x, want %#04x", fIn[i], got, w)
		}
	}
	if got := F16Overflows(fIn); got != 2 {
		t.Errorf("F16Overflows = %d, want 2 (65520, -1e6)", got)
	}
	nan := make([]byte, 2)
	if err := Quantize(nan, []float32{float32(math.NaN())}, TypeF16); err != nil {
		t.Fatal(err)
	}
	if got := le16(nan, 0); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
		t.Errorf("F16(NaN) = %#04x, not a NaN", got)
	}
	if dtype.F16ToF32(0x7bff) != 65504 {
		t.Fatal("dtype F16 decode")
	}
}

func TestQuantizeErrors(t *testing.T) {
	cases := []struct {
		name string
		dst  int
		src  int
		typ  Type
		err  error
	}{
		{"q8 partial block", 34, 31, TypeQ8_0, ErrBlockSize},
		{"q8 short dst", 33, 32, TypeQ8_0, ErrSize},
		{"q4 long dst", 19, 32, TypeQ4_0, ErrSize},
		{"f16 short", 3, 2, TypeF16, ErrSize},
		{"q4_k unsupported", 144, 256, TypeQ4_K, ErrUnsupported},
		{"unknown type", 4, 1, Type(99), ErrUnsupported},
	}
	for _, tc := range cases {
		err := Quantize(make([]byte, tc.dst), make([]float32, tc.src), tc.typ)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: Quantize err = %v, want %v", tc.name, err, tc.err)
		}
		err = Dequantize(make([]float32, tc.src), make([]byte, tc.dst), tc.typ)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: Dequantize err = %v, want %v", tc.name, err, tc.err)
		}
	}
}

func benchQuant(b *testing.B, f func(dst []byte, src []float32), typ Type) {
	src := genInput(1 << 20) // 4 MiB of f32, one 1024×1024 matrix
	n, _ := typ.RowBytes(int64(len(src)))
	dst := make([]byte, n)
	b.SetBytes(int64(4 * len(src)))
	b.ResetTimer()
	for b.Loop() {
		f(dst, src)
	}
}

// BenchmarkQuantizeQ8_0 reports MB/s of float32 input.
func BenchmarkQuantizeQ8_0(b *testing.B) {
	benchQuant(b, func(d []byte, s []float32) { QuantizeQ8_0(d, s) }, TypeQ8_0)
}

func BenchmarkQuantizeQ4_0(b *testing.B) {
	benchQuant(b, func(d []byte, s []float32) { QuantizeQ4_0(d, s) }, TypeQ4_0)
}

// BenchmarkDequantizeQ8_0 reports MB/s of float32 output.
func BenchmarkDequantizeQ8_0(b *testing.B) {
	src := genInput(1 << 20)
	q := make([]byte, len(src)/32*34)
	QuantizeQ8_0(q, src)
	b.SetBytes(int64(4 * len(src)))
	for b.Loop() {
		DequantizeQ8_0(src, q)
	}
}
