package safetensors

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/lorakit/lorakit/pkg/dtype"
)

// File is an open safetensors file. Opening reads only the header; tensor
// data is memory-mapped on first use and handed out without copying.
type File struct {
	Path   string
	Header *Header
	// DataStart is the file offset of the data section.
	DataStart int64
	// Size is the file size in bytes.
	Size int64

	f      *os.File
	mu     sync.Mutex
	mapped []byte
}

// Open opens path and reads and validates its header.
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
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: %w: not a regular file (use a stream reader)", path, ErrHeader)
	}
	h, start, err := ReadHeader(io.NewSectionReader(f, 0, st.Size()), st.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &File{Path: path, Header: h, DataStart: start, Size: st.Size(), f: f}, nil
}

// Info returns the tensor called name.
func (f *File) Info(name string) (TensorInfo, bool) { return f.Header.Info(name) }

// Data returns the bytes of tensor name. On Unix they are a view of the
// memory-mapped file, valid until Close; do not modify them.
func (f *File) Data(name string) ([]byte, error) {
	t, ok := f.Header.Info(name)
	if !ok {
		return nil, fmt.Errorf("%s: %w: %q", f.Path, ErrNotFound, name)
	}
	return f.TensorData(t)
}

// TensorData returns the bytes of t, which must come from this file's header.
func (f *File) TensorData(t TensorInfo) ([]byte, error) {
	if t.NumBytes() == 0 {
		return []byte{}, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return nil, fmt.Errorf("%s: %w: file is closed", f.Path, os.ErrClosed)
	}
	if f.mapped == nil && canMmap {
		m, err := mmapFile(f.f, f.Size)
		if err != nil {
			return nil, fmt.Errorf("%s: mmap: %w", f.Path, err)
		}
		f.mapped = m
	}
	lo, hi := f.DataStart+t.Offsets[0], f.DataStart+t.Offsets[1]
	if f.mapped != nil {
		return f.mapped[lo:hi:hi], nil
	}
	buf := make([]byte, hi-lo)
	if _, err := f.f.ReadAt(buf, lo); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.Path, t.Name, shortRead(err))
	}
	return buf, nil
}

// Float32 returns tensor name converted to float32 (a new slice).
func (f *File) Float32(name string) ([]float32, error) {
	t, ok := f.Header.Info(name)
	if !ok {
		return nil, fmt.Errorf("%s: %w: %q", f.Path, ErrNotFound, name)
	}
	data, err := f.TensorData(t)
	if err != nil {
		return nil, err
	}
	out := make([]float32, t.NumElements())
	if err := dtype.ToF32(out, data, t.DType); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.Path, name, err)
	}
	return out, nil
}

// ReaderAt exposes the underlying file for copying data sections.
func (f *File) ReaderAt() io.ReaderAt { return f.f }

// Close unmaps and closes the file. Slices returned by Data become invalid.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return nil
	}
	var err error
	if f.mapped != nil {
		err = munmap(f.mapped)
		f.mapped = nil
	}
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	f.f = nil
	return err
}
