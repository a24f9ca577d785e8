package output

import (
	"io"
	"os"
)

// writebackBytes is how much is written between two write-back requests.
const writebackBytes = 32 << 20

// writeChunk bounds one write(2): a tensor of tens of megabytes goes to the
// kernel in 1 MiB pieces. Linux copies such pieces into the page cache much
// faster than one large write (on a generated 1.67 GB model lora-merge went
// from about 1.8 s to 1.2 s; 4 MiB pieces were slower than one call).
const writeChunk = 1 << 20

// WritebackWriter writes to a file in pieces of at most 1 MiB and starts the
// kernel's write-back of every 32 MiB as it goes. Started while a tool still computes, write-back
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
	done := 0
	for done < len(p) {
		n, err := w.f.Write(p[done:min(len(p), done+writeChunk)])
		done += n
		w.n += int64(n)
		if w.n-w.flushed >= writebackBytes {
			startWriteback(w.f, w.flushed, w.n-w.flushed)
			w.flushed = w.n
		}
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// ReadFrom lets io.Copy stream through the same accounting.
func (w *WritebackWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{w}, r)
}
