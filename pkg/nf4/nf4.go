// Package nf4 implements bitsandbytes' 4-bit block quantization (NF4 and FP4)
// with optional double quantization of the block scales, and the safetensors
// serialization that transformers + bitsandbytes read and write.
//
// The arithmetic follows bitsandbytes' pure-PyTorch reference path
// (backends/default/ops.py, bitsandbytes 0.50) bit for bit; see
// shared/specs/nf4.md. The one value torch does not compute reproducibly is
// the double-quantization offset (the float32 mean of the block absmax
// values): [MeanOffset] fixes its summation order to torch's serial CPU
// order, deterministic and independent of the thread count.
//
// The package knows 4-bit math and the checkpoint layout only: it does not
// read files. Callers hand it float32 data and get back raw tensor bytes, or
// hand it the raw tensors of one quantized weight and get back a [QuantState].
package nf4

import (
	"fmt"

	"github.com/lorakit/lorakit/pkg/errclass"
)

// Errors returned by this package; test with errors.Is.
var (
	// ErrBlocksize reports a block size that is not a power of two in [32, 4096].
	ErrBlocksize = errclass.New(errclass.Invalid, "nf4: unsupported block size")
	// ErrLength reports buffers whose lengths do not match the element count.
	ErrLength = errclass.New(errclass.Failure, "nf4: length mismatch")
	// ErrType reports an unknown 4-bit quantization type.
	ErrType = errclass.New(errclass.Invalid, "nf4: unknown quantization type")
	// ErrDType reports an unsupported original (unquantized) dtype.
	ErrDType = errclass.New(errclass.Invalid, "nf4: unsupported dtype")
	// ErrState reports a malformed or inconsistent quantization state
	// (packed JSON, tensor dtypes, shapes or element counts).
	ErrState = errclass.New(errclass.Invalid, "nf4: invalid quant state")
	// ErrMissing reports that a tensor needed by a quantized weight is absent.
	ErrMissing = errclass.New(errclass.Invalid, "nf4: missing quant state tensor")
	// ErrConfig reports a malformed quantization_config block.
	ErrConfig = errclass.New(errclass.Invalid, "nf4: invalid quantization_config")
)

// Type is a 4-bit code type.
type Type uint8

// The 4-bit code types. NF4 is the default and the primary format.
const (
	NF4 Type = iota // NormalFloat4 (QLoRA)
	FP4             // bitsandbytes' 4-bit float (1 sign, 2 exponent, 1 mantissa bits)
)

// String returns the bitsandbytes spelling, "nf4" or "fp4".
func (t Type) String() string {
	switch t {
	case NF4:
		return "nf4"
	case FP4:
		return "fp4"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// ParseType parses "nf4" or "fp4".
func ParseType(s string) (Type, error) {
	switch s {
	case "nf4":
		return NF4, nil
	case "fp4":
		return FP4, nil
	}
	return 0, fmt.Errorf("%w: %q", ErrType, s)
}

// Code returns the 16-entry float32 code table of t, indexed by nibble.
func (t Type) Code() [16]float32 {
	switch t {
	case FP4:
		return fp4Code
	default:
		return nf4Code
	}
}

func (t Type) valid() bool { return t == NF4 || t == FP4 }

// Block sizes.
const (
	DefaultBlocksize = 64  // transformers' and lorakit's default 4-bit block size
	NestedBlocksize  = 256 // block size of the 8-bit double quantization
	MinBlocksize     = 32
	MaxBlocksize     = 4096
)

// CheckBlocksize reports whether bs is a power of two in [MinBlocksize, MaxBlocksize].
func CheckBlocksize(bs int) error {
	if bs < MinBlocksize || bs > MaxBlocksize || bs&(bs-1) != 0 {
		return fmt.Errorf("%w: %d (want a power of two in [%d, %d])", ErrBlocksize, bs, MinBlocksize, MaxBlocksize)
	}
	return nil
}

// NumBlocks returns ceil(n / blocksize).
func NumBlocks(n int, blocksize int) int {
	return (n + blocksize - 1) / blocksize
}

// PackedLen returns the number of packed bytes for n 4-bit values, (n+1)/2.
func PackedLen(n int) int { return (n + 1) / 2 }
