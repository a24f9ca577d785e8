//go:build linux

package merge

import (
	"os"
	"syscall"
	"unsafe"
)

var pageSize = uintptr(os.Getpagesize())

// releaseMapped drops the pages of b, a view of a read-only file mapping,
// from this process's resident set (MADV_DONTNEED): they stay in the page
// cache and would be read again on access. Only the whole pages inside b are
// released. b must not be anonymous (heap) memory.
func releaseMapped(b []byte) {
	if len(b) == 0 {
		return
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	lo := (start + pageSize - 1) &^ (pageSize - 1)
	hi := (start + uintptr(len(b))) &^ (pageSize - 1)
	if hi <= lo {
		return
	}
	syscall.Madvise(b[lo-start:hi-start], syscall.MADV_DONTNEED)
}

// populateMapped maps the pages of b, a view of a read-only file mapping,
// in one call (MADV_POPULATE_READ, Linux 5.14+), so that writing b to a
// file copies from resident pages instead of faulting them in one by one
// inside write(2). Errors (older kernels) are ignored: the write still works.
func populateMapped(b []byte) {
	if len(b) == 0 {
		return
	}
	const madvPopulateRead = 22
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	lo := start &^ (pageSize - 1)
	syscall.Syscall(syscall.SYS_MADVISE, lo, start+uintptr(len(b))-lo, madvPopulateRead)
}
