//go:build !linux

package merge

// releaseMapped is a no-op where madvise is not used.
func releaseMapped([]byte) {}

// peakRSS is unknown outside Linux.
func peakRSS() int64 { return 0 }

// populateMapped is a no-op where madvise is not used.
func populateMapped([]byte) {}
