package gguf

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// File is an open GGUF file: the parsed header, and tensor data read on demand with
// ReadAt (no mapping, so a file truncated under the reader gives an error, not a fault).
// A File is safe for concurrent use by multiple goroutines.
type File struct {
	Path string
	*Header

	f     *os.File
	size  int64
	index map[string]int
}

// IsFile reports whether path names a file that starts with the GGUF magic.
func IsFile(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var m [4]byte
	n, _ := io.ReadFull(f, m[:])
	return n == 4 && string(m[:]) == Magic
}

// Open opens path and parses its header; tensor data is not read.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	h, err := ReadHeader(f, st.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	idx := make(map[string]int, len(h.Tensors))
	for i, t := range h.Tensors {
		idx[t.Name] = i
	}
	return &File{Path: path, Header: h, f: f, size: st.Size(), index: idx}, nil
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

// Size returns the size of the file in bytes.
func (f *File) Size() int64 { return f.size }

// Tensor returns the info of the named tensor.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := f.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Tensors[i], true
}

// Section returns a reader over the named tensor's data (NumBytes bytes, no padding).
func (f *File) Section(name string) (*io.SectionReader, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.Path, name, ErrNotFound)
	}
	return io.NewSectionReader(f.f, f.DataOffset+t.Offset, t.NumBytes()), nil
}

// ReadTensor returns a copy of the named tensor's raw data.
func (f *File) ReadTensor(name string) ([]byte, error) {
	sr, err := f.Section(name)
	if err != nil {
		return nil, err
	}
	b := make([]byte, sr.Size())
	if _, err := io.ReadFull(sr, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = ErrTruncated
		}
		return nil, fmt.Errorf("%s: tensor %q: %w", f.Path, name, err)
	}
	return b, nil
}

// Float32 returns the named tensor's values converted to float32 (see Dequantize for the
// supported types).
func (f *File) Float32(name string) ([]float32, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.Path, name, ErrNotFound)
	}
	if !CanDequantize(t.Type) {
		return nil, fmt.Errorf("%s: tensor %q: %w: %s to F32", f.Path, name, ErrUnsupported, t.Type)
	}
	b, err := f.ReadTensor(name)
	if err != nil {
		return nil, err
	}
	out := make([]float32, t.NumElements())
	if err := Dequantize(out, b, t.Type); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.Path, name, err)
	}
	return out, nil
}

// StreamReader reads a GGUF file from a non-seekable stream, handing out tensors in
// data order (increasing offset; the info order for files that are Packed).
type StreamReader struct {
	name  string
	br    *bufio.Reader
	h     *Header
	pos   int64 // absolute position in the stream
	order []int
	next  int
	cur   *io.LimitedReader
}

// NewStreamReader parses the header of the stream r. name is used in error messages
// (e.g. "-" or "<stdin>").
func NewStreamReader(r io.Reader, name string) (*StreamReader, error) {
	br := bufio.NewReaderSize(r, readBufSize)
	h, pos, err := readHeader(br, -1)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	order := make([]int, len(h.Tensors))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(h.Tensors[a].Offset, h.Tensors[b].Offset) })
	return &StreamReader{name: name, br: br, h: h, pos: pos, order: order}, nil
}

// Header returns the parsed header.
func (s *StreamReader) Header() *Header { return s.h }

// Next skips to the next tensor in data order and returns its info and a reader of
// exactly NumBytes bytes, valid until the next call. It returns io.EOF after the last
// tensor (the trailing padding is not read).
func (s *StreamReader) Next() (TensorInfo, io.Reader, error) {
	if s.cur != nil && s.cur.N > 0 {
		if err := s.skip(s.cur.N); err != nil {
			return TensorInfo{}, nil, err
		}
	}
	s.cur = nil
	if s.next >= len(s.order) {
		return TensorInfo{}, nil, io.EOF
	}
	t := s.h.Tensors[s.order[s.next]]
	s.next++
	if err := s.skip(s.h.DataOffset + t.Offset - s.pos); err != nil {
		return TensorInfo{}, nil, fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	s.cur = &io.LimitedReader{R: &streamData{s: s, name: t.Name}, N: t.NumBytes()}
	return t, s.cur, nil
}

func (s *StreamReader) skip(n int64) error {
	m, err := s.br.Discard(int(n))
	s.pos += int64(m)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = ErrTruncated
		}
		return fmt.Errorf("%s: at offset %d: %w", s.name, s.pos, err)
	}
	return nil
}

// streamData reads tensor bytes, counting the position and turning an early EOF
// into ErrTruncated.
type streamData struct {
	s    *StreamReader
	name string
}

func (r *streamData) Read(p []byte) (int, error) {
	n, err := r.s.br.Read(p)
	r.s.pos += int64(n)
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("%s: tensor %q at offset %d: %w", r.s.name, r.name, r.s.pos, ErrTruncated)
	}
	return n, err
}
