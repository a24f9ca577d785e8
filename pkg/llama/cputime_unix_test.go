//go:build unix

package llama

import (
	"syscall"
	"time"
)

// cpuTime returns the user+system CPU time of the process, for benchmark
// metrics that do not depend on other load on the machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
