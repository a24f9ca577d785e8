//go:build !linux

package merge

// releaseMapped is a no-op where madvise is not used.
func releaseMapped([]byte) {}

// populateMapped is a no-op where madvise is not used.
func populateMapped([]byte) {}
