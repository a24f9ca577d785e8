//go:build linux && (amd64 || arm64)

package cuda

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"github.com/ebitengine/purego"
)

// NVRTC entry points.
type nvrtcAPI struct {
	version, errorString, createProgram, compileProgram, destroyProgram uintptr
	logSize, log, cubinSize, cubin, ptxSize, ptx, numArchs, archs       uintptr
}

func (n *nvrtcAPI) symbols() map[*uintptr][]string {
	return map[*uintptr][]string{
		&n.version: {"nvrtcVersion"}, &n.errorString: {"nvrtcGetErrorString"},
		&n.createProgram: {"nvrtcCreateProgram"}, &n.compileProgram: {"nvrtcCompileProgram"},
		&n.destroyProgram: {"nvrtcDestroyProgram"}, &n.logSize: {"nvrtcGetProgramLogSize"},
		&n.log: {"nvrtcGetProgramLog"}, &n.cubinSize: {"nvrtcGetCUBINSize"}, &n.cubin: {"nvrtcGetCUBIN"},
		&n.ptxSize: {"nvrtcGetPTXSize"}, &n.ptx: {"nvrtcGetPTX"},
		&n.numArchs: {"?nvrtcGetNumSupportedArchs"}, &n.archs: {"?nvrtcGetSupportedArchs"},
	}
}

// nvrtc is an opened NVRTC library: the compiler of the kernels, with or
// without a device.
type nvrtc struct {
	api     nvrtcAPI
	lib     *lib
	version string // "13.0"
	archs   []int  // supported architectures (nil: unknown)
}

// openNVRTC loads the first of names that loads, from the dynamic linker's
// search or dirs, and asks it its version and architectures.
func openNVRTC(names, dirs []string) (*nvrtc, error) {
	l, err := openLib(names, dirs, []string{"libnvrtc-builtins.so.1[123]*"})
	if err != nil {
		return nil, err
	}
	n := &nvrtc{lib: l}
	if err := l.bind(n.api.symbols()); err != nil {
		return nil, err
	}
	var major, minor int32
	if err := n.err("nvrtcVersion", call(n.api.version, uintptr(unsafe.Pointer(&major)), uintptr(unsafe.Pointer(&minor)))); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	n.version = fmt.Sprintf("%d.%d", major, minor)
	if n.api.numArchs != 0 && n.api.archs != 0 {
		var c int32
		if call(n.api.numArchs, uintptr(unsafe.Pointer(&c))) == 0 && c > 0 && c < 1024 {
			a := make([]int32, c)
			if call(n.api.archs, uintptr(unsafe.Pointer(&a[0]))) == 0 {
				for _, x := range a {
					n.archs = append(n.archs, int(x))
				}
			}
		}
	}
	return n, nil
}

func (n *nvrtc) err(op string, r uint32) error {
	if r == 0 {
		return nil
	}
	e := &cuError{lib: "NVRTC", op: op, code: r}
	rs, _, _ := purego.SyscallN(n.api.errorString, uintptr(r))
	e.msg = goString(rs)
	return e
}

// compile runs NVRTC on file of reg, with every header of the registry
// available, and returns the CUBIN (or PTX) and the program log.
func (n *nvrtc) compile(reg *registry, file string, opts []string, cubin bool) (img []byte, log string, err error) {
	headers := headerNames(reg)
	var hsrc, hname [][]byte
	var hsrcp, hnamep []uintptr
	for _, h := range headers {
		hsrc = append(hsrc, cstr(reg.sources[h]))
		hname = append(hname, cstr(h))
	}
	for i := range headers {
		hsrcp = append(hsrcp, uintptr(unsafe.Pointer(&hsrc[i][0])))
		hnamep = append(hnamep, uintptr(unsafe.Pointer(&hname[i][0])))
	}
	src, name := cstr(reg.sources[file]), cstr(file)
	var hs, hn uintptr
	if len(headers) > 0 {
		hs, hn = uintptr(unsafe.Pointer(&hsrcp[0])), uintptr(unsafe.Pointer(&hnamep[0]))
	}
	var prog uintptr
	r := call(n.api.createProgram, uintptr(unsafe.Pointer(&prog)), uintptr(unsafe.Pointer(&src[0])),
		uintptr(unsafe.Pointer(&name[0])), uintptr(len(headers)), hs, hn)
	runtime.KeepAlive(hsrc)
	runtime.KeepAlive(hname)
	runtime.KeepAlive(hsrcp)
	runtime.KeepAlive(hnamep)
	if err := n.err("nvrtcCreateProgram", r); err != nil {
		return nil, "", err
	}
	defer call(n.api.destroyProgram, uintptr(unsafe.Pointer(&prog)))
	var ob [][]byte
	var op []uintptr
	for _, o := range opts {
		ob = append(ob, cstr(o))
	}
	for i := range ob {
		op = append(op, uintptr(unsafe.Pointer(&ob[i][0])))
	}
	r = call(n.api.compileProgram, prog, uintptr(len(op)), uintptr(unsafe.Pointer(&op[0])))
	runtime.KeepAlive(ob)
	runtime.KeepAlive(op)
	var size uintptr
	if call(n.api.logSize, prog, uintptr(unsafe.Pointer(&size))) == 0 && size > 1 {
		b := make([]byte, size)
		if call(n.api.log, prog, uintptr(unsafe.Pointer(&b[0]))) == 0 {
			log = strings.TrimRight(string(b), "\x00\n")
		}
	}
	if r != 0 {
		err := n.err("nvrtcCompileProgram", r)
		if log != "" {
			err = fmt.Errorf("%w: %s (%s): %s", err, file, strings.Join(opts, " "), log)
		}
		return nil, log, err
	}
	sizeFn, getFn, what := n.api.ptxSize, n.api.ptx, "PTX"
	if cubin {
		sizeFn, getFn, what = n.api.cubinSize, n.api.cubin, "CUBIN"
	}
	if err := n.err("nvrtcGet"+what+"Size", call(sizeFn, prog, uintptr(unsafe.Pointer(&size)))); err != nil {
		return nil, log, err
	}
	if size == 0 {
		return nil, log, fmt.Errorf("cuda: NVRTC produced an empty %s for %s", what, file)
	}
	img = make([]byte, size)
	if err := n.err("nvrtcGet"+what, call(getFn, prog, uintptr(unsafe.Pointer(&img[0])))); err != nil {
		return nil, log, err
	}
	return img, log, nil
}

// compileKernels is CompileKernels on this platform.
func compileKernels(opt Options, archs []int) (*CompileReport, error) {
	reg, err := kernelRegistry()
	if err != nil {
		return nil, err
	}
	n, err := openNVRTC(append(append([]string(nil), nvrtcLibs...), nvrtcCompileOnlyLibs...), libDirs(opt.LibDirs, os.Getenv))
	if err != nil {
		return nil, err
	}
	rep := &CompileReport{NVRTC: n.version, Library: n.lib.path, Supported: n.archs}
	for _, arch := range archs {
		opts := append(nvrtcOptions(fmt.Sprintf("--gpu-architecture=sm_%d", arch)), "--ptxas-options=--verbose")
		for _, file := range reg.files {
			_, log, err := n.compile(reg, file, opts, true)
			if err != nil {
				return rep, fmt.Errorf("sm_%d: %w", arch, err)
			}
			ks, err := parsePtxasReport(log, file, arch)
			if err != nil {
				return rep, fmt.Errorf("sm_%d: %s: %w", arch, file, err)
			}
			for i := range ks {
				ks[i].MaxThreads = reg.kernels[ks[i].Kernel].maxThreads
			}
			rep.Kernels = append(rep.Kernels, ks...)
		}
	}
	return rep, nil
}
