//go:build !(linux && (amd64 || arm64))

package cuda

import (
	"fmt"
	"runtime"
)

// openDevice: the backend reaches the driver only on linux/amd64 and
// linux/arm64.
func openDevice(Options, *registry) (device, error) {
	return nil, fmt.Errorf("%w: not supported on %s/%s", ErrUnavailable, runtime.GOOS, runtime.GOARCH)
}

// compileKernels: NVRTC is reached only on linux/amd64 and linux/arm64.
func compileKernels(Options, []int) (*CompileReport, error) {
	return nil, fmt.Errorf("%w: not supported on %s/%s", ErrUnavailable, runtime.GOOS, runtime.GOARCH)
}
