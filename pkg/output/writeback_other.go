//go:build !linux

package output

import "os"

// startWriteback is a no-op outside Linux (see writeback_linux.go).
func startWriteback(*os.File, int64, int64) {}
