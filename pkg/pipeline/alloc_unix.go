//go:build unix

package pipeline

import "syscall"

// tryAlloc returns n zeroed bytes outside the Go heap (an anonymous
// mapping, whose pages cost nothing until written), so that release gives
// the memory back at once instead of leaving it to the garbage collector;
// nil when the system refuses the mapping.
func tryAlloc(n int) []byte { return mmap(n, 0) }

// allocFilled is tryAlloc with every page mapped at once (MAP_POPULATE on
// Linux): for output buffers, which are written whole, one call costs less
// than a page fault per page.
func allocFilled(n int) []byte { return mmap(n, populate) }

func mmap(n, flags int) []byte {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE|flags)
	if err != nil {
		return nil
	}
	return b
}

// release gives back a buffer from alloc or tryAlloc. Unmapping a heap
// fallback fails harmlessly (syscall.Munmap knows only its own mappings).
func release(b []byte) {
	syscall.Munmap(b[:cap(b)])
}
