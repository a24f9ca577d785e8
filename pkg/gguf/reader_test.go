package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// raw assembles GGUF bytes by hand, valid or not.
type raw struct{ bytes.Buffer }

func (r *raw) u32(v uint32) *raw { binary.Write(&r.Buffer, binary.LittleEndian, v); return r }
func (r *raw) u64(v uint64) *raw { binary.Write(&r.Buffer, binary.LittleEndian, v); return r }
func (r *raw) str(s string) *raw { r.u64(uint64(len(s))); r.WriteString(s); return r }
func (r *raw) zeros(n int) *raw  { r.Write(make([]byte, n)); return r }

// kv appends a key and a u32 value.
func (r *raw) kvU32(key string, v uint32) *raw { return r.str(key).u32(uint32(ValueUint32)).u32(v) }

func (r *raw) tinfo(name string, typ uint32, off uint64, ne ...uint64) *raw {
	r.str(name).u32(uint32(len(ne)))
	for _, d := range ne {
		r.u64(d)
	}
	return r.u32(typ).u64(off)
}

func hdr(version uint32, nTensors, nKV uint64) *raw {
	r := &raw{}
	r.WriteString("GGUF")
	return r.u32(version).u64(nTensors).u64(nKV)
}

// padData pads to the data section (alignment 32) and appends n zero bytes of data.
func (r *raw) padData(n int) *raw {
	r.zeros(int(padTo(int64(r.Len()), 32)) - r.Len())
	return r.zeros(n)
}

func nested(depth int) *raw {
	r := hdr(3, 0, 1).str("deep").u32(uint32(ValueArray))
	for i := 1; i < depth; i++ {
		r.u32(uint32(ValueArray)).u64(1)
	}
	return r.u32(uint32(ValueUint8)).u64(1).zeros(1)
}

func TestReadHeaderHostile(t *testing.T) {
	const f32, q8 = uint32(TypeF32), uint32(TypeQ8_0)
	badMagic := hdr(3, 0, 0)
	badMagic.Bytes()[3] = 'G'
	cases := []struct {
		name string
		file *raw
		err  error // nil: must parse
		msg  string
	}{
		{"magic", badMagic, ErrMagic, ""},
		{"v1", hdr(1, 0, 0), ErrVersion, "GGUFv1"},
		{"v4", hdr(4, 0, 0), ErrVersion, ""},
		{"byte-swapped", hdr(3<<24, 0, 0), ErrVersion, "big-endian"},
		{"v2 ok", hdr(2, 0, 0), nil, ""},
		{"v3 empty ok", hdr(3, 0, 0), nil, ""},
		{"negative tensor count", hdr(3, 1<<63, 0), ErrCount, "tensor count"},
		{"huge tensor count", hdr(3, MaxTensorCount+1, 0), ErrCount, ""},
		{"tensor count past EOF", hdr(3, 1000, 0), ErrTruncated, ""},
		{"huge kv count", hdr(3, 0, MaxKVCount+1), ErrCount, ""},
		{"kv count past EOF", hdr(3, 0, 3).kvU32("a", 1), ErrTruncated, ""},
		{"empty key", hdr(3, 0, 1).kvU32("", 1), ErrKey, ""},
		{"duplicate key", hdr(3, 0, 2).kvU32("a", 1).kvU32("a", 2), ErrDuplicate, `"a"`},
		{"huge key", hdr(3, 0, 1).u64(1 << 31).zeros(20), ErrLength, ""},
		{"key past EOF", hdr(3, 0, 1).u64(100).zeros(20), ErrTruncated, ""},
		{"value type 13", hdr(3, 0, 1).str("k").u32(13).u32(0), ErrValueType, `"k"`},
		{"array of type 13", hdr(3, 0, 1).str("k").u32(uint32(ValueArray)).u32(13).u64(0), ErrValueType, ""},
		{"huge array", hdr(3, 0, 1).str("k").u32(uint32(ValueArray)).u32(uint32(ValueUint8)).u64(1 << 31), ErrLength, ""},
		{"array past EOF", hdr(3, 0, 1).str("k").u32(uint32(ValueArray)).u32(uint32(ValueUint64)).u64(10).zeros(72), ErrTruncated, ""},
		{"string array past EOF", hdr(3, 0, 1).str("k").u32(uint32(ValueArray)).u32(uint32(ValueString)).u64(10).str("a"), ErrTruncated, ""},
		{"huge string value", hdr(3, 0, 1).str("k").u32(uint32(ValueString)).u64(1 << 40), ErrLength, ""},
		{"nested 2 ok", nested(2), nil, ""},
		{"nested too deep", nested(MaxArrayDepth + 1), ErrArray, ""},
		{"alignment u64", hdr(3, 0, 1).str(KeyAlignment).u32(uint32(ValueUint64)).u64(32), ErrAlignment, "u64"},
		{"alignment 0", hdr(3, 0, 1).kvU32(KeyAlignment, 0), ErrAlignment, ""},
		{"alignment 48", hdr(3, 0, 1).kvU32(KeyAlignment, 48), ErrAlignment, ""},
		{"alignment 8 ok", hdr(3, 0, 1).kvU32(KeyAlignment, 8), nil, ""},
		{"long name", hdr(3, 1, 0).tinfo(strings.Repeat("n", 64), f32, 0, 1).padData(32), ErrTensorName, ""},
		{"63-byte name ok", hdr(3, 1, 0).tinfo(strings.Repeat("n", 63), f32, 0, 1).padData(32), nil, ""},
		{"duplicate name", hdr(3, 2, 0).tinfo("w", f32, 0, 1).tinfo("w", f32, 32, 1).padData(64), ErrDuplicate, `"w"`},
		{"5 dims", hdr(3, 1, 0).tinfo("w", f32, 0, 1, 1, 1, 1, 1).padData(32), ErrDims, `"w"`},
		{"negative ne", hdr(3, 1, 0).tinfo("w", f32, 0, 1<<63).padData(32), ErrDims, ""},
		{"ne overflow", hdr(3, 1, 0).tinfo("w", f32, 0, 1<<32, 1<<32).padData(32), ErrDims, ""},
		{"bytes overflow", hdr(3, 1, 0).tinfo("w", f32, 0, 1<<31, 1<<31).padData(32), ErrDims, ""},
		{"removed type 4", hdr(3, 1, 0).tinfo("w", 4, 0, 32).padData(32), ErrType, ""},
		{"type 99", hdr(3, 1, 0).tinfo("w", 99, 0, 32).padData(32), ErrType, ""},
		{"layout unknown", hdr(3, 1, 0).tinfo("w", uint32(TypeQ2_0), 0, 32).padData(32), ErrType, ""},
		{"q8 row 31", hdr(3, 1, 0).tinfo("w", q8, 0, 31).padData(64), ErrBlockSize, ""},
		{"misaligned offset", hdr(3, 1, 0).tinfo("w", f32, 8, 1).padData(64), ErrOffset, ""},
		{"offset 2^63", hdr(3, 1, 0).tinfo("w", f32, 1<<63, 1).padData(64), ErrOffset, ""},
		{"offset near 2^63", hdr(3, 1, 0).tinfo("w", f32, 1<<63-32, 16).padData(64), ErrOffset, ""},
		{"overlap", hdr(3, 2, 0).tinfo("a", f32, 0, 16).tinfo("b", f32, 32, 16).padData(128), ErrOffset, `"b"`},
		{"data past EOF", hdr(3, 1, 0).tinfo("w", f32, 0, 16).padData(32), ErrTruncated, `"w"`},
		{"data section past EOF", hdr(3, 1, 0).tinfo("w", f32, 0, 0), ErrTruncated, ""},
		{"unpadded last tensor ok", hdr(3, 2, 0).tinfo("a", f32, 0, 1).tinfo("b", f32, 32, 1).padData(36), nil, ""},
		{"empty tensor ok", hdr(3, 2, 0).tinfo("a", f32, 0, 0).tinfo("b", f32, 0, 1).padData(4), nil, ""},
		{"unordered ok", hdr(3, 2, 0).tinfo("a", f32, 32, 1).tinfo("b", f32, 0, 1).padData(64), nil, ""},
		{"truncated info", hdr(3, 1, 0).str("w").u32(2).u64(4), ErrTruncated, `"w"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.file.Bytes()
			h, err := ReadHeader(bytes.NewReader(b), int64(len(b)))
			if tc.err == nil {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if h.DataOffset > int64(len(b)) && len(h.Tensors) > 0 {
					t.Fatalf("DataOffset %d > size %d", h.DataOffset, len(b))
				}
				return
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}

func TestReadHeaderNested(t *testing.T) {
	b := nested(3).Bytes()
	h, err := ReadHeader(bytes.NewReader(b), -1)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := h.Metadata.Get("deep")
	want := []any{[]any{[]uint8{0}}}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("got %#v", v)
	}
	if typ, elem, _ := h.Metadata.Type("deep"); typ != ValueArray || elem != ValueArray {
		t.Errorf("type %s of %s", typ, elem)
	}
}

func TestPacked(t *testing.T) {
	b := hdr(3, 2, 0).tinfo("a", uint32(TypeF32), 32, 1).tinfo("b", uint32(TypeF32), 0, 1).padData(64).Bytes()
	h, err := ReadHeader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Packed(); !errors.Is(err, ErrNotPacked) || !strings.Contains(err.Error(), `"a" has offset 32, expected 0`) {
		t.Errorf("Packed = %v", err)
	}
}

// TestReadHeaderPrefixes cuts a valid file at every length: each cut before the end of
// the last tensor's data must fail cleanly, with a known size and as a stream.
func TestReadHeaderPrefixes(t *testing.T) {
	file := encodeFile(t, allValues, roundTripTensors())
	full, err := ReadHeader(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	last := full.Tensors[len(full.Tensors)-1]
	need := full.DataOffset + last.Offset + last.NumBytes()
	headerEnd := full.DataOffset - 64 // at least the records end within the last 64 bytes
	for n := 0; n < len(file); n++ {
		p := file[:n]
		_, err := ReadHeader(bytes.NewReader(p), int64(n))
		if int64(n) < need {
			if !errors.Is(err, ErrTruncated) {
				t.Fatalf("prefix %d (size known): err = %v", n, err)
			}
		} else if err != nil {
			t.Fatalf("prefix %d: unpadded end must be accepted: %v", n, err)
		}
		if int64(n) < headerEnd {
			if _, err := ReadHeader(bytes.NewReader(p), -1); !errors.Is(err, ErrTruncated) {
				t.Fatalf("prefix %d (stream): err = %v", n, err)
			}
		}
	}
}

func TestMetadataAccessors(t *testing.T) {
	m := Metadata(allValues)
	if s, ok := m.String("general.architecture"); !ok || s != "llama" {
		t.Error("String")
	}
	if _, ok := m.String("v.u32"); ok {
		t.Error("String of u32")
	}
	if v, ok := m.Uint32("v.u32"); !ok || v != 4000000000 {
		t.Error("Uint32")
	}
	if _, ok := m.Uint32("v.u64"); ok {
		t.Error("Uint32 accepted a u64 (llama.cpp does not)")
	}
	if v, ok := m.Uint("v.u64"); !ok || v != 1<<63 {
		t.Error("Uint u64")
	}
	if _, ok := m.Uint("v.i8"); ok {
		t.Error("Uint of a negative")
	}
	if v, ok := m.Uint("v.u8"); !ok || v != 200 {
		t.Error("Uint u8")
	}
	if v, ok := m.Float32("v.f32"); !ok || v != 1e-5 {
		t.Error("Float32")
	}
	if _, ok := m.Float32("v.f64"); ok {
		t.Error("Float32 of f64")
	}
	if v, ok := m.Float("v.f64"); !ok || v != 3.141592653589793 {
		t.Error("Float")
	}
	if v, ok := m.Bool("v.bool"); !ok || !v {
		t.Error("Bool")
	}
	if v, ok := m.Strings("a.str"); !ok || len(v) != 3 {
		t.Error("Strings")
	}
	if n, ok := m.Len("a.u32"); !ok || n != 3 {
		t.Error("Len")
	}
	if _, ok := m.Len("v.u32"); ok {
		t.Error("Len of scalar")
	}
	if m.Has("nope") {
		t.Error("Has")
	}
	if typ, elem, ok := m.Type("a.i32"); !ok || typ != ValueArray || elem != ValueInt32 {
		t.Error("Type")
	}
}
