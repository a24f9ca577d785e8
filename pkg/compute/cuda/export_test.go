package cuda

import "testing"

// NewEmulated returns a backend whose device is the host emulation: the
// kernels of kernels/*.cu compiled by clang as host C++ (see emu_test.go),
// cuBLAS a column-major reference. It skips the test without clang.
func NewEmulated(t testing.TB, opt Options) *Backend {
	emu, err := sharedEmulator()
	if err != nil {
		t.Skipf("no kernel emulator: %v", err)
	}
	be, _ := newHostBackend(t, emu)
	be.opt = opt
	return be
}
