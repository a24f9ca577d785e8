package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
)

// Writer streams a GGUF v3 file. NewWriter validates the metadata and tensor infos,
// computes every offset and writes the header at once; the tensors' data then follow
// with WriteTensor in the order of the infos, each padded to the alignment, so the
// output can go to a pipe. Metadata is written in the caller's order, so output is
// deterministic.
//
// The layout is the reference one (ggml's and gguf-py's writers): data in info order,
// each tensor at the running sum of the padded sizes of those before it, zero padding
// after the infos and after every tensor including the last.
type Writer struct {
	w       io.Writer
	h       *Header
	next    int
	partial int64 // bytes of h.Tensors[next] written by Write
	err     error // sticky
}

// NewWriter checks kvs and tensors and writes the header to w. Offsets in tensors are
// ignored and recomputed. The alignment is general.alignment if kvs has it (it must be a
// UINT32 power of two, a multiple of 8 and at most MaxAlignment), else 32.
//
// Refused (the reader accepts some of these; llama.cpp or gguf-py do not): empty or
// duplicate keys, values of Go types without a GGUF type, empty arrays, arrays of arrays,
// tensor names that are empty, longer than 63 bytes or duplicated, more than 4
// dimensions, negative dimensions, unknown types, and ne[0] not a multiple of the
// type's block size.
func NewWriter(w io.Writer, kvs []KV, tensors []TensorInfo) (*Writer, error) {
	h, err := newHeader(kvs, tensors)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	encodeHeader(&buf, h)
	if _, err := w.Write(buf.Bytes()); err != nil {
		return nil, err
	}
	return &Writer{w: w, h: h}, nil
}

func newHeader(kvs []KV, tensors []TensorInfo) (*Header, error) {
	if len(kvs) > MaxKVCount {
		return nil, fmt.Errorf("%d key/value pairs > %d: %w", len(kvs), MaxKVCount, ErrCount)
	}
	if len(tensors) > MaxTensorCount {
		return nil, fmt.Errorf("%d tensors > %d: %w", len(tensors), MaxTensorCount, ErrCount)
	}
	h := &Header{Version: Version, Alignment: DefaultAlignment, Metadata: make(Metadata, len(kvs))}
	seen := make(map[string]struct{}, len(kvs))
	for i, kv := range kvs {
		if kv.Key == "" {
			return nil, fmt.Errorf("key %d is empty: %w", i, ErrKey)
		}
		if len(kv.Key) > MaxStringLength {
			return nil, fmt.Errorf("key %d: length %d: %w", i, len(kv.Key), ErrLength)
		}
		if _, dup := seen[kv.Key]; dup {
			return nil, fmt.Errorf("key %q: %w", kv.Key, ErrDuplicate)
		}
		seen[kv.Key] = struct{}{}
		if err := checkValue(kv.Value); err != nil {
			return nil, fmt.Errorf("key %q: %w", kv.Key, err)
		}
		h.Metadata[i] = KV{Key: kv.Key, Value: cloneValue(kv.Value)}
	}
	if v, ok := h.Metadata.Get(KeyAlignment); ok {
		a, ok := v.(uint32)
		if !ok {
			typ, _, _ := TypeOf(v)
			return nil, fmt.Errorf("key %q must be of type u32 but is %s: %w", KeyAlignment, typ, ErrAlignment)
		}
		if a < 8 || a > MaxAlignment || a&(a-1) != 0 {
			return nil, fmt.Errorf("key %q: %d is not a power of 2 in [8, %d]: %w", KeyAlignment, a, MaxAlignment, ErrAlignment)
		}
		h.Alignment = int64(a)
	}

	h.Tensors = make([]TensorInfo, len(tensors))
	names := make(map[string]struct{}, len(tensors))
	var off int64
	for i, t := range tensors {
		if t.Name == "" {
			return nil, fmt.Errorf("tensor %d: empty name: %w", i, ErrTensorName)
		}
		if len(t.Name) > MaxNameLength {
			return nil, fmt.Errorf("tensor %q: name of %d bytes > %d: %w", t.Name, len(t.Name), MaxNameLength, ErrTensorName)
		}
		if _, dup := names[t.Name]; dup {
			return nil, fmt.Errorf("tensor %q: %w", t.Name, ErrDuplicate)
		}
		names[t.Name] = struct{}{}
		n, err := tensorBytes(t)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		p := padTo(n, h.Alignment)
		if p < n || off > math.MaxInt64-p {
			return nil, fmt.Errorf("tensor %q: %w: data section exceeds int64", t.Name, ErrOffset)
		}
		h.Tensors[i] = TensorInfo{Name: t.Name, Type: t.Type, Shape: slices.Clone(t.Shape), Offset: off}
		off += p
	}
	return h, nil
}

func checkValue(v any) error {
	typ, elem, ok := TypeOf(v)
	if !ok {
		return fmt.Errorf("%w: Go type %T", ErrValueType, v)
	}
	switch typ {
	case ValueString:
		if len(v.(string)) > MaxStringLength {
			return fmt.Errorf("string of %d bytes: %w", len(v.(string)), ErrLength)
		}
	case ValueArray:
		if elem == ValueArray {
			return fmt.Errorf("%w: arrays of arrays are not loadable by ggml", ErrArray)
		}
		n := arrayLen(v)
		if n == 0 {
			return fmt.Errorf("%w: empty array of %s", ErrArray, elem)
		}
		if n > MaxArrayLength {
			return fmt.Errorf("array of %d elements: %w", n, ErrLength)
		}
		if ss, ok := v.([]string); ok {
			for i, s := range ss {
				if len(s) > MaxStringLength {
					return fmt.Errorf("array element %d: string of %d bytes: %w", i, len(s), ErrLength)
				}
			}
		}
	}
	return nil
}

// cloneValue copies slices so later changes by the caller do not alter the header.
func cloneValue(v any) any {
	switch a := v.(type) {
	case []uint8:
		return slices.Clone(a)
	case []int8:
		return slices.Clone(a)
	case []uint16:
		return slices.Clone(a)
	case []int16:
		return slices.Clone(a)
	case []uint32:
		return slices.Clone(a)
	case []int32:
		return slices.Clone(a)
	case []float32:
		return slices.Clone(a)
	case []bool:
		return slices.Clone(a)
	case []string:
		return slices.Clone(a)
	case []uint64:
		return slices.Clone(a)
	case []int64:
		return slices.Clone(a)
	case []float64:
		return slices.Clone(a)
	}
	return v
}

// Header returns the header being written: metadata, tensor infos with their offsets,
// alignment and data offset. It must not be modified.
func (w *Writer) Header() *Header { return w.h }

// Size returns the size of the complete file in bytes.
func (w *Writer) Size() int64 { return w.h.DataOffset + w.h.DataSize() }

// Next returns the info of the tensor whose data is expected next; ok is false when all
// have been written.
func (w *Writer) Next() (t TensorInfo, ok bool) {
	if w.next >= len(w.h.Tensors) {
		return TensorInfo{}, false
	}
	return w.h.Tensors[w.next], true
}

func (w *Writer) begin(name string) (TensorInfo, error) {
	if w.err != nil {
		return TensorInfo{}, w.err
	}
	t, ok := w.Next()
	if !ok {
		if _, exists := w.h.Tensor(name); exists {
			return TensorInfo{}, fmt.Errorf("tensor %q: %w: already written", name, ErrOrder)
		}
		return TensorInfo{}, fmt.Errorf("tensor %q: %w", name, ErrNotFound)
	}
	if w.partial != 0 {
		return TensorInfo{}, fmt.Errorf("tensor %q: %w: %q is partly written", name, ErrOrder, t.Name)
	}
	if t.Name != name {
		if _, exists := w.h.Tensor(name); !exists {
			return TensorInfo{}, fmt.Errorf("tensor %q: %w", name, ErrNotFound)
		}
		return TensorInfo{}, fmt.Errorf("tensor %q: %w: expected %q", name, ErrOrder, t.Name)
	}
	return t, nil
}

// WriteTensor writes the data of the next tensor, which must be called name, and its
// padding. len(data) must be the tensor's NumBytes.
func (w *Writer) WriteTensor(name string, data []byte) error {
	t, err := w.begin(name)
	if err != nil {
		return err
	}
	if n := t.NumBytes(); int64(len(data)) != n {
		return fmt.Errorf("tensor %q: %w: %d bytes, want %d (%s %v)", name, ErrSize, len(data), n, t.Type, t.Shape)
	}
	if _, err := w.w.Write(data); err != nil {
		w.err = fmt.Errorf("tensor %q: %w", name, err)
		return w.err
	}
	return w.finish(t)
}

// WriteTensorFrom copies the data of the next tensor, which must be called name, from r
// (exactly NumBytes bytes; r may hold more) and writes its padding.
func (w *Writer) WriteTensorFrom(name string, r io.Reader) error {
	t, err := w.begin(name)
	if err != nil {
		return err
	}
	n := t.NumBytes()
	m, err := io.CopyN(w.w, r, n)
	if err != nil {
		if m < n && errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: %d bytes, want %d", ErrSize, m, n)
		}
		w.err = fmt.Errorf("tensor %q: %w", name, err)
		return w.err
	}
	return w.finish(t)
}

// Write writes tensor data in order across tensor boundaries, padding each
// tensor once its bytes are complete: a tensor may come in pieces, as a
// streaming converter produces it.
func (w *Writer) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if w.err != nil {
			return n, w.err
		}
		t, ok := w.Next()
		if !ok {
			return n, fmt.Errorf("%w: %d bytes beyond the last tensor", ErrSize, len(p))
		}
		k := min(t.NumBytes()-w.partial, int64(len(p)))
		m, err := w.w.Write(p[:k])
		n += m
		w.partial += int64(m)
		if err != nil {
			w.err = fmt.Errorf("tensor %q: %w", t.Name, err)
			return n, w.err
		}
		p = p[k:]
		if w.partial == t.NumBytes() {
			w.partial = 0
			if err := w.finish(t); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

var zeros [256]byte

func (w *Writer) finish(t TensorInfo) error {
	n := t.NumBytes()
	for pad := padTo(n, w.h.Alignment) - n; pad > 0; {
		k := min(pad, int64(len(zeros)))
		if _, err := w.w.Write(zeros[:k]); err != nil {
			w.err = fmt.Errorf("tensor %q: %w", t.Name, err)
			return w.err
		}
		pad -= k
	}
	w.next++
	return nil
}

// Close checks that every tensor was written. It does not close the underlying writer.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	for t, ok := w.Next(); ok && t.NumBytes() == 0 && w.partial == 0; t, ok = w.Next() {
		w.next++ // zero-byte tensors need no data nor padding
	}
	if t, ok := w.Next(); ok {
		w.err = fmt.Errorf("tensor %q (%d of %d) not written: %w", t.Name, w.next+1, len(w.h.Tensors), ErrIncomplete)
		return w.err
	}
	w.err = ErrClosed
	return nil
}

// encodeHeader serializes h (validated) including the padding before the data section,
// and sets h.DataOffset.
func encodeHeader(buf *bytes.Buffer, h *Header) {
	e := encoder{buf: buf}
	buf.WriteString(Magic)
	e.u32(h.Version)
	e.u64(uint64(len(h.Tensors)))
	e.u64(uint64(len(h.Metadata)))
	for _, kv := range h.Metadata {
		e.str(kv.Key)
		typ, _, _ := TypeOf(kv.Value)
		e.u32(uint32(typ))
		e.value(kv.Value)
	}
	for _, t := range h.Tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Shape)))
		for _, d := range t.Shape {
			e.u64(uint64(d))
		}
		e.u32(uint32(t.Type))
		e.u64(uint64(t.Offset))
	}
	h.DataOffset = padTo(int64(buf.Len()), h.Alignment)
	buf.Write(make([]byte, h.DataOffset-int64(buf.Len())))
}

type encoder struct {
	buf *bytes.Buffer
	b   [8]byte
}

func (e *encoder) u8(v uint8) { e.buf.WriteByte(v) }
func (e *encoder) u16(v uint16) {
	binary.LittleEndian.PutUint16(e.b[:], v)
	e.buf.Write(e.b[:2])
}
func (e *encoder) u32(v uint32) {
	binary.LittleEndian.PutUint32(e.b[:], v)
	e.buf.Write(e.b[:4])
}
func (e *encoder) u64(v uint64) {
	binary.LittleEndian.PutUint64(e.b[:], v)
	e.buf.Write(e.b[:8])
}
func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	e.buf.WriteString(s)
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func (e *encoder) value(v any) {
	switch x := v.(type) {
	case uint8:
		e.u8(x)
	case int8:
		e.u8(uint8(x))
	case uint16:
		e.u16(x)
	case int16:
		e.u16(uint16(x))
	case uint32:
		e.u32(x)
	case int32:
		e.u32(uint32(x))
	case float32:
		e.u32(math.Float32bits(x))
	case bool:
		e.u8(b2u(x))
	case string:
		e.str(x)
	case uint64:
		e.u64(x)
	case int64:
		e.u64(uint64(x))
	case float64:
		e.u64(math.Float64bits(x))
	default:
		_, elem, _ := TypeOf(v)
		e.u32(uint32(elem))
		e.u64(uint64(arrayLen(v)))
		switch a := v.(type) {
		case []uint8:
			e.buf.Write(a)
		case []int8:
			for _, x := range a {
				e.u8(uint8(x))
			}
		case []uint16:
			for _, x := range a {
				e.u16(x)
			}
		case []int16:
			for _, x := range a {
				e.u16(uint16(x))
			}
		case []uint32:
			for _, x := range a {
				e.u32(x)
			}
		case []int32:
			for _, x := range a {
				e.u32(uint32(x))
			}
		case []float32:
			for _, x := range a {
				e.u32(math.Float32bits(x))
			}
		case []bool:
			for _, x := range a {
				e.u8(b2u(x))
			}
		case []string:
			for _, x := range a {
				e.str(x)
			}
		case []uint64:
			for _, x := range a {
				e.u64(x)
			}
		case []int64:
			for _, x := range a {
				e.u64(uint64(x))
			}
		case []float64:
			for _, x := range a {
				e.u64(math.Float64bits(x))
			}
		}
	}
}
