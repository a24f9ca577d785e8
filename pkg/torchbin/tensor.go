package torchbin

import (
	"fmt"
	"math"
	"math/bits"
	"slices"

	"github.com/lorakit/lorakit/pkg/dtype"
)

// TensorInfo describes one tensor of a file: its name, element type and
// shape, and where its elements lie in the archive.
type TensorInfo struct {
	Name  string
	DType dtype.DType
	Shape []int64
	// Storage is the key of the storage the tensor views: the entry
	// <folder>/data/<Storage> of the archive. Tensors with the same key share
	// their bytes (tied weights, views of one buffer).
	Storage string
	// Offset is the index, in elements, of the tensor's first element in
	// its storage; Stride is the step, in elements, of each dimension.
	Offset int64
	Stride []int64

	st *storage
}

// NumElements is the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// NumBytes is the size of the tensor's contiguous bytes, what Data returns.
func (t TensorInfo) NumBytes() int64 { return t.NumElements() * int64(t.DType.Size()) }

// Contiguous reports whether the tensor's elements lie in row-major order
// without gaps, so its bytes are one range of its storage.
func (t TensorInfo) Contiguous() bool { return contiguous(t.Shape, t.Stride) }

func contiguous(shape, stride []int64) bool {
	want := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		if shape[i] == 0 {
			return true
		}
		if shape[i] != 1 && stride[i] != want {
			return false
		}
		want *= shape[i]
	}
	return true
}

// SameView reports whether t and o are the same elements of the same
// storage: tied weights saved under two names (embed_tokens and lm_head).
func (t TensorInfo) SameView(o TensorInfo) bool {
	return t.st != nil && t.st == o.st && t.DType == o.DType && t.Offset == o.Offset &&
		slices.Equal(t.Shape, o.Shape) && slices.Equal(t.Stride, o.Stride)
}

// storageRef is a storage named by a persistent id in the pickle.
type storageRef struct {
	st *storage
}

// tensorVal is a tensor built by a rebuild function.
type tensorVal struct {
	st     *storage
	dtype  dtype.DType
	offset int64
	shape  []int64
	stride []int64
}

// rebuildTensor interprets _rebuild_tensor(storage, offset, size, stride),
// _rebuild_tensor_v2(..., requires_grad, backward_hooks[, metadata]) and
// _rebuild_tensor_v3(..., requires_grad, backward_hooks, dtype[, metadata])
// and checks the view against its storage.
func rebuildTensor(g *pyGlobal, args pyTuple) (any, error) {
	const sig = "(storage, storage_offset, size, stride, ...)"
	minArgs, maxArgs := 4, 4
	switch g.kind {
	case gRebuildTensorV2:
		minArgs, maxArgs = 6, 7
	case gRebuildTensorV3:
		minArgs, maxArgs = 7, 8
	}
	if len(args) < minArgs || len(args) > maxArgs {
		return nil, g.argError(args, sig)
	}
	ref, ok := args[0].(*storageRef)
	if !ok {
		return nil, g.argError(args, "a storage first")
	}
	st := ref.st
	dt := st.dtype
	if g.kind == gRebuildTensorV3 {
		d, ok := args[6].(*pyGlobal)
		if !ok || d.kind != gDType {
			return nil, g.argError(args, "a dtype as the 7th argument")
		}
		if d.dtype == "" {
			return nil, fmt.Errorf("%w: %s", ErrUnsupported, d.what)
		}
		dt = d.dtype
	}
	if dt == "" {
		return nil, fmt.Errorf("%w: %s (storage %q)", ErrUnsupported, st.what, st.key)
	}
	if len(args) == maxArgs && maxArgs > 4 {
		if err := checkTensorMetadata(g, args[maxArgs-1]); err != nil {
			return nil, err
		}
	}
	offset, ok := args[1].(int64)
	if !ok || offset < 0 {
		return nil, g.argError(args, "a non-negative storage offset")
	}
	shape, ok1 := intTuple(args[2])
	stride, ok2 := intTuple(args[3])
	if !ok1 || !ok2 {
		return nil, g.argError(args, "size and stride tuples of integers")
	}
	if len(shape) != len(stride) {
		return nil, fmt.Errorf("%w: storage %q: size %v and stride %v differ in rank", ErrStorage, st.key, shape, stride)
	}
	if len(shape) > MaxDims {
		return nil, fmt.Errorf("%w: storage %q: %d dimensions (limit %d)", ErrStorage, st.key, len(shape), MaxDims)
	}
	t := &tensorVal{st: st, dtype: dt, offset: offset, shape: shape, stride: stride}
	if err := t.check(); err != nil {
		return nil, fmt.Errorf("%w: storage %q: %v", ErrStorage, st.key, err)
	}
	return t, nil
}

// checkTensorMetadata accepts the metadata dict of _rebuild_tensor_v2/v3
// only when no flag is set: the conj and neg bits change the values.
func checkTensorMetadata(g *pyGlobal, v any) error {
	d, ok := v.(*pyDict)
	if !ok {
		if v == nil {
			return nil
		}
		return fmt.Errorf("%w: %s: metadata is a %s, want a dict", ErrPickle, g.name, typeName(v))
	}
	for i, k := range d.keys {
		if b, ok := d.vals[i].(bool); ok && !b {
			continue
		}
		return fmt.Errorf("%w: a tensor with the %v bit set", ErrUnsupported, k)
	}
	return nil
}

// intTuple reads a tuple or list of int64s.
func intTuple(v any) ([]int64, bool) {
	items, ok := sequenceItems(v)
	if !ok {
		return nil, false
	}
	out := make([]int64, len(items))
	for i, it := range items {
		n, ok := it.(int64)
		if !ok {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}

// check validates the view: sizes and strides non-negative, every element
// inside the storage, the contiguous size bounded, no overflow.
func (t *tensorVal) check() error {
	size := uint64(t.dtype.Size())
	numel := uint64(1)
	last := uint64(t.offset) // index of the last element
	for i, d := range t.shape {
		s := t.stride[i]
		if d < 0 || s < 0 {
			return fmt.Errorf("negative size or stride in %v / %v", t.shape, t.stride)
		}
		hi, lo := bits.Mul64(numel, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return fmt.Errorf("size %v overflows", t.shape)
		}
		numel = lo
		if d > 0 {
			hi, step := bits.Mul64(uint64(d-1), uint64(s))
			sum, carry := bits.Add64(last, step, 0)
			if hi != 0 || carry != 0 || sum > math.MaxInt64 {
				return fmt.Errorf("stride %v overflows", t.stride)
			}
			last = sum
		}
	}
	hi, nbytes := bits.Mul64(numel, size)
	if hi != 0 || nbytes > math.MaxInt64 {
		return fmt.Errorf("size %v overflows", t.shape)
	}
	if numel == 0 {
		return nil
	}
	hi, end := bits.Mul64(last+1, size)
	if hi != 0 || end > uint64(t.st.nbytes) {
		return fmt.Errorf("a %s view at offset %d, size %v, stride %v reaches beyond the storage's %d bytes",
			t.dtype, t.offset, t.shape, t.stride, t.st.nbytes)
	}
	if limit := uint64(t.st.nbytes) * uint64(MaxExpansion); nbytes > limit {
		return fmt.Errorf("a %s view of size %v (%d bytes) expands the storage's %d bytes more than %d-fold",
			t.dtype, t.shape, nbytes, t.st.nbytes, MaxExpansion)
	}
	return nil
}
