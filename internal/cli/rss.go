package cli

import (
	"fmt"
	"os"
	"strings"
)

// PeakRSS returns the process's peak resident set size in bytes (VmHWM of
// /proc/self/status), or 0 where it is unknown.
func PeakRSS() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	_, rest, ok := strings.Cut(string(b), "VmHWM:")
	var kb int64
	if ok {
		fmt.Sscan(rest, &kb)
	}
	return kb << 10
}
