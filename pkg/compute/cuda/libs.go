package cuda

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Shared libraries, in the order tried.
var (
	driverLibs = []string{"libcuda.so.1", "libcuda.so"}
	cublasLibs = []string{"libcublas.so.13", "libcublas.so.12"}
	nvrtcLibs  = []string{"libnvrtc.so.13", "libnvrtc.so.12"}
	// nvrtcCompileOnlyLibs are accepted by CompileKernels, which needs no
	// driver: CUDA 11.8's NVRTC (soname 11.2), as Debian ships it.
	nvrtcCompileOnlyLibs = []string{"libnvrtc.so.11.2"}
)

// libDirs returns the folders searched for the libraries after the dynamic
// linker's own search: extra, $LORAKIT_CUDA_LIBS, $CUDA_HOME, $CUDA_PATH and
// the usual install locations, without duplicates.
func libDirs(extra []string, getenv func(string) string) []string {
	var dirs []string
	seen := map[string]bool{}
	add := func(d string) {
		if d == "" || seen[d] {
			return
		}
		seen[d] = true
		dirs = append(dirs, d)
	}
	for _, d := range extra {
		add(d)
	}
	for _, d := range filepath.SplitList(getenv("LORAKIT_CUDA_LIBS")) {
		add(d)
	}
	target := "x86_64-linux"
	if runtime.GOARCH == "arm64" {
		target = "sbsa-linux"
	}
	for _, env := range []string{"CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"} {
		if r := getenv(env); r != "" {
			add(filepath.Join(r, "lib64"))
			add(filepath.Join(r, "lib"))
			add(filepath.Join(r, "targets", target, "lib"))
		}
	}
	for _, d := range []string{"/usr/local/cuda/lib64", "/usr/local/cuda/targets/" + target + "/lib",
		"/usr/local/nvidia/lib64", "/usr/local/nvidia/lib", "/usr/lib/" + strings.Replace(target, "sbsa", "aarch64", 1) + "-gnu",
		"/usr/lib64", "/usr/lib/wsl/lib"} {
		add(d)
	}
	return dirs
}

// systemSearch lets the dynamic linker search for the libraries by name
// before the folders of libDirs (the tests turn it off to load fakes).
var systemSearch = true

// candidates lists what to dlopen for one library: each name alone (the
// dynamic linker's search) and then in each folder that has it.
func candidates(names, dirs []string, exists func(string) bool) []string {
	var c []string
	for _, n := range names {
		if systemSearch {
			c = append(c, n)
		}
		for _, d := range dirs {
			if p := filepath.Join(d, n); exists(p) {
				c = append(c, p)
			}
		}
	}
	return c
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
