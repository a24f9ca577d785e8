// Package term tells whether a file is a terminal. It imports nothing of
// lorakit, so every layer may use it.
package term

import "os"

// IsTerminal reports whether f is a terminal: a character device that
// answers the terminal ioctl (/dev/null is a character device but not one).
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0 && isTTY(f)
}
