package cli

import (
	"io"
	"os"
)

// writebackBytes is how much is written between two write-back requests.
const writebackBytes = 32 << 20

// WritebackWriter writes to a file and starts the kernel's write-back of
// every 32 MiB as it goes. Started while a tool still computes, write-back
// overlaps the work, so the fsync of an atomic commit waits only for the
// tail instead of gigabytes of dirty pages.
type WritebackWriter struct {
	f          *os.File
	n, flushed int64
}

// Writeback wraps f (a regular file being written from its start).
func Writeback(f *os.File) *WritebackWriter { return &WritebackWriter{f: f} }

// Write writes p and requests write-back of each full 32 MiB span.
func (w *WritebackWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.n += int64(n)
	if w.n-w.flushed >= writebackBytes {
		startWriteback(w.f, w.flushed, w.n-w.flushed)
		w.flushed = w.n
	}
	return n, err
}

// ReadFrom lets io.Copy stream through the same accounting.
func (w *WritebackWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{w}, r)
}
