package safetensors

import (
	"bufio"
	"bytes"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Compression is a whole-stream compression applied to a file.
type Compression int

// Supported compressions.
const (
	None Compression = iota
	Gzip
	Zstd
)

// CompressionFor returns the compression implied by a file name's extension
// (.gz, .zst); it knows nothing else of the name.
func CompressionFor(name string) Compression {
	switch {
	case strings.HasSuffix(name, ".gz"):
		return Gzip
	case strings.HasSuffix(name, ".zst"):
		return Zstd
	}
	return None
}

// TrimCompression removes a .gz or .zst extension.
func TrimCompression(name string) string {
	return strings.TrimSuffix(strings.TrimSuffix(name, ".gz"), ".zst")
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// Decompress returns a reader that undoes gzip or zstd compression when r
// starts with either format's magic number, and r itself (buffered) otherwise.
func Decompress(r io.Reader) (io.ReadCloser, Compression, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	head, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(head, zstdMagic):
		d, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<36))
		if err != nil {
			return nil, Zstd, err
		}
		return d.IOReadCloser(), Zstd, nil
	case bytes.HasPrefix(head, gzipMagic):
		g, err := gzip.NewReader(br)
		if err != nil {
			return nil, Gzip, err
		}
		return g, Gzip, nil
	}
	return io.NopCloser(br), None, nil
}

// Compress wraps w in a compressor for c; closing the result flushes the
// compressed stream but does not close w.
func Compress(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case Gzip:
		return gzip.NewWriterLevel(w, gzip.DefaultCompression)
	case Zstd:
		return zstd.NewWriter(w, zstd.WithEncoderConcurrency(1))
	}
	return nopWriteCloser{w}, nil
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
