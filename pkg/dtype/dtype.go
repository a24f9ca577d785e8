// Package dtype names the tensor element types of safetensors files and converts
// their little-endian encodings to and from float32.
//
// Float conversions are exact where the target can hold the value and round to
// nearest, ties to even, otherwise: bf16 and f16 match PyTorch's rounding (f16
// is bit-identical to github.com/x448/float16), and a NaN stays a NaN with its
// quiet bit set. The bulk bf16 and f16 paths run the kernels of
// internal/kernels/half (AVX2, AVX-512 or NEON where the CPU has them).
package dtype

import (
	"fmt"
	"strings"

	"github.com/lorakit/lorakit/pkg/errclass"
)

// DType is a tensor element type, spelled as in a safetensors header.
type DType string

// The element types of the safetensors format.
const (
	F64    DType = "F64"
	F32    DType = "F32"
	F16    DType = "F16"
	BF16   DType = "BF16"
	I64    DType = "I64"
	I32    DType = "I32"
	I16    DType = "I16"
	I8     DType = "I8"
	U8     DType = "U8"
	U16    DType = "U16"
	U32    DType = "U32"
	U64    DType = "U64"
	BOOL   DType = "BOOL"
	F8E4M3 DType = "F8_E4M3" // OCP float8 e4m3fn: no infinities, NaN 0x7f/0xff, max 448
	F8E5M2 DType = "F8_E5M2" // OCP float8 e5m2: IEEE-like, max 57344
)

// Errors returned by this package; test for them with errors.Is.
var (
	// ErrUnknown means a dtype name or value this package does not know.
	ErrUnknown = errclass.New(errclass.Invalid, "dtype: unknown dtype")
	// ErrLength means the source and destination lengths do not agree.
	ErrLength = errclass.New(errclass.Failure, "dtype: length mismatch")
	// ErrUnsupported means a conversion this package does not perform
	// (float32 into an integer or boolean type).
	ErrUnsupported = errclass.New(errclass.Failure, "dtype: unsupported conversion")
)

// All lists every known DType in a fixed order.
var All = []DType{F64, F32, F16, BF16, I64, I32, I16, I8, U8, U16, U32, U64, BOOL, F8E4M3, F8E5M2}

// Parse returns the DType spelled exactly s (the safetensors header spelling,
// e.g. "BF16", "F8_E4M3"); anything else gives ErrUnknown.
func Parse(s string) (DType, error) {
	d := DType(s)
	if d.Size() == 0 {
		return "", fmt.Errorf("%w %q", ErrUnknown, s)
	}
	return d, nil
}

var aliases = map[string]DType{
	"float64": F64, "double": F64,
	"float32": F32, "float": F32,
	"float16": F16, "half": F16,
	"bfloat16": BF16,
	"int64":    I64, "long": I64,
	"int32": I32, "int": I32,
	"int16": I16, "short": I16,
	"int8":          I8,
	"uint8":         U8,
	"uint16":        U16,
	"uint32":        U32,
	"uint64":        U64,
	"bool":          BOOL,
	"float8_e4m3fn": F8E4M3, "f8e4m3": F8E4M3, "f8e4m3fn": F8E4M3,
	"float8_e5m2": F8E5M2, "f8e5m2": F8E5M2,
}

// ParseName is a lenient Parse for command lines and config files: it accepts
// the safetensors spelling in any case ("bf16", "F32"), and PyTorch names with
// or without the "torch." prefix ("bfloat16", "torch.float16", "half",
// "float8_e4m3fn"). Anything else gives ErrUnknown.
func ParseName(s string) (DType, error) {
	l := strings.ToLower(strings.TrimPrefix(s, "torch."))
	if d := DType(strings.ToUpper(l)); d.Size() != 0 {
		return d, nil
	}
	if d, ok := aliases[l]; ok {
		return d, nil
	}
	return "", fmt.Errorf("%w %q", ErrUnknown, s)
}

// TorchName is the PyTorch spelling of a float dtype as config.json writes
// it ("bfloat16", "float32"); "" for other types. ParseName reads it back.
func (d DType) TorchName() string {
	switch d {
	case F64:
		return "float64"
	case F32:
		return "float32"
	case F16:
		return "float16"
	case BF16:
		return "bfloat16"
	}
	return ""
}

// Size returns the number of bytes of one element, or 0 for an unknown DType.
func (d DType) Size() int {
	switch d {
	case F64, I64, U64:
		return 8
	case F32, I32, U32:
		return 4
	case F16, BF16, I16, U16:
		return 2
	case I8, U8, BOOL, F8E4M3, F8E5M2:
		return 1
	}
	return 0
}

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool {
	switch d {
	case F64, F32, F16, BF16, F8E4M3, F8E5M2:
		return true
	}
	return false
}

// String returns the safetensors spelling of d.
func (d DType) String() string { return string(d) }
