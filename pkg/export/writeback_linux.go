package export

import (
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// writeback returns a function that starts the kernel's write-back of a byte range of
// w when w is a regular file, or nil. Started while the export runs, write-back
// overlaps the conversion, so the final fsync of an atomic output waits only for the
// tail instead of the whole file (the kernel would otherwise keep gigabytes dirty).
func writeback(w io.Writer) func(off, n int64) {
	f, ok := w.(interface {
		SyscallConn() (syscall.RawConn, error)
		Stat() (os.FileInfo, error)
	})
	if !ok {
		return nil
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	return func(off, n int64) {
		rc.Control(func(fd uintptr) {
			unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE) // advisory: errors surface at fsync
		})
	}
}
