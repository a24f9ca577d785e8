//go:build linux && (amd64 || arm64)

package cuda

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/lorakit/lorakit/pkg/compute"
)

// call invokes the C function fn. Pointers converted to uintptr in the call
// expression stay alive and in place for the call (go:uintptrescapes moves
// their objects to the heap). Every argument is an integer or a pointer.
//
//go:uintptrescapes
func call(fn uintptr, args ...uintptr) uint32 {
	r, _, _ := purego.SyscallN(fn, args...)
	return uint32(r)
}

// lib is an opened shared library.
type lib struct {
	handle uintptr
	path   string
}

// openLib dlopens the first candidate of names that loads. Before each
// candidate from a folder it loads, globally and best effort, the companion
// libraries matching the patterns in that folder (cuBLAS needs cuBLASLt,
// NVRTC its builtins), so that their sonames resolve even when the folder is
// not on the dynamic linker's path.
func openLib(names, dirs, companions []string) (*lib, error) {
	var tried []string
	for _, c := range candidates(names, dirs, fileExists) {
		if strings.Contains(c, "/") {
			for _, pat := range companions {
				ms, _ := filepath.Glob(filepath.Join(filepath.Dir(c), pat))
				for _, m := range ms {
					purego.Dlopen(m, purego.RTLD_NOW|purego.RTLD_GLOBAL)
				}
			}
		}
		h, err := purego.Dlopen(c, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err == nil {
			p := c
			if !strings.Contains(c, "/") {
				p = c + " (system search path)"
			}
			return &lib{handle: h, path: p}, nil
		}
		tried = append(tried, err.Error())
	}
	return nil, fmt.Errorf("%w: cannot load %s: %s", ErrUnavailable, strings.Join(names, " or "), strings.Join(tried, "; "))
}

// bind resolves symbols: each entry is a pointer to fill and the names to
// try in order; names starting with '?' are optional.
func (l *lib) bind(syms map[*uintptr][]string) error {
	for dst, names := range syms {
		optional := strings.HasPrefix(names[0], "?")
		for _, n := range names {
			n = strings.TrimPrefix(n, "?")
			if p, err := purego.Dlsym(l.handle, n); err == nil && p != 0 {
				*dst = p
				break
			}
		}
		if *dst == 0 && !optional {
			return fmt.Errorf("%w: %s has no symbol %s", ErrUnavailable, l.path, names[0])
		}
	}
	return nil
}

// goString copies the NUL-terminated C string at p.
func goString(p uintptr) string {
	if p == 0 {
		return ""
	}
	ptr := *(*unsafe.Pointer)(unsafe.Pointer(&p))
	var b []byte
	for i := 0; i < 4096; i++ {
		c := *(*byte)(unsafe.Add(ptr, i))
		if c == 0 {
			break
		}
		b = append(b, c)
	}
	return string(b)
}

// cstr returns s as a NUL-terminated byte slice.
func cstr(s string) []byte { return append([]byte(s), 0) }

// Driver API entry points (cuda.h; _v2 names as exported since CUDA 3.2/11).
type driverAPI struct {
	init, driverGetVersion, deviceGetCount, deviceGet, deviceGetName, deviceGetAttribute, deviceTotalMem uintptr
	primaryCtxRetain, primaryCtxRelease, ctxSetCurrent                                                   uintptr
	memAlloc, memFree, memGetInfo, memcpyHtoD, memcpyDtoH, memcpyDtoD, memsetD8                          uintptr
	moduleLoadData, moduleGetFunction, moduleUnload, launchKernel                                        uintptr
	streamCreate, streamSynchronize, streamDestroy                                                       uintptr
	eventCreate, eventRecord, eventSynchronize, eventElapsedTime, eventDestroy                           uintptr
	getErrorString, getErrorName                                                                         uintptr
}

func (d *driverAPI) symbols() map[*uintptr][]string {
	return map[*uintptr][]string{
		&d.init: {"cuInit"}, &d.driverGetVersion: {"cuDriverGetVersion"},
		&d.deviceGetCount: {"cuDeviceGetCount"}, &d.deviceGet: {"cuDeviceGet"},
		&d.deviceGetName: {"cuDeviceGetName"}, &d.deviceGetAttribute: {"cuDeviceGetAttribute"},
		&d.deviceTotalMem:   {"cuDeviceTotalMem_v2"},
		&d.primaryCtxRetain: {"cuDevicePrimaryCtxRetain"}, &d.primaryCtxRelease: {"cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease"},
		&d.ctxSetCurrent: {"cuCtxSetCurrent"},
		&d.memAlloc:      {"cuMemAlloc_v2"}, &d.memFree: {"cuMemFree_v2"}, &d.memGetInfo: {"cuMemGetInfo_v2"},
		&d.memcpyHtoD: {"cuMemcpyHtoDAsync_v2"}, &d.memcpyDtoH: {"cuMemcpyDtoHAsync_v2"},
		&d.memcpyDtoD: {"cuMemcpyDtoDAsync_v2"}, &d.memsetD8: {"cuMemsetD8Async"},
		&d.moduleLoadData: {"cuModuleLoadData"}, &d.moduleGetFunction: {"cuModuleGetFunction"},
		&d.moduleUnload: {"cuModuleUnload"}, &d.launchKernel: {"cuLaunchKernel"},
		&d.streamCreate: {"cuStreamCreate"}, &d.streamSynchronize: {"cuStreamSynchronize"},
		&d.streamDestroy: {"cuStreamDestroy_v2", "cuStreamDestroy"},
		&d.eventCreate:   {"cuEventCreate"}, &d.eventRecord: {"cuEventRecord"},
		&d.eventSynchronize: {"cuEventSynchronize"}, &d.eventElapsedTime: {"cuEventElapsedTime", "cuEventElapsedTime_v2"},
		&d.eventDestroy:   {"cuEventDestroy_v2", "cuEventDestroy"},
		&d.getErrorString: {"cuGetErrorString"}, &d.getErrorName: {"cuGetErrorName"},
	}
}

// cuBLAS entry points.
type cublasAPI struct {
	create, destroy, setStream, setMathMode, gemmEx, gemmStridedBatchedEx, getVersion, statusString uintptr
}

func (b *cublasAPI) symbols() map[*uintptr][]string {
	return map[*uintptr][]string{
		&b.create: {"cublasCreate_v2"}, &b.destroy: {"cublasDestroy_v2"}, &b.setStream: {"cublasSetStream_v2"},
		&b.setMathMode: {"cublasSetMathMode"}, &b.gemmEx: {"cublasGemmEx"},
		&b.gemmStridedBatchedEx: {"cublasGemmStridedBatchedEx"},
		&b.getVersion:           {"?cublasGetVersion_v2"}, &b.statusString: {"?cublasGetStatusString"},
	}
}

// CUresult values the backend tells apart.
const (
	cuSuccess        = 0
	cuOutOfMemory    = 2
	cuNotInitialized = 3
	cuNoDevice       = 100
)

// Device attributes (CUdevice_attribute).
const (
	attrMultiprocessors = 16
	attrCCMajor         = 75
	attrCCMinor         = 76
)

// cuError is a failed driver, cuBLAS or NVRTC call.
type cuError struct {
	lib  string // "driver", "cuBLAS", "NVRTC"
	op   string
	code uint32
	name string
	msg  string
}

func (e *cuError) Error() string {
	s := fmt.Sprintf("cuda: %s %s: error %d", e.lib, e.op, e.code)
	if e.name != "" {
		s += " " + e.name
	}
	if e.msg != "" {
		s += ": " + e.msg
	}
	return s
}

// Is makes a driver out-of-memory error match compute.ErrOutOfMemory and
// every other error compute.ErrDevice.
func (e *cuError) Is(target error) bool {
	if target == compute.ErrOutOfMemory {
		return e.lib == "driver" && e.code == cuOutOfMemory
	}
	return target == compute.ErrDevice
}

// worker runs closures on one goroutine locked to its OS thread, the thread
// on which the device's context is current.
type worker struct {
	ch chan func()
}

func startWorker() *worker {
	w := &worker{ch: make(chan func())}
	go func() {
		// Never unlocked: the thread ends with the goroutine (Close), with
		// the context still current on it.
		runtime.LockOSThread()
		for f := range w.ch {
			f()
		}
	}()
	return w
}

// do runs f on the worker and waits for it; a panic in f is re-raised here.
func (w *worker) do(f func()) {
	done := make(chan any, 1)
	w.ch <- func() {
		defer func() { done <- recover() }()
		f()
	}
	if v := <-done; v != nil {
		panic(v)
	}
}

func (w *worker) stop() { close(w.ch) }

// cudaDevice is the device of the CUDA driver.
type cudaDevice struct {
	w    *worker
	drv  driverAPI
	blas cublasAPI
	rtc  *nvrtc
	libs [3]*lib
	reg  *registry

	ordinal              int
	dev                  uintptr // CUdevice
	ctx, stream, handle  uintptr
	ccMajor, ccMinor     int
	sms                  int
	totalMem             uint64
	name                 string
	driverVer            int
	nvrtcVer, cublasVer  string
	target               string // NVRTC --gpu-architecture option
	cubin                bool
	cacheDir             string
	cacheHits, compiled  int
	modules              []uintptr
	funcs                map[string]uintptr
	params               *paramPack
	alpha, beta          *float32
	primaryCtx, finished bool
}

// openDevice loads the libraries, opens device opt.Device and compiles the
// kernels. Every failure wraps ErrUnavailable.
func openDevice(opt Options, reg *registry) (dev device, err error) {
	d := &cudaDevice{reg: reg, ordinal: opt.Device, funcs: map[string]uintptr{}, params: &paramPack{},
		alpha: new(float32), beta: new(float32), cacheDir: opt.CacheDir}
	dirs := libDirs(opt.LibDirs, os.Getenv)
	if d.libs[0], err = openLib(driverLibs, dirs, nil); err != nil {
		return nil, fmt.Errorf("%w (is the NVIDIA driver installed?)", err)
	}
	if err := d.libs[0].bind(d.drv.symbols()); err != nil {
		return nil, err
	}
	d.w = startWorker()
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	d.w.do(func() { err = d.openContext() })
	if err != nil {
		return nil, err
	}
	if d.libs[1], err = openLib(cublasLibs, dirs, []string{"libcublasLt.so.1[23]*"}); err != nil {
		return nil, err
	}
	if err := d.libs[1].bind(d.blas.symbols()); err != nil {
		return nil, err
	}
	if d.rtc, err = openNVRTC(nvrtcLibs, dirs); err != nil {
		return nil, err
	}
	d.libs[2] = d.rtc.lib
	d.w.do(func() { err = d.openCublas() })
	if err != nil {
		return nil, err
	}
	if err := d.loadKernels(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *cudaDevice) cuErr(op string, r uint32) error {
	if r == cuSuccess {
		return nil
	}
	e := &cuError{lib: "driver", op: op, code: r}
	var s uintptr
	if d.drv.getErrorName != 0 && call(d.drv.getErrorName, uintptr(r), uintptr(unsafe.Pointer(&s))) == cuSuccess {
		e.name = goString(s)
	}
	if d.drv.getErrorString != 0 && call(d.drv.getErrorString, uintptr(r), uintptr(unsafe.Pointer(&s))) == cuSuccess {
		e.msg = goString(s)
	}
	return e
}

// openContext initializes the driver and makes the device's primary
// context current on the worker thread, with one stream. Worker only.
func (d *cudaDevice) openContext() error {
	unavailable := func(err error) error { return fmt.Errorf("%w: %w", ErrUnavailable, err) }
	if err := d.cuErr("cuInit", call(d.drv.init, 0)); err != nil {
		return unavailable(err)
	}
	var v, n int32
	if err := d.cuErr("cuDriverGetVersion", call(d.drv.driverGetVersion, uintptr(unsafe.Pointer(&v)))); err != nil {
		return unavailable(err)
	}
	d.driverVer = int(v)
	if err := d.cuErr("cuDeviceGetCount", call(d.drv.deviceGetCount, uintptr(unsafe.Pointer(&n)))); err != nil {
		return unavailable(err)
	}
	if n == 0 {
		return fmt.Errorf("%w: no CUDA device", ErrUnavailable)
	}
	if d.ordinal < 0 || d.ordinal >= int(n) {
		return fmt.Errorf("%w: device %d requested, %d present", ErrUnavailable, d.ordinal, n)
	}
	var dev int32
	if err := d.cuErr("cuDeviceGet", call(d.drv.deviceGet, uintptr(unsafe.Pointer(&dev)), uintptr(d.ordinal))); err != nil {
		return unavailable(err)
	}
	d.dev = uintptr(dev)
	attr := func(a int) int {
		var x int32
		if d.cuErr("cuDeviceGetAttribute", call(d.drv.deviceGetAttribute, uintptr(unsafe.Pointer(&x)), uintptr(a), d.dev)) != nil {
			return 0
		}
		return int(x)
	}
	d.ccMajor, d.ccMinor, d.sms = attr(attrCCMajor), attr(attrCCMinor), attr(attrMultiprocessors)
	name := make([]byte, 256)
	if call(d.drv.deviceGetName, uintptr(unsafe.Pointer(&name[0])), uintptr(len(name)), d.dev) == cuSuccess {
		if i := strings.IndexByte(string(name), 0); i >= 0 {
			name = name[:i]
		}
		d.name = string(name)
	}
	var total uint64
	if call(d.drv.deviceTotalMem, uintptr(unsafe.Pointer(&total)), d.dev) == cuSuccess {
		d.totalMem = total
	}
	if err := d.cuErr("cuDevicePrimaryCtxRetain", call(d.drv.primaryCtxRetain, uintptr(unsafe.Pointer(&d.ctx)), d.dev)); err != nil {
		return unavailable(err)
	}
	d.primaryCtx = true
	if err := d.cuErr("cuCtxSetCurrent", call(d.drv.ctxSetCurrent, d.ctx)); err != nil {
		return unavailable(err)
	}
	const nonBlocking = 1 // CU_STREAM_NON_BLOCKING
	if err := d.cuErr("cuStreamCreate", call(d.drv.streamCreate, uintptr(unsafe.Pointer(&d.stream)), nonBlocking)); err != nil {
		return unavailable(err)
	}
	return nil
}

func (d *cudaDevice) blasErr(op string, r uint32) error {
	if r == 0 {
		return nil
	}
	e := &cuError{lib: "cuBLAS", op: op, code: r}
	if d.blas.statusString != 0 {
		r, _, _ := purego.SyscallN(d.blas.statusString, uintptr(r))
		e.msg = goString(r)
	}
	return e
}

// openCublas creates the cuBLAS handle on the stream. Worker only.
func (d *cudaDevice) openCublas() error {
	if err := d.blasErr("cublasCreate", call(d.blas.create, uintptr(unsafe.Pointer(&d.handle)))); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if err := d.blasErr("cublasSetStream", call(d.blas.setStream, d.handle, d.stream)); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if err := d.blasErr("cublasSetMathMode", call(d.blas.setMathMode, d.handle, cublasDefaultMath)); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if d.blas.getVersion != 0 {
		var v int32
		if call(d.blas.getVersion, d.handle, uintptr(unsafe.Pointer(&v))) == 0 {
			d.cublasVer = fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
		}
	}
	return nil
}

// loadKernels compiles (or reads from the cache) every kernel source and
// loads the modules.
func (d *cudaDevice) loadKernels() error {
	d.nvrtcVer = d.rtc.version
	archs := d.rtc.archs
	cc := d.ccMajor*10 + d.ccMinor
	var ok bool
	if d.target, d.cubin, ok = chooseTarget(cc, archs); !ok {
		return fmt.Errorf("%w: NVRTC %s supports no architecture at or below sm_%d (%v)", ErrUnavailable, d.nvrtcVer, cc, archs)
	}
	for _, file := range d.reg.files {
		image, cached, err := d.image(file)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		d.w.do(func() { err = d.loadModule(file, image) })
		if err != nil && cached {
			// A damaged cache entry: compile afresh once.
			d.cacheHits--
			os.Remove(d.cachePath(file))
			if image, err = d.compile(file); err == nil {
				d.w.do(func() { err = d.loadModule(file, image) })
			}
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	return nil
}

func (d *cudaDevice) options() []string { return nvrtcOptions(d.target) }

func (d *cudaDevice) cachePath(file string) string {
	ext := "ptx"
	if d.cubin {
		ext = "cubin"
	}
	return cachePath(d.cacheDir, file, cacheKey(file, d.reg.sources, headerNames(d.reg), d.options(), d.driverVer, d.nvrtcVer), ext)
}

// image returns the compiled module of file, from the cache when present
// (cached true).
func (d *cudaDevice) image(file string) (img []byte, cached bool, err error) {
	if d.cacheDir != "off" {
		if b, ok := readCache(d.cachePath(file)); ok {
			d.cacheHits++
			return b, true, nil
		}
	}
	b, err := d.compile(file)
	if err != nil {
		return nil, false, err
	}
	if d.cacheDir != "off" {
		// A cache that cannot be written costs time, not correctness.
		writeCache(d.cachePath(file), b)
	}
	return b, false, nil
}

// compile runs NVRTC on file with the options of d's target.
func (d *cudaDevice) compile(file string) ([]byte, error) {
	d.compiled++
	img, _, err := d.rtc.compile(d.reg, file, d.options(), d.cubin)
	return img, err
}

// loadModule loads image and looks up the kernels of file. Worker only.
func (d *cudaDevice) loadModule(file string, image []byte) error {
	if !d.cubin && image[len(image)-1] != 0 {
		image = append(image, 0) // PTX is a C string
	}
	var mod uintptr
	r := call(d.drv.moduleLoadData, uintptr(unsafe.Pointer(&mod)), uintptr(unsafe.Pointer(&image[0])))
	runtime.KeepAlive(image)
	if err := d.cuErr("cuModuleLoadData "+file, r); err != nil {
		return err
	}
	d.modules = append(d.modules, mod)
	for _, k := range d.reg.byFile[file] {
		var f uintptr
		n := cstr(k)
		if err := d.cuErr("cuModuleGetFunction "+k, call(d.drv.moduleGetFunction, uintptr(unsafe.Pointer(&f)), mod, uintptr(unsafe.Pointer(&n[0])))); err != nil {
			return err
		}
		d.funcs[k] = f
	}
	return nil
}

func (d *cudaDevice) info() string {
	return fmt.Sprintf("%s, sm_%d%d, %d SMs, %.1f GiB, driver %d.%d", d.name, d.ccMajor, d.ccMinor, d.sms,
		float64(d.totalMem)/(1<<30), d.driverVer/1000, d.driverVer%1000/10)
}

func (d *cudaDevice) describe() compute.Device {
	cc := d.ccMajor*10 + d.ccMinor
	return compute.Device{Name: d.name, ComputeCapability: cc, Multiprocessors: d.sms, Memory: int64(d.totalMem),
		BF16TensorCores: cc >= 80}
}

// details lists the device, the libraries and the kernel build.
func (d *cudaDevice) details() string {
	var b strings.Builder
	fmt.Fprintf(&b, "device %d: %s\n", d.ordinal, d.info())
	for i, what := range []string{"driver", "cuBLAS " + d.cublasVer, "NVRTC " + d.nvrtcVer} {
		if d.libs[i] != nil {
			fmt.Fprintf(&b, "%s: %s\n", what, d.libs[i].path)
		}
	}
	fmt.Fprintf(&b, "kernels: %s, %d sources, %d compiled, %d from cache %s\n", d.target, len(d.reg.files),
		d.compiled, d.cacheHits, d.cacheDir)
	return b.String()
}

func (d *cudaDevice) memAlloc(bytes int) (p uintptr, err error) {
	d.w.do(func() { err = d.cuErr("cuMemAlloc", call(d.drv.memAlloc, uintptr(unsafe.Pointer(&p)), uintptr(bytes))) })
	return p, err
}

func (d *cudaDevice) memFree(p uintptr) (err error) {
	d.w.do(func() { err = d.cuErr("cuMemFree", call(d.drv.memFree, p)) })
	return err
}

func (d *cudaDevice) memset(p uintptr, bytes int) (err error) {
	d.w.do(func() { err = d.cuErr("cuMemsetD8Async", call(d.drv.memsetD8, p, 0, uintptr(bytes), d.stream)) })
	return err
}

// htod copies from pageable memory: the driver stages src before the call
// returns, so src may be reused at once.
func (d *cudaDevice) htod(p uintptr, src []byte) (err error) {
	d.w.do(func() {
		err = d.cuErr("cuMemcpyHtoDAsync", call(d.drv.memcpyHtoD, p, uintptr(unsafe.Pointer(&src[0])), uintptr(len(src)), d.stream))
		runtime.KeepAlive(src)
	})
	return err
}

func (d *cudaDevice) dtoh(dst []byte, p uintptr) (err error) {
	d.w.do(func() {
		err = d.cuErr("cuMemcpyDtoHAsync", call(d.drv.memcpyDtoH, uintptr(unsafe.Pointer(&dst[0])), p, uintptr(len(dst)), d.stream))
		if err == nil {
			err = d.cuErr("cuStreamSynchronize", call(d.drv.streamSynchronize, d.stream))
		}
		runtime.KeepAlive(dst)
	})
	return err
}

func (d *cudaDevice) dtod(dst, src uintptr, bytes int) (err error) {
	d.w.do(func() { err = d.cuErr("cuMemcpyDtoDAsync", call(d.drv.memcpyDtoD, dst, src, uintptr(bytes), d.stream)) })
	return err
}

func (d *cudaDevice) launch(l *launch) (err error) {
	d.w.do(func() {
		f, ok := d.funcs[l.kernel]
		if !ok {
			err = fmt.Errorf("cuda: kernel %s is not loaded", l.kernel)
			return
		}
		params := d.params.pack(l.args)
		err = d.cuErr("cuLaunchKernel "+l.kernel, call(d.drv.launchKernel, f,
			uintptr(l.grid[0]), uintptr(l.grid[1]), uintptr(l.grid[2]),
			uintptr(l.block[0]), uintptr(l.block[1]), uintptr(l.block[2]),
			uintptr(l.shared), d.stream, params, 0))
		runtime.KeepAlive(d.params)
	})
	return err
}

func (d *cudaDevice) gemm(g *gemmCall) (err error) {
	d.w.do(func() {
		*d.alpha, *d.beta = g.alpha, g.beta
		alpha, beta := uintptr(unsafe.Pointer(d.alpha)), uintptr(unsafe.Pointer(d.beta))
		op := "cublasGemmEx"
		var r uint32
		if g.batch <= 1 {
			r = call(d.blas.gemmEx, d.handle, uintptr(g.opA), uintptr(g.opB), uintptr(g.m), uintptr(g.n), uintptr(g.k),
				alpha, g.a, uintptr(g.aType), uintptr(g.lda), g.b, uintptr(g.bType), uintptr(g.ldb),
				beta, g.c, uintptr(g.cType), uintptr(g.ldc), cublasCompute32F, gemmAlgoDefault)
		} else {
			op = "cublasGemmStridedBatchedEx"
			r = call(d.blas.gemmStridedBatchedEx, d.handle, uintptr(g.opA), uintptr(g.opB), uintptr(g.m), uintptr(g.n),
				uintptr(g.k), alpha, g.a, uintptr(g.aType), uintptr(g.lda), uintptr(g.strideA), g.b, uintptr(g.bType),
				uintptr(g.ldb), uintptr(g.strideB), beta, g.c, uintptr(g.cType), uintptr(g.ldc), uintptr(g.strideC),
				uintptr(g.batch), cublasCompute32F, gemmAlgoDefault)
		}
		if err = d.blasErr(op, r); err != nil {
			err = fmt.Errorf("%w: %v", err, g)
		}
	})
	return err
}

func (d *cudaDevice) sync() (err error) {
	d.w.do(func() { err = d.cuErr("cuStreamSynchronize", call(d.drv.streamSynchronize, d.stream)) })
	return err
}

func (d *cudaDevice) elapsed(f func()) (time.Duration, error) {
	var start, stop uintptr
	var err error
	d.w.do(func() {
		if err = d.cuErr("cuEventCreate", call(d.drv.eventCreate, uintptr(unsafe.Pointer(&start)), 0)); err != nil {
			return
		}
		if err = d.cuErr("cuEventCreate", call(d.drv.eventCreate, uintptr(unsafe.Pointer(&stop)), 0)); err != nil {
			return
		}
		err = d.cuErr("cuEventRecord", call(d.drv.eventRecord, start, d.stream))
	})
	defer d.w.do(func() {
		for _, e := range []uintptr{start, stop} {
			if e != 0 {
				call(d.drv.eventDestroy, e)
			}
		}
	})
	if err != nil {
		return 0, err
	}
	f()
	var ms float32
	d.w.do(func() {
		if err = d.cuErr("cuEventRecord", call(d.drv.eventRecord, stop, d.stream)); err != nil {
			return
		}
		if err = d.cuErr("cuEventSynchronize", call(d.drv.eventSynchronize, stop)); err != nil {
			return
		}
		err = d.cuErr("cuEventElapsedTime", call(d.drv.eventElapsedTime, uintptr(unsafe.Pointer(&ms)), start, stop))
	})
	return time.Duration(float64(ms) * float64(time.Millisecond)), err
}

// close releases everything openDevice acquired; it is safe on a partly
// opened device.
func (d *cudaDevice) close() error {
	if d.finished || d.w == nil {
		return nil
	}
	d.finished = true
	var errs []error
	d.w.do(func() {
		if d.stream != 0 {
			errs = append(errs, d.cuErr("cuStreamSynchronize", call(d.drv.streamSynchronize, d.stream)))
		}
		if d.handle != 0 {
			errs = append(errs, d.blasErr("cublasDestroy", call(d.blas.destroy, d.handle)))
		}
		for _, m := range d.modules {
			errs = append(errs, d.cuErr("cuModuleUnload", call(d.drv.moduleUnload, m)))
		}
		if d.stream != 0 {
			errs = append(errs, d.cuErr("cuStreamDestroy", call(d.drv.streamDestroy, d.stream)))
		}
		if d.primaryCtx {
			errs = append(errs, d.cuErr("cuDevicePrimaryCtxRelease", call(d.drv.primaryCtxRelease, d.dev)))
		}
	})
	d.w.stop()
	return errors.Join(errs...)
}
