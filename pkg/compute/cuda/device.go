package cuda

import (
	"errors"
	"time"

	"github.com/lorakit/lorakit/pkg/compute"
)

// device is what the Backend needs from a GPU: raw memory, copies on the
// backend's stream, kernel launches, cuBLAS GEMMs and synchronization. The
// CUDA implementation (cudaDevice) marshals every call to its device worker;
// the tests use a host-memory fake. Errors are returned as they happen; the
// Backend makes them sticky.
type device interface {
	// info describes the device for Backend.Name.
	info() string
	// details describes the device, the libraries and the kernel build, one
	// item a line.
	details() string
	// describe returns the device's properties.
	describe() compute.Device
	// memAlloc returns bytes of uninitialized device memory; an exhausted
	// device returns an error wrapping compute.ErrOutOfMemory.
	memAlloc(bytes int) (uintptr, error)
	memFree(p uintptr) error
	// memset zeroes bytes at p (stream-ordered).
	memset(p uintptr, bytes int) error
	// htod copies src to p (stream-ordered; src may be reused on return).
	htod(p uintptr, src []byte) error
	// dtoh waits for pending work and copies from p into dst.
	dtoh(dst []byte, p uintptr) error
	// dtod copies bytes from src to dst (stream-ordered).
	dtod(dst, src uintptr, bytes int) error
	// launch runs a kernel of the embedded sources (stream-ordered).
	launch(l *launch) error
	// gemm runs one cuBLAS GemmEx or GemmStridedBatchedEx (stream-ordered).
	gemm(g *gemmCall) error
	// sync waits for pending work.
	sync() error
	// elapsed runs f and returns the device time between events recorded
	// before and after it.
	elapsed(f func()) (time.Duration, error)
	// close releases the device; pending work is waited for.
	close() error
}

// errClosed reports use of a closed backend.
var errClosed = errors.New("cuda: backend is closed")
