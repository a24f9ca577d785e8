package gguf

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// Type is a ggml tensor type (enum ggml_type in ggml.h).
type Type uint32

// ggml tensor types. Ids 4, 5, 31–33 and 36–38 were removed from ggml and are invalid.
const (
	TypeF32     Type = 0
	TypeF16     Type = 1
	TypeQ4_0    Type = 2
	TypeQ4_1    Type = 3
	TypeQ5_0    Type = 6
	TypeQ5_1    Type = 7
	TypeQ8_0    Type = 8
	TypeQ8_1    Type = 9
	TypeQ2_K    Type = 10
	TypeQ3_K    Type = 11
	TypeQ4_K    Type = 12
	TypeQ5_K    Type = 13
	TypeQ6_K    Type = 14
	TypeQ8_K    Type = 15
	TypeIQ2_XXS Type = 16
	TypeIQ2_XS  Type = 17
	TypeIQ3_XXS Type = 18
	TypeIQ1_S   Type = 19
	TypeIQ4_NL  Type = 20
	TypeIQ3_S   Type = 21
	TypeIQ2_S   Type = 22
	TypeIQ4_XS  Type = 23
	TypeI8      Type = 24
	TypeI16     Type = 25
	TypeI32     Type = 26
	TypeI64     Type = 27
	TypeF64     Type = 28
	TypeIQ1_M   Type = 29
	TypeBF16    Type = 30
	TypeTQ1_0   Type = 34
	TypeTQ2_0   Type = 35
	TypeMXFP4   Type = 39
	TypeNVFP4   Type = 40
	TypeQ1_0    Type = 41
	TypeQ2_0    Type = 42

	// TypeCount is GGML_TYPE_COUNT of ggml main (2026-08). Older llama.cpp builds have a
	// smaller count and reject newer ids.
	TypeCount Type = 43
)

type typeTraits struct {
	name      string
	blockSize int64 // elements per block; 0 = layout unknown to this package
	typeSize  int64 // bytes per block
}

const qkK = 256

// traits from gguf-py/gguf/constants.py (GGML_QUANT_SIZES) and ggml.c type_traits.
var typeTable = [TypeCount]typeTraits{
	TypeF32:     {"F32", 1, 4},
	TypeF16:     {"F16", 1, 2},
	TypeQ4_0:    {"Q4_0", 32, 2 + 16},
	TypeQ4_1:    {"Q4_1", 32, 2 + 2 + 16},
	TypeQ5_0:    {"Q5_0", 32, 2 + 4 + 16},
	TypeQ5_1:    {"Q5_1", 32, 2 + 2 + 4 + 16},
	TypeQ8_0:    {"Q8_0", 32, 2 + 32},
	TypeQ8_1:    {"Q8_1", 32, 2 + 2 + 32},
	TypeQ2_K:    {"Q2_K", qkK, 2 + 2 + qkK/16 + qkK/4},
	TypeQ3_K:    {"Q3_K", qkK, 2 + qkK/4 + qkK/8 + 12},
	TypeQ4_K:    {"Q4_K", qkK, 2 + 2 + qkK/2 + 12},
	TypeQ5_K:    {"Q5_K", qkK, 2 + 2 + qkK/2 + qkK/8 + 12},
	TypeQ6_K:    {"Q6_K", qkK, 2 + qkK/2 + qkK/4 + qkK/16},
	TypeQ8_K:    {"Q8_K", qkK, 4 + qkK + qkK/8},
	TypeIQ2_XXS: {"IQ2_XXS", qkK, 2 + qkK/4},
	TypeIQ2_XS:  {"IQ2_XS", qkK, 2 + qkK/4 + qkK/32},
	TypeIQ3_XXS: {"IQ3_XXS", qkK, 2 + qkK/4 + qkK/8},
	TypeIQ1_S:   {"IQ1_S", qkK, 2 + qkK/8 + qkK/16},
	TypeIQ4_NL:  {"IQ4_NL", 32, 2 + 16},
	TypeIQ3_S:   {"IQ3_S", qkK, 2 + qkK/4 + qkK/8 + qkK/32 + 4},
	TypeIQ2_S:   {"IQ2_S", qkK, 2 + qkK/4 + qkK/16},
	TypeIQ4_XS:  {"IQ4_XS", qkK, 2 + 2 + qkK/2 + qkK/64},
	TypeI8:      {"I8", 1, 1},
	TypeI16:     {"I16", 1, 2},
	TypeI32:     {"I32", 1, 4},
	TypeI64:     {"I64", 1, 8},
	TypeF64:     {"F64", 1, 8},
	TypeIQ1_M:   {"IQ1_M", qkK, qkK/8 + qkK/16 + qkK/32},
	TypeBF16:    {"BF16", 1, 2},
	TypeTQ1_0:   {"TQ1_0", qkK, 2 + 4*13},
	TypeTQ2_0:   {"TQ2_0", qkK, 2 + 64},
	TypeMXFP4:   {"MXFP4", 32, 1 + 16},
	TypeNVFP4:   {"NVFP4", 64, 4 + 32},
	TypeQ1_0:    {"Q1_0", 128, 2 + 16},
	TypeQ2_0:    {"Q2_0", 0, 0}, // id known, block layout not tabulated here
}

func (t Type) traits() typeTraits {
	if t < TypeCount {
		return typeTable[t]
	}
	return typeTraits{}
}

// String returns ggml's name of the type ("F32", "Q8_0", …), or "type(N)" for an
// unknown id.
func (t Type) String() string {
	if n := t.traits().name; n != "" {
		return n
	}
	return "type(" + strconv.FormatUint(uint64(t), 10) + ")"
}

// Known reports whether the type's block layout is known, so that tensor sizes can be
// computed. Files with tensors of other types are rejected by the reader.
func (t Type) Known() bool { return t.traits().blockSize > 0 }

// BlockSize returns the number of elements per block (1 for plain types), or 0 if unknown.
func (t Type) BlockSize() int64 { return t.traits().blockSize }

// TypeSize returns the number of bytes per block, or 0 if unknown.
func (t Type) TypeSize() int64 { return t.traits().typeSize }

// IsQuantized reports whether the type is a block-quantized type (block size > 1).
func (t Type) IsQuantized() bool { return t.traits().blockSize > 1 }

// RowBytes returns the byte size of n consecutive elements (a row of ne[0] = n).
// It fails if the type is unknown, n is negative or not a multiple of the block size.
func (t Type) RowBytes(n int64) (int64, error) {
	tr := t.traits()
	if tr.blockSize == 0 {
		return 0, fmt.Errorf("%w: %s", ErrType, t)
	}
	if n < 0 {
		return 0, fmt.Errorf("%w: %d elements", ErrDims, n)
	}
	if n%tr.blockSize != 0 {
		return 0, fmt.Errorf("%w: %d elements, %s blocks of %d", ErrBlockSize, n, t, tr.blockSize)
	}
	hi, lo := bits.Mul64(uint64(n/tr.blockSize), uint64(tr.typeSize))
	if hi != 0 || lo > 1<<63-1 {
		return 0, fmt.Errorf("%w: %d elements of %s overflow", ErrDims, n, t)
	}
	return int64(lo), nil
}

// MarshalText implements encoding.TextMarshaler (the type's name).
func (t Type) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler (see ParseType).
func (t *Type) UnmarshalText(b []byte) error {
	v, err := ParseType(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// ParseType parses a type name such as "q8_0" or "F16" (case-insensitive) or "type(N)".
func ParseType(s string) (Type, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	for i, tr := range typeTable {
		if tr.name != "" && tr.name == u {
			return Type(i), nil
		}
	}
	if n, ok := strings.CutPrefix(u, "TYPE("); ok {
		if n, ok := strings.CutSuffix(n, ")"); ok {
			if v, err := strconv.ParseUint(n, 10, 32); err == nil {
				return Type(v), nil
			}
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrType, s)
}

// FileType is the value of general.file_type (enum llama_ftype in llama.h): a label
// for the predominant tensor type. "MOSTLY" means except 1-D tensors.
type FileType uint32

// llama.cpp file types.
const (
	FileTypeAllF32        FileType = 0
	FileTypeMostlyF16     FileType = 1
	FileTypeMostlyQ4_0    FileType = 2
	FileTypeMostlyQ4_1    FileType = 3
	FileTypeMostlyQ8_0    FileType = 7
	FileTypeMostlyQ5_0    FileType = 8
	FileTypeMostlyQ5_1    FileType = 9
	FileTypeMostlyQ2_K    FileType = 10
	FileTypeMostlyQ3_K_S  FileType = 11
	FileTypeMostlyQ3_K_M  FileType = 12
	FileTypeMostlyQ3_K_L  FileType = 13
	FileTypeMostlyQ4_K_S  FileType = 14
	FileTypeMostlyQ4_K_M  FileType = 15
	FileTypeMostlyQ5_K_S  FileType = 16
	FileTypeMostlyQ5_K_M  FileType = 17
	FileTypeMostlyQ6_K    FileType = 18
	FileTypeMostlyIQ2_XXS FileType = 19
	FileTypeMostlyIQ2_XS  FileType = 20
	FileTypeMostlyQ2_K_S  FileType = 21
	FileTypeMostlyIQ3_XS  FileType = 22
	FileTypeMostlyIQ3_XXS FileType = 23
	FileTypeMostlyIQ1_S   FileType = 24
	FileTypeMostlyIQ4_NL  FileType = 25
	FileTypeMostlyIQ3_S   FileType = 26
	FileTypeMostlyIQ3_M   FileType = 27
	FileTypeMostlyIQ2_S   FileType = 28
	FileTypeMostlyIQ2_M   FileType = 29
	FileTypeMostlyIQ4_XS  FileType = 30
	FileTypeMostlyIQ1_M   FileType = 31
	FileTypeMostlyBF16    FileType = 32
	FileTypeMostlyTQ1_0   FileType = 36
	FileTypeMostlyTQ2_0   FileType = 37
	FileTypeMostlyMXFP4   FileType = 38 // LLAMA_FTYPE_MOSTLY_MXFP4_MOE
	FileTypeMostlyNVFP4   FileType = 39
	// FileTypeGuessed is a run-time flag of llama.cpp; never written.
	FileTypeGuessed FileType = 1024
)

var fileTypeNames = map[FileType]string{
	FileTypeAllF32: "ALL_F32", FileTypeMostlyF16: "MOSTLY_F16", FileTypeMostlyQ4_0: "MOSTLY_Q4_0",
	FileTypeMostlyQ4_1: "MOSTLY_Q4_1", FileTypeMostlyQ8_0: "MOSTLY_Q8_0", FileTypeMostlyQ5_0: "MOSTLY_Q5_0",
	FileTypeMostlyQ5_1: "MOSTLY_Q5_1", FileTypeMostlyQ2_K: "MOSTLY_Q2_K", FileTypeMostlyQ3_K_S: "MOSTLY_Q3_K_S",
	FileTypeMostlyQ3_K_M: "MOSTLY_Q3_K_M", FileTypeMostlyQ3_K_L: "MOSTLY_Q3_K_L",
	FileTypeMostlyQ4_K_S: "MOSTLY_Q4_K_S", FileTypeMostlyQ4_K_M: "MOSTLY_Q4_K_M",
	FileTypeMostlyQ5_K_S: "MOSTLY_Q5_K_S", FileTypeMostlyQ5_K_M: "MOSTLY_Q5_K_M",
	FileTypeMostlyQ6_K: "MOSTLY_Q6_K", FileTypeMostlyIQ2_XXS: "MOSTLY_IQ2_XXS",
	FileTypeMostlyIQ2_XS: "MOSTLY_IQ2_XS", FileTypeMostlyQ2_K_S: "MOSTLY_Q2_K_S",
	FileTypeMostlyIQ3_XS: "MOSTLY_IQ3_XS", FileTypeMostlyIQ3_XXS: "MOSTLY_IQ3_XXS",
	FileTypeMostlyIQ1_S: "MOSTLY_IQ1_S", FileTypeMostlyIQ4_NL: "MOSTLY_IQ4_NL",
	FileTypeMostlyIQ3_S: "MOSTLY_IQ3_S", FileTypeMostlyIQ3_M: "MOSTLY_IQ3_M",
	FileTypeMostlyIQ2_S: "MOSTLY_IQ2_S", FileTypeMostlyIQ2_M: "MOSTLY_IQ2_M",
	FileTypeMostlyIQ4_XS: "MOSTLY_IQ4_XS", FileTypeMostlyIQ1_M: "MOSTLY_IQ1_M",
	FileTypeMostlyBF16: "MOSTLY_BF16", FileTypeMostlyTQ1_0: "MOSTLY_TQ1_0",
	FileTypeMostlyTQ2_0: "MOSTLY_TQ2_0", FileTypeMostlyMXFP4: "MOSTLY_MXFP4_MOE",
	FileTypeMostlyNVFP4: "MOSTLY_NVFP4", FileTypeGuessed: "GUESSED",
}

// String returns llama.cpp's name without the LLAMA_FTYPE_ prefix ("MOSTLY_Q8_0"), or
// "file_type(N)" for an unknown value.
func (f FileType) String() string {
	if n, ok := fileTypeNames[f]; ok {
		return n
	}
	return "file_type(" + strconv.FormatUint(uint64(f), 10) + ")"
}

// MarshalText implements encoding.TextMarshaler (the file type's name).
func (f FileType) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// FileTypeOf returns the general.file_type that labels a file whose weights (2-D
// tensors) have type t: F32 → ALL_F32, F16 → MOSTLY_F16, BF16 → MOSTLY_BF16,
// Q8_0 → MOSTLY_Q8_0, Q4_0 → MOSTLY_Q4_0, and so on for the types that have a
// one-to-one file type. Mixes such as Q4_K_M are chosen by the caller.
func FileTypeOf(t Type) (FileType, bool) {
	switch t {
	case TypeF32:
		return FileTypeAllF32, true
	case TypeF16:
		return FileTypeMostlyF16, true
	case TypeBF16:
		return FileTypeMostlyBF16, true
	case TypeQ4_0:
		return FileTypeMostlyQ4_0, true
	case TypeQ4_1:
		return FileTypeMostlyQ4_1, true
	case TypeQ5_0:
		return FileTypeMostlyQ5_0, true
	case TypeQ5_1:
		return FileTypeMostlyQ5_1, true
	case TypeQ8_0:
		return FileTypeMostlyQ8_0, true
	case TypeQ2_K:
		return FileTypeMostlyQ2_K, true
	case TypeQ6_K:
		return FileTypeMostlyQ6_K, true
	case TypeIQ4_NL:
		return FileTypeMostlyIQ4_NL, true
	case TypeIQ4_XS:
		return FileTypeMostlyIQ4_XS, true
	case TypeTQ1_0:
		return FileTypeMostlyTQ1_0, true
	case TypeTQ2_0:
		return FileTypeMostlyTQ2_0, true
	}
	return 0, false
}

// ValueType is the type of a metadata value (enum gguf_type).
type ValueType uint32

// Metadata value types.
const (
	ValueUint8     ValueType = 0
	ValueInt8      ValueType = 1
	ValueUint16    ValueType = 2
	ValueInt16     ValueType = 3
	ValueUint32    ValueType = 4
	ValueInt32     ValueType = 5
	ValueFloat32   ValueType = 6
	ValueBool      ValueType = 7
	ValueString    ValueType = 8
	ValueArray     ValueType = 9
	ValueUint64    ValueType = 10
	ValueInt64     ValueType = 11
	ValueFloat64   ValueType = 12
	valueTypeCount ValueType = 13
)

var valueTypeNames = [valueTypeCount]string{"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"}

// String returns ggml's short name of the type ("u32", "f32", "str", "arr", …).
func (v ValueType) String() string {
	if v < valueTypeCount {
		return valueTypeNames[v]
	}
	return "value_type(" + strconv.FormatUint(uint64(v), 10) + ")"
}

// MarshalText implements encoding.TextMarshaler (the type's short name).
func (v ValueType) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// size returns the encoded size of a scalar of this type, 0 for string/array/unknown.
func (v ValueType) size() int64 {
	switch v {
	case ValueUint8, ValueInt8, ValueBool:
		return 1
	case ValueUint16, ValueInt16:
		return 2
	case ValueUint32, ValueInt32, ValueFloat32:
		return 4
	case ValueUint64, ValueInt64, ValueFloat64:
		return 8
	}
	return 0
}
