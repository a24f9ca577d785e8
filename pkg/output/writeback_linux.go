package output

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing back a byte range of f.
// Advisory: errors surface at the fsync that Commit does.
func startWriteback(f *os.File, off, n int64) {
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE) })
	}
}
