package gguf

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

type testTensor struct {
	info TensorInfo
	data []byte
}

// encodeFile writes a complete file with NewWriter.
func encodeFile(t testing.TB, kvs []KV, tensors []testTensor) []byte {
	t.Helper()
	infos := make([]TensorInfo, len(tensors))
	for i, tt := range tensors {
		infos[i] = tt.info
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, kvs, infos)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tensors {
		if err := w.WriteTensor(tt.info.Name, tt.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if int64(buf.Len()) != w.Size() {
		t.Fatalf("wrote %d bytes, Size() = %d", buf.Len(), w.Size())
	}
	return buf.Bytes()
}

func f32Bytes(vs ...float32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// TestWriterGolden checks the exact bytes of a minimal file, assembled by hand from
// spec §1: header, one KV, one tensor info, padding to 32, data, padding to 32.
func TestWriterGolden(t *testing.T) {
	got := encodeFile(t, []KV{{"a", uint32(7)}},
		[]testTensor{{TensorInfo{Name: "t", Type: TypeF32, Shape: []int64{2}}, f32Bytes(1, 2)}})
	want := "47475546" + "03000000" + "0100000000000000" + "0100000000000000" + // magic, version, counts
		"0100000000000000" + "61" + "04000000" + "07000000" + // key "a", u32 7
		"0100000000000000" + "74" + "01000000" + "0200000000000000" + "00000000" + "0000000000000000" + // tensor info
		strings.Repeat("00", 96-74) + // pad to 96
		"0000803f" + "00000040" + strings.Repeat("00", 24) // data, pad to 128
	if hex.EncodeToString(got) != want {
		t.Fatalf("\n got %x\nwant %s", got, want)
	}
}

var allValues = []KV{
	{"general.architecture", "llama"},
	{"general.alignment", uint32(64)},
	{"v.u8", uint8(200)},
	{"v.i8", int8(-100)},
	{"v.u16", uint16(60000)},
	{"v.i16", int16(-30000)},
	{"v.u32", uint32(4000000000)},
	{"v.i32", int32(-2000000000)},
	{"v.f32", float32(1e-5)},
	{"v.bool", true},
	{"v.bool_false", false},
	{"v.str", "héllo\x00world"},
	{"v.str_empty", ""},
	{"v.u64", uint64(1 << 63)},
	{"v.i64", int64(-1 << 62)},
	{"v.f64", math.Pi},
	{"a.u8", []uint8{1, 2, 255}},
	{"a.i8", []int8{-1, 2}},
	{"a.u16", []uint16{1, 65535}},
	{"a.i16", []int16{-1, 32767}},
	{"a.u32", []uint32{1, 2, 3}},
	{"a.i32", []int32{1, -2, 3}},
	{"a.f32", []float32{0.5, float32(math.Inf(-1))}},
	{"a.bool", []bool{true, false, true}},
	{"a.str", []string{"<0x00>", "", "Ġthe"}},
	{"a.u64", []uint64{math.MaxUint64}},
	{"a.i64", []int64{math.MinInt64}},
	{"a.f64", []float64{-0.25}},
}

func roundTripTensors() []testTensor {
	src := genInput(64 * 3)
	q8 := make([]byte, len(src)/32*34)
	QuantizeQ8_0(q8, src)
	q4 := make([]byte, len(src)/32*18)
	QuantizeQ4_0(q4, src)
	f16 := make([]byte, 2*len(src))
	Quantize(f16, src, TypeF16)
	return []testTensor{
		{TensorInfo{Name: "token_embd.weight", Type: TypeQ8_0, Shape: []int64{64, 3}}, q8},
		{TensorInfo{Name: "output_norm.weight", Type: TypeF32, Shape: []int64{3}}, f32Bytes(1, 2, 3)},
		{TensorInfo{Name: "blk.0.attn_q.weight", Type: TypeQ4_0, Shape: []int64{64, 3, 1, 1}}, q4},
		{TensorInfo{Name: "empty", Type: TypeF32, Shape: []int64{0, 5}}, nil},
		{TensorInfo{Name: "scalar", Type: TypeI32, Shape: nil}, []byte{1, 2, 3, 4}},
		{TensorInfo{Name: "blk.0.attn_k.weight", Type: TypeF16, Shape: []int64{64, 3}}, f16},
	}
}

func TestRoundTrip(t *testing.T) {
	tensors := roundTripTensors()
	file := encodeFile(t, allValues, tensors)

	check := func(t *testing.T, h *Header) {
		t.Helper()
		if h.Version != Version || h.Alignment != 64 || h.DataOffset%64 != 0 {
			t.Fatalf("version %d alignment %d data offset %d", h.Version, h.Alignment, h.DataOffset)
		}
		if !reflect.DeepEqual(h.Metadata, Metadata(allValues)) {
			for i := range allValues {
				if !reflect.DeepEqual(h.Metadata[i], allValues[i]) {
					t.Errorf("kv %d: got %#v, want %#v", i, h.Metadata[i], allValues[i])
				}
			}
			t.FailNow()
		}
		if len(h.Tensors) != len(tensors) {
			t.Fatalf("%d tensors", len(h.Tensors))
		}
		var off int64
		for i, tt := range tensors {
			got := h.Tensors[i]
			if got.Name != tt.info.Name || got.Type != tt.info.Type || !reflect.DeepEqual(got.Shape, tt.info.Shape) && len(got.Shape)+len(tt.info.Shape) > 0 {
				t.Errorf("tensor %d: %+v, want %+v", i, got, tt.info)
			}
			if got.Offset != off {
				t.Errorf("tensor %q offset %d, want %d", got.Name, got.Offset, off)
			}
			off += padTo(int64(len(tt.data)), 64)
		}
		if err := h.Packed(); err != nil {
			t.Error(err)
		}
		if h.DataOffset+h.DataSize() != int64(len(file)) {
			t.Errorf("DataOffset+DataSize = %d, file %d", h.DataOffset+h.DataSize(), len(file))
		}
	}

	t.Run("ReadHeader", func(t *testing.T) {
		h, err := ReadHeader(bytes.NewReader(file), int64(len(file)))
		if err != nil {
			t.Fatal(err)
		}
		check(t, h)
	})
	t.Run("ReadHeaderStream", func(t *testing.T) {
		h, err := ReadHeader(bytes.NewReader(file), -1)
		if err != nil {
			t.Fatal(err)
		}
		check(t, h)
	})
	t.Run("Open", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "x.gguf")
		if err := os.WriteFile(path, file, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		check(t, f.Header)
		for _, tt := range tensors {
			b, err := f.ReadTensor(tt.info.Name)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, tt.data) {
				t.Errorf("%s: data differs", tt.info.Name)
			}
		}
		got, err := f.Float32("output_norm.weight")
		if err != nil || !reflect.DeepEqual(got, []float32{1, 2, 3}) {
			t.Errorf("Float32 = %v, %v", got, err)
		}
		q, err := f.Float32("token_embd.weight")
		if err != nil || len(q) != 192 {
			t.Fatalf("Float32(Q8_0): %d values, %v", len(q), err)
		}
		if _, err := f.Float32("scalar"); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Float32(I32) err = %v", err)
		}
		if _, err := f.ReadTensor("nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), path) {
			t.Errorf("missing tensor err = %v", err)
		}
	})
	t.Run("StreamReader", func(t *testing.T) {
		s, err := NewStreamReader(io.MultiReader(bytes.NewReader(file)), "-")
		if err != nil {
			t.Fatal(err)
		}
		check(t, s.Header())
		for i := 0; ; i++ {
			info, r, err := s.Next()
			if err == io.EOF {
				if i != len(tensors) {
					t.Fatalf("EOF after %d tensors", i)
				}
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if i%2 == 1 { // leave odd tensors unread: Next must skip them
				continue
			}
			b, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if info.Name != tensors[i].info.Name || !bytes.Equal(b, tensors[i].data) {
				t.Errorf("tensor %d %q: data differs", i, info.Name)
			}
		}
	})
	t.Run("StreamTruncated", func(t *testing.T) {
		s, err := NewStreamReader(bytes.NewReader(file[:len(file)-100]), "-")
		if err != nil {
			t.Fatal(err)
		}
		var last error
		for {
			_, r, err := s.Next()
			if err != nil {
				last = err
				break
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				last = err
				break
			}
		}
		if !errors.Is(last, ErrTruncated) {
			t.Errorf("err = %v, want ErrTruncated", last)
		}
	})
}

func TestWriterDeterministic(t *testing.T) {
	a := encodeFile(t, allValues, roundTripTensors())
	b := encodeFile(t, allValues, roundTripTensors())
	if !bytes.Equal(a, b) {
		t.Fatal("two writes differ")
	}
}

func TestWriterValidation(t *testing.T) {
	f32 := func(name string, shape ...int64) TensorInfo {
		return TensorInfo{Name: name, Type: TypeF32, Shape: shape}
	}
	cases := []struct {
		name    string
		kvs     []KV
		tensors []TensorInfo
		err     error
	}{
		{"empty key", []KV{{"", uint32(1)}}, nil, ErrKey},
		{"duplicate key", []KV{{"a", uint32(1)}, {"a", uint32(2)}}, nil, ErrDuplicate},
		{"int value", []KV{{"a", 1}}, nil, ErrValueType},
		{"nil value", []KV{{"a", nil}}, nil, ErrValueType},
		{"empty array", []KV{{"a", []string{}}}, nil, ErrArray},
		{"nested array", []KV{{"a", []any{[]uint32{1}}}}, nil, ErrArray},
		{"alignment u64", []KV{{KeyAlignment, uint64(32)}}, nil, ErrAlignment},
		{"alignment not pow2", []KV{{KeyAlignment, uint32(48)}}, nil, ErrAlignment},
		{"alignment 4", []KV{{KeyAlignment, uint32(4)}}, nil, ErrAlignment},
		{"alignment 2^31", []KV{{KeyAlignment, uint32(1 << 31)}}, nil, ErrAlignment},
		{"empty tensor name", nil, []TensorInfo{f32("", 1)}, ErrTensorName},
		{"long tensor name", nil, []TensorInfo{f32(strings.Repeat("x", 64), 1)}, ErrTensorName},
		{"duplicate tensor", nil, []TensorInfo{f32("a", 1), f32("a", 2)}, ErrDuplicate},
		{"5 dims", nil, []TensorInfo{f32("a", 1, 1, 1, 1, 1)}, ErrDims},
		{"negative dim", nil, []TensorInfo{f32("a", 2, -1)}, ErrDims},
		{"overflow", nil, []TensorInfo{f32("a", 1<<32, 1<<32)}, ErrDims},
		{"byte overflow", nil, []TensorInfo{f32("a", 1<<31, 1<<31)}, ErrDims},
		{"unknown type", nil, []TensorInfo{{Name: "a", Type: 4, Shape: []int64{1}}}, ErrType},
		{"q8 row", nil, []TensorInfo{{Name: "a", Type: TypeQ8_0, Shape: []int64{48, 2}}}, ErrBlockSize},
	}
	for _, tc := range cases {
		var buf bytes.Buffer
		_, err := NewWriter(&buf, tc.kvs, tc.tensors)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.err)
		}
		if buf.Len() != 0 {
			t.Errorf("%s: %d bytes written before the error", tc.name, buf.Len())
		}
	}
	// 63-byte names are fine
	if _, err := NewWriter(io.Discard, nil, []TensorInfo{f32(strings.Repeat("x", 63), 1)}); err != nil {
		t.Error(err)
	}
}

func TestWriterSequence(t *testing.T) {
	infos := []TensorInfo{
		{Name: "a", Type: TypeF32, Shape: []int64{2}},
		{Name: "b", Type: TypeF32, Shape: []int64{1}},
	}
	w, err := NewWriter(io.Discard, nil, infos)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTensor("b", f32Bytes(1)); !errors.Is(err, ErrOrder) {
		t.Errorf("out of order: %v", err)
	}
	if err := w.WriteTensor("c", f32Bytes(1)); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown: %v", err)
	}
	if err := w.WriteTensor("a", f32Bytes(1)); !errors.Is(err, ErrSize) {
		t.Errorf("short: %v", err)
	}
	if err := w.WriteTensorFrom("a", bytes.NewReader(f32Bytes(1, 2, 3))); err != nil {
		t.Errorf("WriteTensorFrom: %v", err)
	}
	if err := w.Close(); !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("Close: %v", err)
	}

	w, _ = NewWriter(io.Discard, nil, infos)
	if err := w.WriteTensorFrom("a", bytes.NewReader(f32Bytes(1))); !errors.Is(err, ErrSize) {
		t.Errorf("short reader: %v", err)
	}
	if err := w.WriteTensor("b", f32Bytes(1)); err == nil {
		t.Error("writer went on after a failure")
	}

	w, _ = NewWriter(io.Discard, nil, infos)
	w.WriteTensor("a", f32Bytes(1, 2))
	w.WriteTensor("b", f32Bytes(1))
	if err := w.WriteTensor("a", f32Bytes(1, 2)); !errors.Is(err, ErrOrder) {
		t.Errorf("rewrite: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTensor("a", f32Bytes(1, 2)); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}

	// the header is a copy: changing the caller's slices after NewWriter changes nothing
	vals := []uint32{1, 2}
	shape := []int64{2}
	var buf bytes.Buffer
	w, _ = NewWriter(&buf, []KV{{"x", vals}}, []TensorInfo{{Name: "a", Type: TypeF32, Shape: shape}})
	vals[0], shape[0] = 9, 9
	if got, _ := w.Header().Metadata.Get("x"); got.([]uint32)[0] != 1 || w.Header().Tensors[0].Shape[0] != 2 {
		t.Error("header aliases caller slices")
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWriterIOError(t *testing.T) {
	infos := []TensorInfo{{Name: "a", Type: TypeF32, Shape: []int64{2}}}
	if _, err := NewWriter(&failWriter{n: 10}, nil, infos); err == nil {
		t.Fatal("header write error lost")
	}
	w, err := NewWriter(&failWriter{n: 66}, nil, infos) // 64-byte header fits
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteTensor("a", f32Bytes(1, 2)); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v", err)
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close after a failed write returned nil")
	}
}

// TestWriterPieces: tensor data written in pieces of any size across
// tensor boundaries gives the same file as whole-tensor writes.
func TestWriterPieces(t *testing.T) {
	tensors := roundTripTensors()
	want := encodeFile(t, allValues, tensors)
	var data []byte
	infos := make([]TensorInfo, len(tensors))
	for i, tt := range tensors {
		infos[i] = tt.info
		data = append(data, tt.data...)
	}
	for _, piece := range []int{1, 3, 64, 1 << 20} {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, allValues, infos)
		if err != nil {
			t.Fatal(err)
		}
		for p := data; len(p) > 0; {
			k := min(piece, len(p))
			if _, err := w.Write(p[:k]); err != nil {
				t.Fatal(err)
			}
			p = p[k:]
		}
		if _, err := w.Write([]byte{0}); !errors.Is(err, ErrSize) {
			t.Errorf("a byte beyond the last tensor: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("pieces of %d: the file differs", piece)
		}
	}
	// Mixing whole-tensor writes into a partly written tensor is refused.
	w, _ := NewWriter(io.Discard, allValues, infos)
	w.Write(data[:1])
	if err := w.WriteTensor(infos[0].Name, tensors[0].data); !errors.Is(err, ErrOrder) {
		t.Errorf("WriteTensor after a partial Write: %v", err)
	}
}
