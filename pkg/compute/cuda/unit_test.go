package cuda

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/lorakit/lorakit/kernels"
	"github.com/lorakit/lorakit/pkg/compute"
)

func TestParamKind(t *testing.T) {
	for _, c := range []struct {
		decl string
		kind argKind
		typ  string
	}{
		{"float* y", argPtr, "float*"},
		{"const float* __restrict__ x", argPtr, "const float*"},
		{"const unsigned short *w", argPtr, "const unsigned short *"},
		{"void* dst", argPtr, "void*"},
		{"int rows", argI32, "int"},
		{"unsigned int threshold", argU32, "unsigned int"},
		{"long long n", argI64, "long long"},
		{"unsigned long long key", argU64, "unsigned long long"},
		{"float scale", argF32, "float"},
		{"const float eps", argF32, "const float"},
		{"double s", argF64, "double"},
		{"\n\t  int\n  cols ", argI32, "int"},
	} {
		k, err := paramKind(c.decl)
		if err != nil || k != c.kind {
			t.Errorf("paramKind(%q) = %v, %v; want %v", c.decl, k, err, c.kind)
		}
		if got := paramType(c.decl); got != c.typ {
			t.Errorf("paramType(%q) = %q, want %q", c.decl, got, c.typ)
		}
	}
	for _, bad := range []string{"short s", "float", "size_t n", "char c"} {
		if _, err := paramKind(bad); err == nil {
			t.Errorf("paramKind(%q): no error", bad)
		}
	}
}

func TestParseRegistry(t *testing.T) {
	src := map[string]string{
		"a.cu": `// extern "C" __global__ void commented(int x) {}
/* extern "C" __global__ void block(int x) {} */
extern "C" __global__ void k1(float* x, long long n, float alpha) { }
extern "C"  __global__  void
k2(void) {}
extern "C" __global__ void k3() { __syncthreads(); }
template <typename T> __device__ __forceinline__ T sync_sum(T v) { __syncthreads(); return v; }
__device__ float indirect(float v) { return sync_sum<float>(v); }
__device__ float plain(float v);
extern "C" __global__ void __launch_bounds__(LK_T) k5(float* x) { x[0] = indirect(x[0]) + plain(1.f); }
#define LK_T 64`,
		"b.cu": `extern "C" __global__ void k4(const int* ids, unsigned long long key) {}`,
	}
	r, err := parseRegistry([]string{"a.cu", "b.cu"}, src)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.names(), " "); got != "k1 k2 k3 k4 k5" {
		t.Fatalf("kernels %q", got)
	}
	if k := r.kernels["k1"]; k.file != "a.cu" || fmt.Sprint(k.params) != "[pointer long long float]" {
		t.Errorf("k1: %+v", k)
	}
	if len(r.kernels["k2"].params) != 0 || len(r.kernels["k3"].params) != 0 {
		t.Error("k2/k3 have parameters")
	}
	if !needsBarrier(r.kernels["k3"]) || needsBarrier(r.kernels["k1"]) || !needsBarrier(r.kernels["k5"]) {
		t.Error("needsBarrier")
	}
	if k := r.kernels["k5"]; k.maxThreads != 64 || fmt.Sprint(k.params) != "[pointer]" {
		t.Errorf("k5: %+v", k)
	}
	if fmt.Sprint(r.byFile["b.cu"]) != "[k4]" {
		t.Errorf("byFile %v", r.byFile)
	}
	src["b.cu"] += "\n" + `extern "C" __global__ void k1(int x) {}`
	if _, err := parseRegistry([]string{"a.cu", "b.cu"}, src); err == nil || !strings.Contains(err.Error(), "k1") {
		t.Errorf("duplicate kernel: %v", err)
	}
	src["b.cu"] = `extern "C" __global__ void k5(short x) {}`
	if _, err := parseRegistry([]string{"b.cu"}, src); err == nil {
		t.Error("unsupported parameter type accepted")
	}
}

// TestRegistryEmbedded parses the real sources: every file has kernels and
// every kernel name is lk_-prefixed (the emulator's namespace).
func TestRegistryEmbedded(t *testing.T) {
	r, err := kernelRegistry()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.files) == 0 || len(r.files) != len(kernels.Sources()) {
		t.Fatalf("files %v", r.files)
	}
	for _, f := range r.files {
		if len(r.byFile[f]) == 0 {
			t.Errorf("%s defines no kernel", f)
		}
	}
	for n, k := range r.kernels {
		if !strings.HasPrefix(n, "lk_") || len(k.params) != len(k.types) {
			t.Errorf("kernel %s: %+v", n, k.params)
		}
	}
}

func FuzzParseRegistry(f *testing.F) {
	for _, n := range kernels.Sources() {
		s, _ := kernels.Read(n)
		f.Add(s)
	}
	f.Add(`extern "C" __global__ void k(float* x, int n) {}`)
	f.Add(`extern "C" __global__ void k(,) {}`)
	f.Add(`extern "C" __global__ void k(int) {}`)
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseRegistry([]string{"f.cu"}, map[string]string{"f.cu": s})
		if err != nil {
			return
		}
		for _, k := range r.kernels {
			if len(k.params) != len(k.types) || len(k.params) > 0 && k.params[0] == 0 {
				t.Fatalf("kernel %s: %v %v", k.name, k.params, k.types)
			}
		}
	})
}

// at reads the value a kernel parameter pointer points to.
func at[T any](p uintptr) T {
	return *(*T)(*(*unsafe.Pointer)(unsafe.Pointer(&p)))
}

func TestParamPack(t *testing.T) {
	var pk paramPack
	args := []arg{ptrArg(0xdeadbeef00), i32Arg(-7), u32Arg(0xfffffff0), i64Arg(-1 << 40), u64Arg(1<<63 + 5),
		f32Arg(-1.5), f64Arg(math.Pi), boolArg(true), boolArg(false)}
	pp := pk.pack(args)
	if pp != uintptr(unsafe.Pointer(&pk.ptrs[0])) || pk.n != len(args) {
		t.Fatal("pack returns the wrong array")
	}
	ptrs := pk.ptrs[:len(args)]
	if at[uint64](ptrs[0]) != 0xdeadbeef00 || at[int32](ptrs[1]) != -7 || at[uint32](ptrs[2]) != 0xfffffff0 ||
		at[int64](ptrs[3]) != -1<<40 || at[uint64](ptrs[4]) != 1<<63+5 || at[float32](ptrs[5]) != -1.5 ||
		at[float64](ptrs[6]) != math.Pi || at[int32](ptrs[7]) != 1 || at[int32](ptrs[8]) != 0 {
		t.Error("packed values do not read back")
	}
	for i := range args {
		if ptrs[i]%8 != 0 {
			t.Errorf("argument %d misaligned", i)
		}
	}
	if pk.pack(nil) != 0 {
		t.Error("no arguments: want a null array")
	}
	mustPanic(t, "too many", func() { pk.pack(make([]arg, maxParams+1)) })
	mustPanic(t, "int overflow", func() { i32Arg(1 << 31) })
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", what)
		}
	}()
	f()
}

func TestLaunchCheck(t *testing.T) {
	r, err := parseRegistry([]string{"a.cu"}, map[string]string{"a.cu": `extern "C" __global__ void k(float* x, long long n, float a) {}`})
	if err != nil {
		t.Fatal(err)
	}
	ok := launch{kernel: "k", grid: [3]uint32{1, 1, 1}, block: [3]uint32{256, 1, 1}, args: []arg{ptrArg(8), i64Arg(3), f32Arg(1)}}
	ok.check(r)
	for name, mut := range map[string]func(l *launch){
		"unknown kernel": func(l *launch) { l.kernel = "x" },
		"argument count": func(l *launch) { l.args = l.args[:2] },
		"argument kind":  func(l *launch) { l.args[1] = i32Arg(3) },
		"block too big":  func(l *launch) { l.block = [3]uint32{1024, 2, 1} },
		"empty block":    func(l *launch) { l.block = [3]uint32{0, 1, 1} },
		"grid y":         func(l *launch) { l.grid = [3]uint32{1, 70000, 1} },
		"shared":         func(l *launch) { l.shared = 64 << 10 },
	} {
		l := ok
		l.args = append([]arg(nil), ok.args...)
		mut(&l)
		mustPanic(t, name, func() { l.check(r) })
	}
}

func TestGridFor(t *testing.T) {
	for _, c := range []struct {
		n       int64
		threads int
		want    uint32
	}{{0, 256, 1}, {1, 256, 1}, {256, 256, 1}, {257, 256, 2}, {1 << 40, 256, maxGridElem}, {maxGridElem * 256, 256, maxGridElem}} {
		if got := gridFor(c.n, c.threads); got != c.want {
			t.Errorf("gridFor(%d, %d) = %d, want %d", c.n, c.threads, got, c.want)
		}
	}
	// The attention kernels fit the default shared memory up to the
	// largest head dimension they accept.
	for _, k := range []string{"fwd", "dq", "dkv"} {
		if s := attnShared(k, attnThreads*attnMaxR); s > maxStaticShared {
			t.Errorf("attention %s: %d bytes of shared memory", k, s)
		}
	}
}

func TestSizeClass(t *testing.T) {
	for _, c := range [][2]int{{0, 512}, {1, 512}, {512, 512}, {513, 1024}, {4000, 4096}, {1 << 20, 1 << 20},
		{1<<20 + 1, 2 << 20}, {5<<20 + 3, 6 << 20}, {64 << 20, 64 << 20}, {64<<20 + 1, 66 << 20}, {100 << 20, 100 << 20}} {
		if got := sizeClass(c[0]); got != c[1] {
			t.Errorf("sizeClass(%d) = %d, want %d", c[0], got, c[1])
		}
	}
	for n := 0; n < 70<<20; n = n*3/2 + 1 {
		if c := sizeClass(n); c < n || c > max(512, 2*n) {
			t.Errorf("sizeClass(%d) = %d", n, c)
		}
	}
}

func TestPool(t *testing.T) {
	be, dev := newHostBackend(t, nil)
	a, _ := be.Alloc(compute.F32, 1000)
	pa := be.get(a).ptr()
	be.Free(a)
	be.Free(a)                         // a second Free is harmless
	b, _ := be.Alloc(compute.F32, 900) // same class: the block comes back
	if be.get(b).ptr() != pa {
		t.Error("the pool did not reuse a freed block")
	}
	mustPanic(t, "use after free", func() { be.Zero(a) })
	v := be.View(b, 10, 20)
	be.Free(v) // a view: nothing freed
	be.Zero(v)
	inUse, cached := be.MemoryInUse()
	if inUse != 4096+512 || cached != 0 {
		t.Errorf("in use %d, cached %d", inUse, cached)
	}
	c, _ := be.Alloc(compute.F32, 5000)
	be.Free(c)
	// Peaks: 4096 + 512 + 32768 in use at most, all of it still reserved.
	if st := be.MemoryStats(); st.InUse != 4096+512 || st.Peak != 4096+512+32768 || st.Reserved != st.Peak ||
		st.PeakReserved != st.Peak {
		t.Errorf("memory stats %+v", st)
	}
	be.ResetPeakMemory()
	if st := be.MemoryStats(); st.Peak != 4096+512 || st.PeakReserved != st.Reserved {
		t.Errorf("after a reset: %+v", st)
	}
	// An exhausted device: the pool releases its cache and tries again.
	dev.failNext = fmt.Errorf("cuMemAlloc: %w", compute.ErrOutOfMemory)
	n := len(dev.allocs)
	if _, err := be.Alloc(compute.F32, 100000); err != nil {
		t.Fatal(err)
	}
	if _, cached := be.MemoryInUse(); cached != 0 || len(dev.allocs) != n {
		t.Errorf("after an out-of-memory retry: cached %d, allocations %d (was %d)", cached, len(dev.allocs), n)
	}
	// Out of memory for real is reported, not sticky.
	dev.failNext = compute.ErrOutOfMemory
	if _, err := be.Alloc(compute.F32, 100); !errors.Is(err, compute.ErrOutOfMemory) {
		t.Errorf("out of memory: %v", err)
	}
	if err := be.Sync(); err != nil {
		t.Errorf("out of memory became sticky: %v", err)
	}
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	mustPanic(t, "use after Close", func() { be.Sync() })
}

// failingDevice fails launches after n of them.
type failingDevice struct {
	*hostDevice
	n int
}

func (f *failingDevice) launch(l *launch) error {
	if f.n == 0 {
		return errors.New("injected launch failure")
	}
	f.n--
	return f.hostDevice.launch(l)
}

func TestStickyError(t *testing.T) {
	reg, _ := kernelRegistry()
	dev := &failingDevice{hostDevice: newHostDevice(reg, nil)}
	be, err := newBackend(dev, reg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	x, _ := be.Alloc(compute.F32, 10)
	be.Upload(x, make([]float32, 10))
	be.Scale(x, 2)
	err = be.Sync()
	if !errors.Is(err, compute.ErrDevice) || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("Sync after a failed launch: %v", err)
	}
	dev.n = 100
	be.Scale(x, 2) // not queued
	if got := dev.launches["lk_scale_f32"]; got != 0 {
		t.Errorf("%d launches after a sticky error", got)
	}
	if err := be.Download(make([]float32, 10), x); !errors.Is(err, compute.ErrDevice) {
		t.Errorf("Download after a sticky error: %v", err)
	}
	if _, err := be.Alloc(compute.F32, 1); !errors.Is(err, compute.ErrDevice) {
		t.Errorf("Alloc after a sticky error: %v", err)
	}
}

// TestErrorFlags: what kernels flag in the error word comes out of Sync.
func TestErrorFlags(t *testing.T) {
	for _, c := range []struct {
		flags uint32
		want  string
	}{{errEmbedding, "embedding id"}, {errRope, "rope position"}, {errTarget, "target"}, {errSegments, "segment"},
		{errEmbedding | errTarget, "embedding id outside the table, a cross-entropy target"}, {64, "0x40"}} {
		be, dev := newHostBackend(t, nil)
		if err := dev.htod(be.flags.ptr(), []byte{byte(c.flags), 0, 0, 0}); err != nil {
			t.Fatal(err)
		}
		err := be.Sync()
		if !errors.Is(err, compute.ErrDevice) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("flags %#x: %v", c.flags, err)
		}
	}
	be, _ := newHostBackend(t, nil)
	if err := be.Sync(); err != nil {
		t.Errorf("clean Sync: %v", err)
	}
}

func TestColMajor(t *testing.T) {
	for _, c := range []struct {
		p    compute.Gemm
		want gemmCall
	}{
		{compute.Gemm{M: 2, N: 3, K: 4}, gemmCall{opA: cublasOpN, opB: cublasOpN, m: 3, n: 2, k: 4, lda: 3, ldb: 4, ldc: 3}},
		{compute.Gemm{M: 2, N: 3, K: 4, TransA: true}, gemmCall{opA: cublasOpN, opB: cublasOpT, m: 3, n: 2, k: 4, lda: 3, ldb: 2, ldc: 3}},
		{compute.Gemm{M: 2, N: 3, K: 4, TransB: true}, gemmCall{opA: cublasOpT, opB: cublasOpN, m: 3, n: 2, k: 4, lda: 4, ldb: 4, ldc: 3}},
		{compute.Gemm{M: 2, N: 3, K: 4, TransA: true, TransB: true}, gemmCall{opA: cublasOpT, opB: cublasOpT, m: 3, n: 2, k: 4, lda: 4, ldb: 2, ldc: 3}},
	} {
		a, b, cc := dense(c.p, 1, 2, 3, compute.BF16, compute.F32, compute.F32)
		g := colMajor(c.p, a, b, cc, 1)
		w := c.want
		w.a, w.b, w.c, w.aType, w.bType, w.cType, w.batch = 2, 1, 3, cudaR32F, cudaR16BF, cudaR32F, 1
		if g != w {
			t.Errorf("%+v:\n got %v\nwant %v", c.p, &g, &w)
		}
	}
	// Strided operands (the attention chunks): leading dimensions and batch
	// strides follow their matrix, B's to cuBLAS's A.
	p := compute.Gemm{M: 5, N: 7, K: 16, TransB: true, Alpha: 0.5}
	g := colMajor(p, operand{ptr: 10, dt: compute.BF16, ld: 128, stride: 64},
		operand{ptr: 20, dt: compute.BF16, ld: 32, stride: 16}, operand{ptr: 30, dt: compute.F32, ld: 7, stride: 35}, 2)
	w := gemmCall{opA: cublasOpT, opB: cublasOpN, m: 7, n: 5, k: 16, alpha: 0.5, a: 20, aType: cudaR16BF, lda: 32,
		b: 10, bType: cudaR16BF, ldb: 128, c: 30, cType: cudaR32F, ldc: 7, batch: 2, strideA: 16, strideB: 64, strideC: 35}
	if g != w {
		t.Errorf("strided:\n got %v\nwant %v", &g, &w)
	}
}

func TestAdamWScalars(t *testing.T) {
	h := compute.AdamW{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: 3}
	decay, w1, b2, w2, step, bc2s, eps, wd := adamWScalars(h)
	if decay != float32(1-1e-5) || w1 != float32(0.1) || b2 != 0.999 || w2 != float32(1-0.999) || !wd || eps != 1e-8 ||
		step != float32(-(1e-3/(1-math.Pow(0.9, 3)))) || bc2s != float32(math.Sqrt(1-math.Pow(0.999, 3))) {
		t.Errorf("scalars %v %v %v %v %v %v %v %v", decay, w1, b2, w2, step, bc2s, eps, wd)
	}
}

func TestCacheKey(t *testing.T) {
	src := map[string]string{"a.cu": "A", "common.cuh": "H", "x.cuh": "X"}
	base := cacheKey("a.cu", src, []string{"common.cuh", "x.cuh"}, []string{"--gpu-architecture=sm_90"}, 13000, "13.0")
	if base != cacheKey("a.cu", src, []string{"x.cuh", "common.cuh"}, []string{"--gpu-architecture=sm_90"}, 13000, "13.0") {
		t.Error("the key depends on the order of the headers")
	}
	seen := map[string]string{base: "base"}
	for name, k := range map[string]string{
		"source":  cacheKey("a.cu", map[string]string{"a.cu": "A2", "common.cuh": "H", "x.cuh": "X"}, []string{"common.cuh", "x.cuh"}, []string{"--gpu-architecture=sm_90"}, 13000, "13.0"),
		"header":  cacheKey("a.cu", map[string]string{"a.cu": "A", "common.cuh": "H2", "x.cuh": "X"}, []string{"common.cuh", "x.cuh"}, []string{"--gpu-architecture=sm_90"}, 13000, "13.0"),
		"arch":    cacheKey("a.cu", src, []string{"common.cuh", "x.cuh"}, []string{"--gpu-architecture=sm_80"}, 13000, "13.0"),
		"driver":  cacheKey("a.cu", src, []string{"common.cuh", "x.cuh"}, []string{"--gpu-architecture=sm_90"}, 12080, "13.0"),
		"nvrtc":   cacheKey("a.cu", src, []string{"common.cuh", "x.cuh"}, []string{"--gpu-architecture=sm_90"}, 13000, "12.8"),
		"file":    cacheKey("b.cu", map[string]string{"b.cu": "A", "common.cuh": "H", "x.cuh": "X"}, []string{"common.cuh", "x.cuh"}, []string{"--gpu-architecture=sm_90"}, 13000, "13.0"),
		"framing": cacheKey("a.cu", map[string]string{"a.cu": "A", "common.cuh": "H", "x.cuh": "X"}, []string{"common.cuh", "x.cuh"}, []string{"--gpu-", "architecture=sm_90"}, 13000, "13.0"),
	} {
		if prev, dup := seen[k]; dup {
			t.Errorf("changing the %s gives the key of %s", name, prev)
		}
		seen[k] = name
	}
	p := cachePath("/c", "attention.cu", base, "cubin")
	if !strings.HasPrefix(p, "/c/attention-") || !strings.HasSuffix(p, ".cubin") {
		t.Errorf("cachePath %s", p)
	}
}

func TestWriteCache(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sub", "cuda")
	p := filepath.Join(dir, "k.cubin")
	if _, ok := readCache(p); ok {
		t.Fatal("empty cache hit")
	}
	for _, data := range []string{"first image", "second"} {
		if err := writeCache(p, []byte(data)); err != nil {
			t.Fatal(err)
		}
		if got, ok := readCache(p); !ok || string(got) != data {
			t.Errorf("read %q, %v; want %q", got, ok, data)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	if err := writeCache(filepath.Join(p, "x"), []byte("y")); err == nil {
		t.Error("writing under a file succeeded")
	}
}

func TestChooseTarget(t *testing.T) {
	for _, c := range []struct {
		cc        int
		supported []int
		opt       string
		cubin, ok bool
	}{
		{90, nil, "--gpu-architecture=sm_90", true, true},
		{90, []int{75, 80, 86, 89, 90, 100}, "--gpu-architecture=sm_90", true, true},
		{120, []int{75, 80, 90}, "--gpu-architecture=compute_90", false, true},
		{70, []int{75, 80}, "", false, false},
	} {
		opt, cubin, ok := chooseTarget(c.cc, c.supported)
		if opt != c.opt || cubin != c.cubin || ok != c.ok {
			t.Errorf("chooseTarget(%d, %v) = %q %v %v", c.cc, c.supported, opt, cubin, ok)
		}
	}
}

func TestLibDirs(t *testing.T) {
	env := map[string]string{"LORAKIT_CUDA_LIBS": "/x/lib:/y/lib", "CUDA_HOME": "/opt/cuda"}
	dirs := libDirs([]string{"/first", "/x/lib"}, func(k string) string { return env[k] })
	if len(dirs) < 6 || dirs[0] != "/first" || dirs[1] != "/x/lib" || dirs[2] != "/y/lib" || dirs[3] != "/opt/cuda/lib64" {
		t.Errorf("dirs %v", dirs)
	}
	seen := map[string]bool{}
	for _, d := range dirs {
		if seen[d] {
			t.Errorf("%s twice", d)
		}
		seen[d] = true
	}
	if !seen["/usr/local/cuda/lib64"] {
		t.Error("no /usr/local/cuda/lib64")
	}
	c := candidates([]string{"libcublas.so.13", "libcublas.so.12"}, []string{"/a", "/b"}, func(p string) bool { return p == "/b/libcublas.so.12" })
	if strings.Join(c, " ") != "libcublas.so.13 libcublas.so.12 /b/libcublas.so.12" {
		t.Errorf("candidates %v", c)
	}
}

func TestDefaultCacheDir(t *testing.T) {
	t.Setenv("LORAKIT_CUDA_CACHE", "/tmp/k")
	if d := defaultCacheDir(); d != "/tmp/k" {
		t.Errorf("with LORAKIT_CUDA_CACHE: %s", d)
	}
	t.Setenv("LORAKIT_CUDA_CACHE", "")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if d := defaultCacheDir(); d != filepath.Join("/xdg", "lorakit", "cuda") && d != "off" {
		t.Errorf("default %s", d)
	}
}

func TestBF16Rounding(t *testing.T) {
	for _, c := range []struct {
		f float32
		h uint16
	}{{1, 0x3f80}, {1 + 1.0/256, 0x3f80}, {1 + 3.0/256, 0x3f82}, {-2, 0xc000}, {float32(math.Inf(1)), 0x7f80}} {
		if got := toBF16(c.f); got != c.h {
			t.Errorf("toBF16(%v) = %#x, want %#x", c.f, got, c.h)
		}
		if fromBF16(c.h) != math.Float32frombits(uint32(c.h)<<16) {
			t.Error("fromBF16")
		}
	}
	if h := toBF16(float32(math.NaN())); fromBF16(h) == fromBF16(h) {
		t.Error("NaN does not stay NaN")
	}
}
