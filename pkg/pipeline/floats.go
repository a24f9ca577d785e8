package pipeline

import "unsafe"

// Floats returns n zeroed float32 values outside the Go heap where the
// system allows (an anonymous mapping): a tool's one large work matrix
// then costs its size, not up to twice that while the garbage collector
// waits for the heap to double, and FreeFloats gives it back at once.
func Floats(n int) []float32 {
	if n == 0 {
		return nil
	}
	b := tryAlloc(4 * n)
	if b == nil {
		return make([]float32, n)
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

// FreeFloats gives back values from Floats; they must not be used after.
func FreeFloats(f []float32) {
	if cap(f) == 0 {
		return
	}
	release(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), 4*cap(f)))
}
