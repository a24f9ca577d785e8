package safetensors

import (
	"bytes"
	"fmt"
	"io"
)

// StreamReader reads a safetensors stream from a non-seekable reader (a pipe,
// stdin, a decompressor), handing out tensors in file order. Memory use is
// the header plus whatever the caller reads.
type StreamReader struct {
	name   string
	r      io.Reader
	header *Header
	next   int
	cur    *io.LimitedReader
}

// NewStreamReader reads the header from r. name labels errors (a path or "-").
func NewStreamReader(r io.Reader, name string) (*StreamReader, error) {
	h, _, err := ReadHeader(r, -1)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &StreamReader{name: name, r: r, header: h}, nil
}

// Header is the stream's header.
func (s *StreamReader) Header() *Header { return s.header }

// Next skips whatever is left of the current tensor and returns the next
// one with a reader over exactly its bytes. It returns io.EOF after the last.
func (s *StreamReader) Next() (TensorInfo, io.Reader, error) {
	if s.cur != nil && s.cur.N > 0 {
		t := s.header.Tensors[s.next-1]
		if _, err := io.Copy(io.Discard, s.cur); err != nil {
			return TensorInfo{}, nil, fmt.Errorf("%s: tensor %q: %w", s.name, t.Name, err)
		}
		if s.cur.N > 0 {
			return TensorInfo{}, nil, fmt.Errorf("%s: tensor %q: %w", s.name, t.Name, ErrTruncated)
		}
	}
	if s.next >= len(s.header.Tensors) {
		return TensorInfo{}, nil, io.EOF
	}
	t := s.header.Tensors[s.next]
	s.next++
	s.cur = &io.LimitedReader{R: s.r, N: t.NumBytes()}
	return t, &tensorReader{s: s, t: t}, nil
}

// ReadAll reads the next tensor's data entirely into memory.
func (s *StreamReader) ReadAll() (TensorInfo, []byte, error) {
	t, r, err := s.Next()
	if err != nil {
		return t, nil, err
	}
	// Allocate what the header declares only up to a bound: a hostile
	// header must not make us allocate gigabytes before the data arrives.
	const prealloc = 64 << 20
	if t.NumBytes() <= prealloc {
		buf := make([]byte, t.NumBytes())
		if _, err := io.ReadFull(r, buf); err != nil {
			return t, nil, err
		}
		return t, buf, nil
	}
	var b bytes.Buffer
	b.Grow(prealloc)
	if _, err := b.ReadFrom(r); err != nil {
		return t, nil, err
	}
	return t, b.Bytes(), nil
}

// tensorReader turns a premature end of the stream into ErrTruncated.
type tensorReader struct {
	s *StreamReader
	t TensorInfo
}

func (tr *tensorReader) Read(p []byte) (int, error) {
	n, err := tr.s.cur.Read(p)
	if err == io.EOF && tr.s.cur.N > 0 {
		return n, fmt.Errorf("%s: tensor %q: %w", tr.s.name, tr.t.Name, ErrTruncated)
	}
	return n, err
}
