package cuda

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/lorakit/lorakit/pkg/compute"
)

// hostDevice is a device in host memory for the tests. Memory operations
// and cuBLAS GEMMs are carried out on the host (the GEMM by a column-major
// reference of cublasGemmEx, which checks colMajor's mapping). Kernel
// launches are validated (every pointer argument must lie in a live
// allocation) and counted; with an emulator (the kernels compiled by clang
// as host C++, see emu_test.go) they run, otherwise only the few kernels
// of hostKernels do.
type hostDevice struct {
	reg      *registry
	emu      *emulator
	mu       sync.Mutex
	allocs   map[uintptr][]uint64
	sizes    map[uintptr]int
	launches map[string]int
	gemms    int
	failNext error // returned by the next memAlloc
}

func newHostDevice(reg *registry, emu *emulator) *hostDevice {
	return &hostDevice{reg: reg, emu: emu, allocs: map[uintptr][]uint64{}, sizes: map[uintptr]int{},
		launches: map[string]int{}}
}

func (h *hostDevice) info() string    { return "host emulation" }
func (h *hostDevice) details() string { return "host emulation\n" }
func (h *hostDevice) describe() compute.Device {
	return compute.Device{Name: "host emulation", ComputeCapability: 90, Multiprocessors: 1, BF16TensorCores: true}
}

func (h *hostDevice) memAlloc(n int) (uintptr, error) {
	if err := h.failNext; err != nil {
		h.failNext = nil
		return 0, err
	}
	m := make([]uint64, (n+7)/8+1)
	for i := range m {
		m[i] = 0xa5a5a5a5a5a5a5a5 // garbage: Alloc must zero
	}
	p := uintptr(unsafe.Pointer(&m[0]))
	h.allocs[p], h.sizes[p] = m, n
	return p, nil
}

func (h *hostDevice) memFree(p uintptr) error {
	if _, ok := h.allocs[p]; !ok {
		return fmt.Errorf("host device: free of %#x, not an allocation", p)
	}
	delete(h.allocs, p)
	delete(h.sizes, p)
	return nil
}

// mem returns the n bytes at p, which must lie in one allocation.
func (h *hostDevice) mem(p uintptr, n int) []byte {
	for base, m := range h.allocs {
		if p >= base && p+uintptr(n) <= base+uintptr(h.sizes[base]) {
			b := unsafe.Slice((*byte)(unsafe.Pointer(&m[0])), 8*len(m))
			return b[p-base : p-base+uintptr(n)]
		}
	}
	panic(fmt.Sprintf("host device: %d bytes at %#x outside every allocation", n, p))
}

func (h *hostDevice) inside(p uintptr) bool {
	for base := range h.allocs {
		if p >= base && p < base+uintptr(h.sizes[base]) {
			return true
		}
	}
	return false
}

func (h *hostDevice) memset(p uintptr, n int) error { clear(h.mem(p, n)); return nil }
func (h *hostDevice) htod(p uintptr, src []byte) error {
	copy(h.mem(p, len(src)), src)
	return nil
}
func (h *hostDevice) dtoh(dst []byte, p uintptr) error { copy(dst, h.mem(p, len(dst))); return nil }
func (h *hostDevice) dtod(dst, src uintptr, n int) error {
	copy(h.mem(dst, n), h.mem(src, n))
	return nil
}
func (h *hostDevice) sync() error { return nil }
func (h *hostDevice) elapsed(f func()) (time.Duration, error) {
	t := time.Now()
	f()
	return time.Since(t), nil
}
func (h *hostDevice) close() error { return nil }

func (h *hostDevice) launch(l *launch) error {
	l.check(h.reg)
	for i, a := range l.args {
		if a.kind == argPtr && a.bits != 0 && !h.inside(uintptr(a.bits)) {
			return fmt.Errorf("host device: kernel %s argument %d: %#x is not device memory", l.kernel, i, a.bits)
		}
	}
	h.launches[l.kernel]++
	if h.emu != nil {
		return h.emu.run(l)
	}
	if f, ok := hostKernels[l.kernel]; ok {
		f(h, l.args)
	}
	return nil
}

// hostKernels are Go twins of the kernels that GEMM and Convert need, for
// hosts without clang.
var hostKernels = map[string]func(h *hostDevice, a []arg){
	"lk_bf16_to_f32": func(h *hostDevice, a []arg) {
		n := int(a[2].bits)
		dst, src := h.f32s(a[0], n), h.u16s(a[1], n)
		for i, v := range src {
			dst[i] = fromBF16(v)
		}
	},
	"lk_f32_to_bf16": func(h *hostDevice, a []arg) {
		n := int(a[2].bits)
		dst, src := h.u16s(a[0], n), h.f32s(a[1], n)
		for i, v := range src {
			dst[i] = toBF16(v)
		}
	},
	"lk_gemm_beta": func(h *hostDevice, a []arg) {
		n, beta := int(a[1].bits), math.Float32frombits(uint32(a[2].bits))
		scale := func(x float32) float32 {
			if beta == 0 {
				return 0
			}
			return x * beta
		}
		if a[3].bits&1 != 0 {
			c := h.u16s(a[0], n)
			for i := range c {
				c[i] = toBF16(scale(fromBF16(c[i])))
			}
			return
		}
		c := h.f32s(a[0], n)
		for i := range c {
			c[i] = scale(c[i])
		}
	},
}

func (h *hostDevice) f32s(a arg, n int) []float32 {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&h.mem(uintptr(a.bits), 4*n)[0])), n)
}

func (h *hostDevice) u16s(a arg, n int) []uint16 {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&h.mem(uintptr(a.bits), 2*n)[0])), n)
}

// gemm is a column-major reference of cublasGemmEx and
// cublasGemmStridedBatchedEx (f64 accumulation): for each batch member,
// C[i + j·ldc] = α·Σ_l opA(A)[i,l]·opB(B)[l,j] + β·C, with opA(A)[i,l] =
// A[i + l·lda] (N) or A[l + i·lda] (T); a bf16 C is rounded once.
func (h *hostDevice) gemm(g *gemmCall) error {
	h.gemms++
	batch := max(g.batch, 1)
	load := func(p uintptr, stride int64, typ, ld, op, rows, cols int) func(bi, i, l int) float64 {
		// The stored matrix is rows×cols (column-major) for N, cols×rows for T.
		sr, sc := rows, cols
		if op == cublasOpT {
			sr, sc = cols, rows
		}
		if ld < max(1, sr) {
			panic(fmt.Sprintf("host gemm: leading dimension %d < %d", ld, sr))
		}
		n := int(stride)*(batch-1) + (sc-1)*ld + sr
		var at func(k int) float64
		switch typ {
		case cudaR32F:
			v := h.f32s(arg{argPtr, uint64(p)}, n)
			at = func(k int) float64 { return float64(v[k]) }
		case cudaR16BF:
			v := h.u16s(arg{argPtr, uint64(p)}, n)
			at = func(k int) float64 { return float64(fromBF16(v[k])) }
		default:
			panic(fmt.Sprintf("host gemm: type %d", typ))
		}
		if op == cublasOpT {
			return func(bi, i, l int) float64 { return at(bi*int(stride) + l + i*ld) }
		}
		return func(bi, i, l int) float64 { return at(bi*int(stride) + i + l*ld) }
	}
	A := load(g.a, g.strideA, g.aType, g.lda, g.opA, g.m, g.k)
	B := load(g.b, g.strideB, g.bType, g.ldb, g.opB, g.k, g.n)
	if g.ldc < max(1, g.m) {
		panic("host gemm: ldc < m")
	}
	nc := int(g.strideC)*(batch-1) + (g.n-1)*g.ldc + g.m
	var getC func(k int) float64
	var setC func(k int, v float64)
	switch g.cType {
	case cudaR32F:
		C := h.f32s(arg{argPtr, uint64(g.c)}, nc)
		getC, setC = func(k int) float64 { return float64(C[k]) }, func(k int, v float64) { C[k] = float32(v) }
	case cudaR16BF:
		C := h.u16s(arg{argPtr, uint64(g.c)}, nc)
		getC = func(k int) float64 { return float64(fromBF16(C[k])) }
		setC = func(k int, v float64) { C[k] = toBF16(float32(v)) }
	default:
		panic(fmt.Sprintf("host gemm: C type %d", g.cType))
	}
	for bi := range batch {
		for j := range g.n {
			for i := range g.m {
				var s float64
				for l := range g.k {
					s += A(bi, i, l) * B(bi, l, j)
				}
				k := bi*int(g.strideC) + i + j*g.ldc
				v := float64(g.alpha) * s
				if g.beta != 0 {
					v += float64(g.beta) * getC(k)
				}
				setC(k, v)
			}
		}
	}
	return nil
}

// launched returns the kernels launched at least once, sorted.
func (h *hostDevice) launched() []string {
	var ks []string
	for k := range h.launches {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func newHostBackend(t testing.TB, emu *emulator) (*Backend, *hostDevice) {
	t.Helper()
	reg, err := kernelRegistry()
	if err != nil {
		t.Fatal(err)
	}
	dev := newHostDevice(reg, emu)
	be, err := newBackend(dev, reg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return be, dev
}
