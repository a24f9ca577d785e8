//go:build !unix

package pipeline

// tryAlloc returns n zeroed bytes.
func tryAlloc(n int) []byte { return make([]byte, n) }

// allocFilled returns n zeroed bytes.
func allocFilled(n int) []byte { return make([]byte, n) }

// release drops a buffer (the garbage collector frees it).
func release([]byte) {}
