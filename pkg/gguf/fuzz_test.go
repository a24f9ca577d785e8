package gguf

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// FuzzReadHeader feeds arbitrary bytes to the reader, with the size known and as a
// stream. It must never panic or over-allocate; when a header parses, both modes must
// agree, every tensor must lie within the file without overlap, and a header the writer
// accepts must survive a write/read round trip.
func FuzzReadHeader(f *testing.F) {
	valid := encodeFile(f, allValues, roundTripTensors())
	small := encodeFile(f, []KV{{"a", uint32(7)}}, []testTensor{{TensorInfo{Name: "t", Type: TypeF32, Shape: []int64{2}}, f32Bytes(1, 2)}})
	f.Add(valid)
	f.Add(small)
	for _, n := range []int{0, 3, 4, 8, 24, 40, 60, 100, 300, len(valid) / 2, len(valid) - 1} {
		f.Add(valid[:n])
	}
	f.Add(small[:len(small)-20])
	f.Add(nested(3).Bytes())
	f.Add(hdr(3, 0, 1).kvU32(KeyAlignment, 1<<31).Bytes())
	f.Add(hdr(3, 2, 0).tinfo("a", uint32(TypeF32), 32, 1).tinfo("b", uint32(TypeF32), 0, 1).padData(64).Bytes())

	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ReadHeader(bytes.NewReader(data), int64(len(data)))
		hs, errs := ReadHeader(bytes.NewReader(data), -1)
		if err != nil {
			if !isPackageError(err) {
				t.Fatalf("unexpected error type: %v", err)
			}
			return
		}
		if errs != nil {
			t.Fatalf("parses with size but not as a stream: %v", errs)
		}
		if !reflect.DeepEqual(h, hs) {
			t.Fatal("stream and sized parses differ")
		}
		for _, ti := range h.Tensors {
			n := ti.NumBytes()
			if n < 0 || ti.Offset < 0 || h.DataOffset+ti.Offset+n > int64(len(data)) {
				t.Fatalf("tensor %q out of bounds", ti.Name)
			}
		}
		_ = h.Summary()
		_ = h.Packed()

		// write back what the writer accepts and read it again (small alignments only:
		// the writer pads every tensor to it)
		if h.Alignment > 4096 {
			return
		}
		var buf bytes.Buffer
		w, err := NewWriter(&buf, h.Metadata, h.Tensors)
		if err != nil {
			return // e.g. nested or empty arrays, alignment < 8: valid to read, refused to write
		}
		for _, ti := range h.Tensors {
			sr := io.NewSectionReader(bytes.NewReader(data), h.DataOffset+ti.Offset, ti.NumBytes())
			if err := w.WriteTensorFrom(ti.Name, sr); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		h2, err := ReadHeader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			t.Fatalf("re-read: %v", err)
		}
		if !sameMetadata(h.Metadata, h2.Metadata) || len(h2.Tensors) != len(h.Tensors) {
			t.Fatal("round trip changed the header")
		}
		if err := h2.Packed(); err != nil {
			t.Fatal(err)
		}
	})
}

// sameMetadata compares metadata treating NaN floats as equal to themselves.
func sameMetadata(a, b Metadata) bool {
	if len(a) != len(b) {
		return false
	}
	var ea, eb bytes.Buffer
	(&encoder{buf: &ea}).kvs(a)
	(&encoder{buf: &eb}).kvs(b)
	return bytes.Equal(ea.Bytes(), eb.Bytes())
}

func (e *encoder) kvs(m Metadata) {
	for _, kv := range m {
		e.str(kv.Key)
		e.value(kv.Value)
	}
}

func isPackageError(err error) bool {
	for _, s := range []error{ErrMagic, ErrVersion, ErrTruncated, ErrCount, ErrLength, ErrKey, ErrDuplicate,
		ErrValueType, ErrArray, ErrAlignment, ErrTensorName, ErrDims, ErrType, ErrBlockSize, ErrOffset} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FuzzStreamReader reads every tensor of arbitrary bytes as a stream: no panic, data
// of exactly NumBytes for each tensor handed out, and only package errors.
func FuzzStreamReader(f *testing.F) {
	valid := encodeFile(f, allValues, roundTripTensors())
	f.Add(valid)
	f.Add(valid[:len(valid)-70])
	f.Add(hdr(3, 2, 0).tinfo("a", uint32(TypeF32), 32, 1).tinfo("b", uint32(TypeF32), 0, 1).padData(64).Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := NewStreamReader(bytes.NewReader(data), "fuzz")
		if err != nil {
			if !isPackageError(err) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		for {
			ti, r, err := s.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				if !errors.Is(err, ErrTruncated) {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			n, err := io.Copy(io.Discard, r)
			if err != nil {
				if !errors.Is(err, ErrTruncated) {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if n != ti.NumBytes() {
				t.Fatalf("tensor %q: %d bytes, want %d", ti.Name, n, ti.NumBytes())
			}
		}
	})
}
