package safetensors

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/lorakit/lorakit/pkg/dtype"
)

// layoutClass orders tensors in the data section. The reference writer
// (safetensors 0.8, checked against the project fixtures) places tensors by
// descending element alignment, with alignments of 4 bytes and more forming one
// class (F32 and I64 tensors interleave by name), then by name in byte order.
func layoutClass(d dtype.DType) int {
	s := d.Size()
	if s > 4 {
		return 4
	}
	return s
}

// SortReference sorts tensors into the order the reference writer uses.
func SortReference(ts []TensorInfo) {
	sort.SliceStable(ts, func(i, j int) bool {
		ci, cj := layoutClass(ts[i].DType), layoutClass(ts[j].DType)
		if ci != cj {
			return ci > cj
		}
		return ts[i].Name < ts[j].Name
	})
}

// EncodeHeader lays out tensors (in the given order, assigning offsets
// without gaps) and returns the header JSON padded with spaces to a multiple
// of 8 bytes, exactly as the reference writer formats it: compact JSON,
// __metadata__ first with sorted keys, then one entry per tensor in data order.
// The returned infos carry the assigned offsets.
func EncodeHeader(metadata map[string]string, tensors []TensorInfo) ([]byte, []TensorInfo, error) {
	out := make([]TensorInfo, len(tensors))
	seen := make(map[string]bool, len(tensors))
	var b []byte
	b = append(b, '{')
	first := true
	if metadata != nil {
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = appendString(b, MetadataKey)
		b = append(b, ":{"...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, metadata[k])
		}
		b = append(b, '}')
		first = false
	}
	var off int64
	for i, t := range tensors {
		if t.Name == MetadataKey || seen[t.Name] {
			return nil, nil, fmt.Errorf("%w: tensor %q: duplicate or reserved name", ErrWrite, t.Name)
		}
		seen[t.Name] = true
		if t.DType.Size() == 0 {
			return nil, nil, fmt.Errorf("%w: tensor %q: unsupported dtype %q", ErrWrite, t.Name, t.DType)
		}
		n := int64(t.DType.Size())
		for _, d := range t.Shape {
			if d < 0 {
				return nil, nil, fmt.Errorf("%w: tensor %q: negative dimension", ErrWrite, t.Name)
			}
			n *= d
		}
		t.Offsets = [2]int64{off, off + n}
		off += n
		out[i] = t
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, t.Name)
		b = append(b, `:{"dtype":`...)
		b = appendString(b, string(t.DType))
		b = append(b, `,"shape":[`...)
		for j, d := range t.Shape {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, d, 10)
		}
		b = append(b, `],"data_offsets":[`...)
		b = strconv.AppendInt(b, t.Offsets[0], 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, t.Offsets[1], 10)
		b = append(b, "]}"...)
	}
	b = append(b, '}')
	for len(b)%8 != 0 {
		b = append(b, ' ')
	}
	return b, out, nil
}

// appendString appends s as a JSON string the way serde_json writes it:
// only '"', '\\' and control characters are escaped; other text is verbatim.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			b = append(b, '\\', '"')
		case c == '\\':
			b = append(b, '\\', '\\')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c == '\b':
			b = append(b, '\\', 'b')
		case c == '\f':
			b = append(b, '\\', 'f')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// Writer streams a safetensors file: the header, with every offset computed
// up front, is written by NewWriter; tensor data follows with WriteTensor in
// the order Order gives. Nothing is buffered beyond one bufio buffer, so a
// Writer can target stdout.
type Writer struct {
	dst   io.Writer
	w     *bufio.Writer
	order []TensorInfo
	next  int
	// partial tracks the bytes written of order[next] by Write.
	partial int64
}

// NewWriter writes the header for tensors (their Offsets are ignored) laid
// out in the reference order (SortReference). metadata may be nil.
func NewWriter(w io.Writer, metadata map[string]string, tensors []TensorInfo) (*Writer, error) {
	ts := append([]TensorInfo(nil), tensors...)
	SortReference(ts)
	return NewWriterOrdered(w, metadata, ts)
}

// NewWriterOrdered is NewWriter keeping the tensors in the given order.
func NewWriterOrdered(w io.Writer, metadata map[string]string, tensors []TensorInfo) (*Writer, error) {
	hdr, order, err := EncodeHeader(metadata, tensors)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var prefix [8]byte
	binary.LittleEndian.PutUint64(prefix[:], uint64(len(hdr)))
	if _, err := bw.Write(prefix[:]); err != nil {
		return nil, err
	}
	if _, err := bw.Write(hdr); err != nil {
		return nil, err
	}
	return &Writer{dst: w, w: bw, order: order}, nil
}

// Order is the order in which tensor data must be written, with offsets.
func (w *Writer) Order() []TensorInfo { return w.order }

// Next returns the tensor whose data is expected next, or false when all
// tensors have been written.
func (w *Writer) Next() (TensorInfo, bool) {
	if w.next >= len(w.order) {
		return TensorInfo{}, false
	}
	return w.order[w.next], true
}

// WriteTensor writes the whole data of the next tensor, which must be name.
func (w *Writer) WriteTensor(name string, data []byte) error {
	t, ok := w.Next()
	if !ok {
		return fmt.Errorf("%w: tensor %q: every tensor has already been written", ErrWrite, name)
	}
	if t.Name != name || w.partial != 0 {
		return fmt.Errorf("%w: tensor %q written out of order (expected %q)", ErrWrite, name, t.Name)
	}
	if int64(len(data)) != t.NumBytes() {
		return fmt.Errorf("%w: tensor %q: %d bytes given, %d expected", ErrWrite, name, len(data), t.NumBytes())
	}
	if _, err := w.write(data); err != nil {
		return err
	}
	w.next++
	return nil
}

// directBytes is the smallest write that bypasses the buffer: copying large
// chunks into it would cost a memory copy of nearly every byte of a model
// written in chunks (bufio writes directly only while it is empty).
const directBytes = 64 << 10

// write writes p through the buffer, or directly after flushing it when p
// is large.
func (w *Writer) write(p []byte) (int, error) {
	if len(p) < directBytes {
		return w.w.Write(p)
	}
	if err := w.w.Flush(); err != nil {
		return 0, err
	}
	return w.dst.Write(p)
}

// Write writes raw data bytes, in order, across tensor boundaries: it lets a
// caller copy data sections with io.Copy. It refuses bytes beyond the last tensor.
func (w *Writer) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		t, ok := w.Next()
		if !ok {
			return written, fmt.Errorf("%w: %d bytes beyond the last tensor", ErrWrite, len(p))
		}
		room := t.NumBytes() - w.partial
		k := int64(len(p))
		if k > room {
			k = room
		}
		n, err := w.write(p[:k])
		written += n
		w.partial += int64(n)
		if err != nil {
			return written, err
		}
		p = p[k:]
		if w.partial == t.NumBytes() {
			w.next++
			w.partial = 0
		}
	}
	return written, nil
}

// Close flushes the output and checks that every tensor was written. It does
// not close the underlying writer.
func (w *Writer) Close() error {
	// Zero-sized tensors need no bytes.
	for w.next < len(w.order) && w.order[w.next].NumBytes() == 0 && w.partial == 0 {
		w.next++
	}
	if t, ok := w.Next(); ok {
		return fmt.Errorf("%w: tensor %q was not written (%d of %d tensors done)", ErrWrite, t.Name, w.next, len(w.order))
	}
	return w.w.Flush()
}

// Tensor is an in-memory tensor for WriteFile and Encode.
type Tensor struct {
	DType dtype.DType
	Shape []int64
	Data  []byte
}

// Encode writes tensors as one safetensors stream in the reference order.
func Encode(w io.Writer, metadata map[string]string, tensors map[string]Tensor) error {
	infos := make([]TensorInfo, 0, len(tensors))
	for name, t := range tensors {
		infos = append(infos, TensorInfo{Name: name, DType: t.DType, Shape: t.Shape})
	}
	sw, err := NewWriter(w, metadata, infos)
	if err != nil {
		return err
	}
	for _, t := range sw.Order() {
		if err := sw.WriteTensor(t.Name, tensors[t.Name].Data); err != nil {
			return err
		}
	}
	return sw.Close()
}

// Underlying returns the io.Writer the Writer was created over.
func (w *Writer) Underlying() io.Writer { return w.dst }
