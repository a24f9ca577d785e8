// Package gguf reads and writes GGUF v3 files, the container format of llama.cpp and ggml,
// and implements the ggml tensor encodings lorakit needs (F32, F16, BF16, Q8_0, Q4_0).
//
// The package knows bytes, not models: it parses and validates headers (every count and
// length is bounded before anything is allocated, offsets are checked for overflow,
// alignment and overlap), streams files out with all offsets computed before the first
// byte, and converts float32 data to and from ggml block types with llama.cpp's reference
// rounding. Name maps, tokenizers and LoRA conventions live elsewhere.
//
// The layout follows ggml's docs/gguf.md and src/gguf.cpp: a header (magic "GGUF",
// version, tensor and key/value counts), the key/value pairs, the tensor-info records,
// padding to the alignment, then the tensor data, each tensor padded to the alignment.
package gguf

import "github.com/lorakit/lorakit/pkg/errclass"

// Format constants.
const (
	// Magic is the four bytes every GGUF file starts with.
	Magic = "GGUF"
	// Version is the GGUF version this package writes; versions 2 and 3 are read.
	Version = 3
	// DefaultAlignment is the data alignment used when general.alignment is absent.
	DefaultAlignment = 32
	// KeyAlignment is the metadata key that sets the alignment (a UINT32).
	KeyAlignment = "general.alignment"
	// QuantizationVersion is GGML_QNT_VERSION, the value of general.quantization_version.
	QuantizationVersion = 2
)

// Limits applied to every file read and written. They are at least as strict as ggml's
// where ggml has a limit, and bound the memory a hostile header can make a reader allocate.
const (
	// MaxTensorCount bounds the number of tensor-info records.
	MaxTensorCount = 1 << 20
	// MaxKVCount bounds the number of key/value pairs.
	MaxKVCount = 1 << 20
	// MaxStringLength bounds the byte length of a key, a string value or a tensor name
	// (ggml's cap).
	MaxStringLength = 1 << 30
	// MaxArrayLength bounds the number of elements of an array value (ggml's cap).
	MaxArrayLength = 1 << 30
	// MaxArrayDepth bounds the nesting of arrays of arrays (ggml rejects any nesting;
	// the format allows it and this package reads up to this depth).
	MaxArrayDepth = 8
	// MaxNameLength is the longest tensor name in bytes (GGML_MAX_NAME − 1).
	MaxNameLength = 63
	// MaxDims is the largest number of dimensions of a tensor (GGML_MAX_DIMS).
	MaxDims = 4
	// MaxAlignment is the largest general.alignment the Writer accepts (it pads every
	// tensor to it). The reader accepts any power of two, as ggml does.
	MaxAlignment = 1 << 20
)

// Sentinel errors. Errors returned by this package wrap one of these (check with
// errors.Is) and name the key or tensor at fault; File and StreamReader errors also
// name the file.
var (
	ErrMagic       = errclass.New(errclass.Invalid, "gguf: invalid magic")
	ErrVersion     = errclass.New(errclass.Invalid, "gguf: unsupported version")
	ErrTruncated   = errclass.New(errclass.Invalid, "gguf: unexpected end of data")
	ErrCount       = errclass.New(errclass.Invalid, "gguf: count out of range")
	ErrLength      = errclass.New(errclass.Invalid, "gguf: length out of range")
	ErrKey         = errclass.New(errclass.Invalid, "gguf: invalid key")
	ErrDuplicate   = errclass.New(errclass.Invalid, "gguf: duplicate key or tensor name")
	ErrValueType   = errclass.New(errclass.Invalid, "gguf: invalid value type")
	ErrArray       = errclass.New(errclass.Invalid, "gguf: invalid array")
	ErrAlignment   = errclass.New(errclass.Invalid, "gguf: invalid alignment")
	ErrTensorName  = errclass.New(errclass.Invalid, "gguf: invalid tensor name")
	ErrDims        = errclass.New(errclass.Invalid, "gguf: invalid tensor dimensions")
	ErrType        = errclass.New(errclass.Invalid, "gguf: unknown or unsupported ggml type")
	ErrBlockSize   = errclass.New(errclass.Invalid, "gguf: row length not a multiple of the block size")
	ErrOffset      = errclass.New(errclass.Invalid, "gguf: invalid tensor offset")
	ErrNotPacked   = errclass.New(errclass.Invalid, "gguf: tensor data not tightly packed")
	ErrNotFound    = errclass.New(errclass.Invalid, "gguf: tensor not found")
	ErrOrder       = errclass.New(errclass.Failure, "gguf: tensor written out of order")
	ErrSize        = errclass.New(errclass.Failure, "gguf: data size mismatch")
	ErrIncomplete  = errclass.New(errclass.Failure, "gguf: not every tensor was written")
	ErrClosed      = errclass.New(errclass.Failure, "gguf: writer closed")
	ErrNonFinite   = errclass.New(errclass.Invalid, "gguf: non-finite value cannot be quantized")
	ErrUnsupported = errclass.New(errclass.Failure, "gguf: conversion not supported")
)
