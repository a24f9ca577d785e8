package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

const (
	readBufSize = 64 << 10
	// maxPrealloc bounds the capacity allocated for an array or list before its
	// elements have been read; larger ones grow as data arrives.
	maxPrealloc = 1 << 16
	// smallest encodings, used to bound counts against the remaining file size
	minKVSize         = 8 + 1 + 4 + 1 // key length, 1-byte key, type, 1-byte value
	minTensorInfoSize = 8 + 4 + 4 + 8 // name length, n_dims, type, offset
)

// ReadHeader parses and validates a GGUF header from r. size is the size of the whole
// file, or negative if unknown (a stream); when known, every count, length and tensor
// extent is checked against it. ReadHeader may read past the header (it buffers); use
// NewStreamReader to go on reading tensor data from a stream, or Open for a file.
func ReadHeader(r io.Reader, size int64) (*Header, error) {
	h, _, err := readHeader(bufio.NewReaderSize(r, readBufSize), size)
	return h, err
}

type decoder struct {
	r    *bufio.Reader
	pos  int64 // bytes consumed
	size int64 // file size, -1 if unknown
}

func (d *decoder) truncated(what string) error {
	return fmt.Errorf("%s at offset %d: %w", what, d.pos, ErrTruncated)
}

// take returns the next n ≤ readBufSize bytes, valid until the next read.
func (d *decoder) take(n int, what string) ([]byte, error) {
	b, err := d.r.Peek(n)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, d.truncated(what)
		}
		return nil, fmt.Errorf("%s at offset %d: %w", what, d.pos, err)
	}
	d.r.Discard(n) // cannot fail after a successful Peek
	d.pos += int64(n)
	return b, nil
}

func (d *decoder) u32(what string) (uint32, error) {
	b, err := d.take(4, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (d *decoder) u64(what string) (uint64, error) {
	b, err := d.take(8, what)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// fits reports whether n items of at least min bytes each can still be in the file.
func (d *decoder) fits(n uint64, min int64) bool {
	if d.size < 0 {
		return true
	}
	rem := d.size - d.pos
	if rem < 0 {
		return false
	}
	return n <= uint64(rem/min)
}

// count reads a u64 count, bounded by max and by the remaining size.
func (d *decoder) count(max uint64, min int64, what string) (int64, error) {
	n, err := d.u64(what)
	if err != nil {
		return 0, err
	}
	if n > max {
		return 0, fmt.Errorf("%s is %d, must be in [0, %d]: %w", what, int64(n), max, ErrCount)
	}
	if !d.fits(n, min) {
		return 0, fmt.Errorf("%s %d at offset %d exceeds the remaining file size: %w", what, n, d.pos-8, ErrTruncated)
	}
	return int64(n), nil
}

// str reads a string with length bounded by max (and the remaining size).
func (d *decoder) str(max uint64, what string) (string, error) {
	n, err := d.u64(what + " length")
	if err != nil {
		return "", err
	}
	if n > max {
		return "", fmt.Errorf("%s length %d exceeds maximum %d: %w", what, n, max, ErrLength)
	}
	if !d.fits(n, 1) {
		return "", fmt.Errorf("%s length %d at offset %d exceeds the remaining file size: %w", what, n, d.pos-8, ErrTruncated)
	}
	if n <= readBufSize {
		b, err := d.take(int(n), what)
		if err != nil {
			return "", err
		}
		return string(b), nil
	}
	// Long strings grow with the data actually read, so a lying length in a stream
	// costs no more memory than the bytes that back it.
	var sb strings.Builder
	for n > 0 {
		k := min(n, readBufSize)
		b, err := d.take(int(k), what)
		if err != nil {
			return "", err
		}
		sb.Write(b)
		n -= k
	}
	return sb.String(), nil
}

// readHeader parses the header and returns it with the number of bytes consumed.
func readHeader(br *bufio.Reader, size int64) (*Header, int64, error) {
	d := &decoder{r: br, size: size}
	magic, err := d.take(4, "magic")
	if err != nil {
		return nil, 0, err
	}
	if string(magic) != Magic {
		return nil, 0, fmt.Errorf("%w: %q, expected %q", ErrMagic, magic, Magic)
	}
	version, err := d.u32("version")
	if err != nil {
		return nil, 0, err
	}
	switch {
	case version == 1:
		return nil, 0, fmt.Errorf("%w: GGUFv1 is no longer supported", ErrVersion)
	case version&0xffff == 0:
		return nil, 0, fmt.Errorf("%w: %#x (big-endian file?)", ErrVersion, version)
	case version > Version:
		return nil, 0, fmt.Errorf("%w: %d, this reader supports up to %d", ErrVersion, version, Version)
	case version < 2:
		return nil, 0, fmt.Errorf("%w: %d", ErrVersion, version)
	}
	h := &Header{Version: version, Alignment: DefaultAlignment}

	nTensors, err := d.count(MaxTensorCount, minTensorInfoSize, "tensor count")
	if err != nil {
		return nil, 0, err
	}
	nKV, err := d.count(MaxKVCount, minKVSize, "key/value count")
	if err != nil {
		return nil, 0, err
	}

	h.Metadata = make(Metadata, 0, min(nKV, maxPrealloc))
	seen := make(map[string]struct{}, min(nKV, maxPrealloc))
	for i := int64(0); i < nKV; i++ {
		key, err := d.str(MaxStringLength, fmt.Sprintf("key %d", i))
		if err != nil {
			return nil, 0, err
		}
		if key == "" {
			return nil, 0, fmt.Errorf("key %d is empty: %w", i, ErrKey)
		}
		if _, dup := seen[key]; dup {
			return nil, 0, fmt.Errorf("key %q: %w", key, ErrDuplicate)
		}
		seen[key] = struct{}{}
		typ, err := d.u32("value type")
		if err != nil {
			return nil, 0, fmt.Errorf("key %q: %w", key, err)
		}
		v, err := d.value(ValueType(typ), 0)
		if err != nil {
			return nil, 0, fmt.Errorf("key %q: %w", key, err)
		}
		h.Metadata = append(h.Metadata, KV{Key: key, Value: v})
	}

	if v, ok := h.Metadata.Get(KeyAlignment); ok {
		a, ok := v.(uint32)
		if !ok {
			typ, _, _ := TypeOf(v)
			return nil, 0, fmt.Errorf("key %q must be of type u32 but is %s: %w", KeyAlignment, typ, ErrAlignment)
		}
		if a == 0 || a&(a-1) != 0 {
			return nil, 0, fmt.Errorf("key %q: %d is not a power of 2: %w", KeyAlignment, a, ErrAlignment)
		}
		h.Alignment = int64(a)
	}

	h.Tensors = make([]TensorInfo, 0, min(nTensors, maxPrealloc))
	names := make(map[string]struct{}, min(nTensors, maxPrealloc))
	for i := int64(0); i < nTensors; i++ {
		t, err := d.tensorInfo(i, h.Alignment)
		if err != nil {
			return nil, 0, err
		}
		if _, dup := names[t.Name]; dup {
			return nil, 0, fmt.Errorf("tensor %q: %w", t.Name, ErrDuplicate)
		}
		names[t.Name] = struct{}{}
		h.Tensors = append(h.Tensors, t)
	}

	h.DataOffset = padTo(d.pos, h.Alignment)
	if err := h.checkExtents(size); err != nil {
		return nil, 0, err
	}
	return h, d.pos, nil
}

func (d *decoder) tensorInfo(i, align int64) (TensorInfo, error) {
	var t TensorInfo
	name, err := d.str(MaxNameLength, fmt.Sprintf("tensor %d name", i))
	if err != nil {
		if errors.Is(err, ErrLength) {
			err = fmt.Errorf("%w: %w", ErrTensorName, err)
		}
		return t, err
	}
	t.Name = name
	fail := func(err error) (TensorInfo, error) {
		return TensorInfo{}, fmt.Errorf("tensor %q: %w", name, err)
	}
	nDims, err := d.u32("n_dims")
	if err != nil {
		return fail(err)
	}
	if nDims > MaxDims {
		return fail(fmt.Errorf("%w: %d dimensions > %d", ErrDims, nDims, MaxDims))
	}
	t.Shape = make([]int64, nDims)
	for j := range t.Shape {
		ne, err := d.u64("ne")
		if err != nil {
			return fail(err)
		}
		if ne > math.MaxInt64 {
			return fail(fmt.Errorf("%w: dimension %d has %d elements", ErrDims, j, int64(ne)))
		}
		t.Shape[j] = int64(ne)
	}
	typ, err := d.u32("type")
	if err != nil {
		return fail(err)
	}
	t.Type = Type(typ)
	if !t.Type.Known() {
		return fail(fmt.Errorf("%w: %s (id %d)", ErrType, t.Type, typ))
	}
	if _, err := tensorBytes(t); err != nil {
		return fail(err)
	}
	off, err := d.u64("offset")
	if err != nil {
		return fail(err)
	}
	if off > math.MaxInt64 || int64(off)%align != 0 {
		return fail(fmt.Errorf("%w: %d is not a multiple of the alignment %d", ErrOffset, off, align))
	}
	t.Offset = int64(off)
	return t, nil
}

// checkExtents verifies that tensor data ranges do not overflow, do not overlap and,
// when size ≥ 0, lie within the file.
func (h *Header) checkExtents(size int64) error {
	if size >= 0 && len(h.Tensors) > 0 && h.DataOffset > size {
		return fmt.Errorf("data section at offset %d is past the end of the file (%d bytes): %w", h.DataOffset, size, ErrTruncated)
	}
	idx := make([]int, len(h.Tensors))
	for i := range idx {
		idx[i] = i
	}
	for _, i := range idx {
		t := h.Tensors[i]
		n := t.NumBytes()
		if t.Offset > math.MaxInt64-h.DataOffset-n {
			return fmt.Errorf("tensor %q: %w: offset %d + %d bytes overflows", t.Name, ErrOffset, t.Offset, n)
		}
		if size >= 0 && h.DataOffset+t.Offset+n > size {
			return fmt.Errorf("tensor %q: data [%d, %d) is not within the file (%d bytes): %w",
				t.Name, h.DataOffset+t.Offset, h.DataOffset+t.Offset+n, size, ErrTruncated)
		}
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		ta, tb := h.Tensors[a], h.Tensors[b]
		if ta.Offset != tb.Offset {
			return cmpInt64(ta.Offset, tb.Offset)
		}
		return cmpInt64(ta.NumBytes(), tb.NumBytes())
	})
	for k := 1; k < len(idx); k++ {
		p, c := h.Tensors[idx[k-1]], h.Tensors[idx[k]]
		if p.Offset+p.NumBytes() > c.Offset {
			return fmt.Errorf("tensor %q: %w: data at %d overlaps tensor %q [%d, %d)",
				c.Name, ErrOffset, c.Offset, p.Name, p.Offset, p.Offset+p.NumBytes())
		}
	}
	return nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// value reads a value of type typ; depth counts enclosing arrays.
func (d *decoder) value(typ ValueType, depth int) (any, error) {
	switch typ {
	case ValueUint8, ValueInt8, ValueBool:
		b, err := d.take(1, "value")
		if err != nil {
			return nil, err
		}
		switch typ {
		case ValueUint8:
			return b[0], nil
		case ValueInt8:
			return int8(b[0]), nil
		}
		return b[0] != 0, nil
	case ValueUint16, ValueInt16:
		b, err := d.take(2, "value")
		if err != nil {
			return nil, err
		}
		u := binary.LittleEndian.Uint16(b)
		if typ == ValueInt16 {
			return int16(u), nil
		}
		return u, nil
	case ValueUint32, ValueInt32, ValueFloat32:
		u, err := d.u32("value")
		if err != nil {
			return nil, err
		}
		switch typ {
		case ValueInt32:
			return int32(u), nil
		case ValueFloat32:
			return math.Float32frombits(u), nil
		}
		return u, nil
	case ValueUint64, ValueInt64, ValueFloat64:
		u, err := d.u64("value")
		if err != nil {
			return nil, err
		}
		switch typ {
		case ValueInt64:
			return int64(u), nil
		case ValueFloat64:
			return math.Float64frombits(u), nil
		}
		return u, nil
	case ValueString:
		return d.str(MaxStringLength, "string")
	case ValueArray:
		return d.array(depth + 1)
	}
	return nil, fmt.Errorf("%w: %d", ErrValueType, uint32(typ))
}

func (d *decoder) array(depth int) (any, error) {
	if depth > MaxArrayDepth {
		return nil, fmt.Errorf("%w: arrays nested deeper than %d", ErrArray, MaxArrayDepth)
	}
	et, err := d.u32("array type")
	if err != nil {
		return nil, err
	}
	elem := ValueType(et)
	if elem >= valueTypeCount {
		return nil, fmt.Errorf("%w: array of %d", ErrValueType, et)
	}
	minSize := elem.size()
	switch elem {
	case ValueString:
		minSize = 8
	case ValueArray:
		minSize = 4 + 8
	}
	n, err := d.u64("array length")
	if err != nil {
		return nil, err
	}
	if n > MaxArrayLength {
		return nil, fmt.Errorf("array length %d exceeds maximum %d: %w", n, MaxArrayLength, ErrLength)
	}
	if !d.fits(n, minSize) {
		return nil, fmt.Errorf("array of %d %s at offset %d exceeds the remaining file size: %w", n, elem, d.pos-8, ErrTruncated)
	}
	cnt := int(n)
	switch elem {
	case ValueUint8:
		return readScalars(d, cnt, 1, func(b []byte) uint8 { return b[0] })
	case ValueInt8:
		return readScalars(d, cnt, 1, func(b []byte) int8 { return int8(b[0]) })
	case ValueBool:
		return readScalars(d, cnt, 1, func(b []byte) bool { return b[0] != 0 })
	case ValueUint16:
		return readScalars(d, cnt, 2, binary.LittleEndian.Uint16)
	case ValueInt16:
		return readScalars(d, cnt, 2, func(b []byte) int16 { return int16(binary.LittleEndian.Uint16(b)) })
	case ValueUint32:
		return readScalars(d, cnt, 4, binary.LittleEndian.Uint32)
	case ValueInt32:
		return readScalars(d, cnt, 4, func(b []byte) int32 { return int32(binary.LittleEndian.Uint32(b)) })
	case ValueFloat32:
		return readScalars(d, cnt, 4, func(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) })
	case ValueUint64:
		return readScalars(d, cnt, 8, binary.LittleEndian.Uint64)
	case ValueInt64:
		return readScalars(d, cnt, 8, func(b []byte) int64 { return int64(binary.LittleEndian.Uint64(b)) })
	case ValueFloat64:
		return readScalars(d, cnt, 8, func(b []byte) float64 { return math.Float64frombits(binary.LittleEndian.Uint64(b)) })
	case ValueString:
		out := make([]string, 0, min(cnt, maxPrealloc))
		for i := 0; i < cnt; i++ {
			s, err := d.str(MaxStringLength, fmt.Sprintf("array element %d", i))
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	// nested arrays
	out := make([]any, 0, min(cnt, maxPrealloc))
	for i := 0; i < cnt; i++ {
		v, err := d.array(depth + 1)
		if err != nil {
			return nil, fmt.Errorf("array element %d: %w", i, err)
		}
		out = append(out, v)
	}
	return out, nil
}

func readScalars[T any](d *decoder, n, esz int, dec func([]byte) T) ([]T, error) {
	out := make([]T, 0, min(n, maxPrealloc))
	for n > 0 {
		k := min(n, readBufSize/esz)
		b, err := d.take(k*esz, "array")
		if err != nil {
			return nil, err
		}
		for i := 0; i < k; i++ {
			out = append(out, dec(b[i*esz:]))
		}
		n -= k
	}
	return out, nil
}
