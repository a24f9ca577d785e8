package gguf

import (
	"fmt"
	"math/bits"
	"slices"
)

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name string
	Type Type
	// Shape holds ggml's ne in file order: Shape[0] = ne[0] is the innermost
	// (fastest-varying) dimension, the reverse of the PyTorch/numpy shape (see ReverseShape).
	// Trailing dimensions of 1 may be present or absent.
	Shape []int64
	// Offset is the start of the tensor's data relative to the data section.
	// The Writer computes it; values passed to NewWriter are ignored.
	Offset int64
}

// NumElements returns the product of the dimensions (1 for a tensor without
// dimensions), or -1 if a dimension is negative or the product overflows int64.
func (t TensorInfo) NumElements() int64 {
	n, err := numElements(t.Shape)
	if err != nil {
		return -1
	}
	return n
}

// NumBytes returns the size of the tensor's data without padding, or -1 if the shape or
// type is invalid (see Type.RowBytes).
func (t TensorInfo) NumBytes() int64 {
	n, err := tensorBytes(t)
	if err != nil {
		return -1
	}
	return n
}

// ReverseShape returns a new slice with the dimensions in reverse order: it converts a
// PyTorch/numpy shape into ggml's ne and back.
func ReverseShape(shape []int64) []int64 {
	r := slices.Clone(shape)
	slices.Reverse(r)
	return r
}

func numElements(shape []int64) (int64, error) {
	n := int64(1)
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("%w: dimension %d has %d elements", ErrDims, i, d)
		}
		hi, lo := bits.Mul64(uint64(n), uint64(d))
		if hi != 0 || lo > 1<<63-1 {
			return 0, fmt.Errorf("%w: element count of shape %v overflows int64", ErrDims, shape)
		}
		n = int64(lo)
	}
	return n, nil
}

// tensorBytes validates the shape against the type and returns the data size:
// ne[0]/block·type_size·ne[1]·ne[2]·ne[3].
func tensorBytes(t TensorInfo) (int64, error) {
	if len(t.Shape) > MaxDims {
		return 0, fmt.Errorf("%w: %d dimensions > %d", ErrDims, len(t.Shape), MaxDims)
	}
	n, err := numElements(t.Shape)
	if err != nil {
		return 0, err
	}
	if !t.Type.Known() {
		return 0, fmt.Errorf("%w: %s", ErrType, t.Type)
	}
	ne0 := int64(1)
	if len(t.Shape) > 0 {
		ne0 = t.Shape[0]
	}
	if ne0%t.Type.BlockSize() != 0 {
		return 0, fmt.Errorf("%w: ne[0] = %d, %s blocks of %d", ErrBlockSize, ne0, t.Type, t.Type.BlockSize())
	}
	// n/block·type_size cannot overflow: type_size ≤ block·8 for every known type.
	hi, lo := bits.Mul64(uint64(n/t.Type.BlockSize()), uint64(t.Type.TypeSize()))
	if hi != 0 || lo > 1<<63-1 {
		return 0, fmt.Errorf("%w: byte size of %v %s overflows int64", ErrDims, t.Shape, t.Type)
	}
	return int64(lo), nil
}

// Header is the parsed header of a GGUF file: everything before the tensor data.
type Header struct {
	Version  uint32
	Metadata Metadata     // key/value pairs in file order
	Tensors  []TensorInfo // tensor-info records in file order
	// Alignment is general.alignment or DefaultAlignment.
	Alignment int64
	// DataOffset is the absolute file offset of the data section.
	DataOffset int64
}

// Tensor returns the info of the named tensor.
func (h *Header) Tensor(name string) (TensorInfo, bool) {
	for _, t := range h.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return TensorInfo{}, false
}

// DataSize returns the size of the data section: the end of the last tensor's data
// padded to the alignment (what ggml's and gguf-py's writers produce).
func (h *Header) DataSize() int64 {
	var end int64
	for _, t := range h.Tensors {
		if e := t.Offset + t.NumBytes(); e > end {
			end = e
		}
	}
	return padTo(end, h.Alignment)
}

// Packed checks ggml's rule that each tensor's offset is the sum of the padded sizes of
// the tensors listed before it (data in info order, no gaps beyond padding). Files that
// break it are valid GGUF but llama.cpp refuses them ("tensor '%s' has offset %llu,
// expected %zu"). It returns nil or an error wrapping ErrNotPacked.
func (h *Header) Packed() error {
	var want int64
	for _, t := range h.Tensors {
		if t.Offset != want {
			return fmt.Errorf("tensor %q has offset %d, expected %d: %w", t.Name, t.Offset, want, ErrNotPacked)
		}
		want += padTo(t.NumBytes(), h.Alignment)
	}
	return nil
}

// padTo rounds n up to a multiple of align (a power of two).
func padTo(n, align int64) int64 {
	return (n + align - 1) &^ (align - 1)
}
