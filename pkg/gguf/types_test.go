package gguf

import (
	"encoding/json"
	"errors"
	"testing"
)

// TestTypeTable checks ids, block sizes and bytes per block against spec §2.1.
func TestTypeTable(t *testing.T) {
	cases := []struct {
		typ         Type
		id          uint32
		name        string
		block, size int64
	}{
		{TypeF32, 0, "F32", 1, 4},
		{TypeF16, 1, "F16", 1, 2},
		{TypeQ4_0, 2, "Q4_0", 32, 18},
		{TypeQ4_1, 3, "Q4_1", 32, 20},
		{TypeQ5_0, 6, "Q5_0", 32, 22},
		{TypeQ5_1, 7, "Q5_1", 32, 24},
		{TypeQ8_0, 8, "Q8_0", 32, 34},
		{TypeQ8_1, 9, "Q8_1", 32, 36},
		{TypeQ2_K, 10, "Q2_K", 256, 84},
		{TypeQ3_K, 11, "Q3_K", 256, 110},
		{TypeQ4_K, 12, "Q4_K", 256, 144},
		{TypeQ5_K, 13, "Q5_K", 256, 176},
		{TypeQ6_K, 14, "Q6_K", 256, 210},
		{TypeQ8_K, 15, "Q8_K", 256, 292},
		{TypeI8, 24, "I8", 1, 1},
		{TypeI16, 25, "I16", 1, 2},
		{TypeI32, 26, "I32", 1, 4},
		{TypeI64, 27, "I64", 1, 8},
		{TypeF64, 28, "F64", 1, 8},
		{TypeBF16, 30, "BF16", 1, 2},
		{TypeTQ1_0, 34, "TQ1_0", 256, 54},
		{TypeTQ2_0, 35, "TQ2_0", 256, 66},
		{TypeMXFP4, 39, "MXFP4", 32, 17},
	}
	for _, c := range cases {
		if uint32(c.typ) != c.id || c.typ.String() != c.name || c.typ.BlockSize() != c.block || c.typ.TypeSize() != c.size {
			t.Errorf("%s: id %d block %d size %d, want %d %s %d %d", c.typ, uint32(c.typ), c.typ.BlockSize(), c.typ.TypeSize(), c.id, c.name, c.block, c.size)
		}
		if got, err := ParseType(c.name); err != nil || got != c.typ {
			t.Errorf("ParseType(%q) = %v, %v", c.name, got, err)
		}
		if c.typ.IsQuantized() != (c.block > 1) {
			t.Errorf("%s: IsQuantized", c.typ)
		}
	}
	for _, removed := range []Type{4, 5, 31, 32, 33, 36, 37, 38, TypeQ2_0, TypeCount, 1000} {
		if removed.Known() {
			t.Errorf("type %d should be unknown", uint32(removed))
		}
		if _, err := removed.RowBytes(32); !errors.Is(err, ErrType) {
			t.Errorf("RowBytes of %s: %v", removed, err)
		}
	}
	if s := Type(4).String(); s != "type(4)" {
		t.Errorf("String of removed id: %q", s)
	}
	if got, err := ParseType("q8_0"); err != nil || got != TypeQ8_0 {
		t.Error("ParseType is case-insensitive")
	}
	if got, err := ParseType("type(77)"); err != nil || got != 77 {
		t.Error("ParseType(type(77))")
	}
	if _, err := ParseType("q9_0"); !errors.Is(err, ErrType) {
		t.Error("ParseType(q9_0)")
	}
	if n, err := TypeQ8_0.RowBytes(4096); err != nil || n != 4096/32*34 {
		t.Errorf("RowBytes = %d, %v", n, err)
	}
	if _, err := TypeQ8_0.RowBytes(4095); !errors.Is(err, ErrBlockSize) {
		t.Errorf("RowBytes(4095) = %v", err)
	}
	b, _ := json.Marshal(struct{ T Type }{TypeBF16})
	if string(b) != `{"T":"BF16"}` {
		t.Errorf("json %s", b)
	}
	var back struct{ T Type }
	if err := json.Unmarshal(b, &back); err != nil || back.T != TypeBF16 {
		t.Errorf("json round trip: %v %v", back.T, err)
	}
}

// TestFileType checks spec §2.6.
func TestFileType(t *testing.T) {
	cases := []struct {
		typ  Type
		ft   FileType
		val  uint32
		name string
	}{
		{TypeF32, FileTypeAllF32, 0, "ALL_F32"},
		{TypeF16, FileTypeMostlyF16, 1, "MOSTLY_F16"},
		{TypeQ4_0, FileTypeMostlyQ4_0, 2, "MOSTLY_Q4_0"},
		{TypeQ4_1, FileTypeMostlyQ4_1, 3, "MOSTLY_Q4_1"},
		{TypeQ8_0, FileTypeMostlyQ8_0, 7, "MOSTLY_Q8_0"},
		{TypeQ5_0, FileTypeMostlyQ5_0, 8, "MOSTLY_Q5_0"},
		{TypeQ5_1, FileTypeMostlyQ5_1, 9, "MOSTLY_Q5_1"},
		{TypeQ2_K, FileTypeMostlyQ2_K, 10, "MOSTLY_Q2_K"},
		{TypeQ6_K, FileTypeMostlyQ6_K, 18, "MOSTLY_Q6_K"},
		{TypeBF16, FileTypeMostlyBF16, 32, "MOSTLY_BF16"},
		{TypeTQ1_0, FileTypeMostlyTQ1_0, 36, "MOSTLY_TQ1_0"},
		{TypeTQ2_0, FileTypeMostlyTQ2_0, 37, "MOSTLY_TQ2_0"},
	}
	for _, c := range cases {
		ft, ok := FileTypeOf(c.typ)
		if !ok || ft != c.ft || uint32(ft) != c.val || ft.String() != c.name {
			t.Errorf("FileTypeOf(%s) = %d %s %v, want %d %s", c.typ, uint32(ft), ft, ok, c.val, c.name)
		}
	}
	named := map[FileType]string{11: "MOSTLY_Q3_K_S", 12: "MOSTLY_Q3_K_M", 13: "MOSTLY_Q3_K_L", 14: "MOSTLY_Q4_K_S",
		15: "MOSTLY_Q4_K_M", 16: "MOSTLY_Q5_K_S", 17: "MOSTLY_Q5_K_M", 1024: "GUESSED", 5: "file_type(5)"}
	for ft, name := range named {
		if ft.String() != name {
			t.Errorf("%d: %s, want %s", uint32(ft), ft, name)
		}
	}
	if _, ok := FileTypeOf(TypeQ4_K); ok {
		t.Error("Q4_K has no single file type (S or M)")
	}
	if _, ok := FileTypeOf(TypeI32); ok {
		t.Error("I32 has no file type")
	}
}

func TestValueTypeNames(t *testing.T) {
	want := []string{"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"}
	for i, w := range want {
		if got := ValueType(i).String(); got != w {
			t.Errorf("%d: %s, want %s", i, got, w)
		}
	}
	if ValueType(13).String() != "value_type(13)" {
		t.Error("unknown value type name")
	}
	if _, _, ok := TypeOf(struct{}{}); ok {
		t.Error("TypeOf(struct)")
	}
}
