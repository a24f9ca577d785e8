//go:build linux && (amd64 || arm64)

package cuda

import (
	"fmt"
	"os"
	"os/exec"
	"sync"

	"github.com/ebitengine/purego"
)

// emulator runs kernel launches through the library of buildEmulatorLib.
type emulator struct {
	fn      uintptr
	index   map[string]int
	barrier map[string]bool
	params  paramPack
}

var (
	emuOnce sync.Once
	emuInst *emulator
	emuErr  error
	emuDir  string
)

// clangPath returns the clang of the compile checks, or "" when absent.
func clangPath() string {
	for _, c := range []string{"clang-14", "clang"} {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	return ""
}

// sharedEmulator builds the emulator once per test binary; nil with a
// reason when clang is missing.
func sharedEmulator() (*emulator, error) {
	emuOnce.Do(func() {
		clang := clangPath()
		if clang == "" {
			emuErr = fmt.Errorf("clang-14 not on PATH")
			return
		}
		r, err := kernelRegistry()
		if err != nil {
			emuErr = err
			return
		}
		if emuDir, err = os.MkdirTemp("", "lorakit-cuda-emu-"); err != nil {
			emuErr = err
			return
		}
		so, names, err := buildEmulatorLib(clang, emuDir, "lk_emu.so", "", r)
		if err != nil {
			emuErr = fmt.Errorf("building the emulator: %w", err)
			return
		}
		h, err := purego.Dlopen(so, purego.RTLD_NOW|purego.RTLD_LOCAL)
		if err != nil {
			emuErr = err
			return
		}
		fn, err := purego.Dlsym(h, "lk_emu_launch")
		if err != nil {
			emuErr = err
			return
		}
		e := &emulator{fn: fn, index: map[string]int{}, barrier: map[string]bool{}}
		for i, n := range names {
			e.index[n] = i
			e.barrier[n] = needsBarrier(r.kernels[n])
		}
		emuInst = e
	})
	return emuInst, emuErr
}

func cleanupEmulator() {
	if emuDir != "" {
		os.RemoveAll(emuDir)
	}
}

func (e *emulator) run(l *launch) error {
	k, ok := e.index[l.kernel]
	if !ok {
		return fmt.Errorf("emulator: no kernel %s", l.kernel)
	}
	bar := uintptr(0)
	if e.barrier[l.kernel] {
		bar = 1
	}
	params := e.params.pack(l.args)
	r, _, _ := purego.SyscallN(e.fn, uintptr(k), uintptr(l.grid[0]), uintptr(l.grid[1]), uintptr(l.grid[2]),
		uintptr(l.block[0]), uintptr(l.block[1]), uintptr(l.block[2]), uintptr(l.shared), params, bar)
	if int32(r) != 0 {
		return fmt.Errorf("emulator: launch of %s failed (%d)", l.kernel, int32(r))
	}
	return nil
}
