package cuda

import (
	"fmt"
	"math"
	"unsafe"
)

// arg is one kernel argument: its kind and its bits (little-endian, in the
// low bytes for 4-byte kinds).
type arg struct {
	kind argKind
	bits uint64
}

func ptrArg(p uintptr) arg { return arg{argPtr, uint64(p)} }
func i32Arg(v int) arg     { return arg{argI32, uint64(uint32(checkI32(v)))} }
func u32Arg(v uint32) arg  { return arg{argU32, uint64(v)} }
func i64Arg(v int) arg     { return arg{argI64, uint64(int64(v))} }
func u64Arg(v uint64) arg  { return arg{argU64, v} }
func f32Arg(v float32) arg { return arg{argF32, uint64(math.Float32bits(v))} }
func f64Arg(v float64) arg { return arg{argF64, math.Float64bits(v)} }
func boolArg(v bool) arg {
	if v {
		return i32Arg(1)
	}
	return i32Arg(0)
}

func checkI32(v int) int32 {
	if v < math.MinInt32 || v > math.MaxInt32 {
		panic(fmt.Sprintf("cuda: %d does not fit a kernel's int parameter", v))
	}
	return int32(v)
}

// maxParams bounds the parameters of one kernel.
const maxParams = 32

// paramPack is the kernelParams array of cuLaunchKernel: ptrs[i] points to
// the value of argument i, held in vals[i]. One pack is reused by every
// launch of a device (launches are serialized on its worker); it lives on
// the heap, which Go does not move.
type paramPack struct {
	vals [maxParams]uint64
	ptrs [maxParams]uintptr
	n    int
}

// pack fills p from args and returns the address of the pointer array (0
// for a kernel without parameters).
func (p *paramPack) pack(args []arg) uintptr {
	if len(args) > maxParams {
		panic(fmt.Sprintf("cuda: %d kernel arguments, at most %d", len(args), maxParams))
	}
	p.n = len(args)
	for i, a := range args {
		p.vals[i] = a.bits
		p.ptrs[i] = uintptr(unsafe.Pointer(&p.vals[i]))
	}
	if len(args) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(&p.ptrs[0]))
}

// launch is one kernel launch.
type launch struct {
	kernel string
	grid   [3]uint32
	block  [3]uint32
	shared uint32 // dynamic shared memory, bytes
	args   []arg
}

// Launch limits every CUDA device since compute capability 3.0 honours.
const (
	maxBlockThreads = 1024
	maxGridX        = 1<<31 - 1
	maxGridYZ       = 65535
	maxStaticShared = 48 << 10 // dynamic shared memory without an opt-in
)

// check validates l against the kernel's signature in r: a mismatch is a
// programming error of this package and panics.
func (l *launch) check(r *registry) {
	sig, ok := r.kernels[l.kernel]
	if !ok {
		panic(fmt.Sprintf("cuda: no kernel %q in the embedded sources", l.kernel))
	}
	if len(l.args) != len(sig.params) {
		panic(fmt.Sprintf("cuda: kernel %s takes %d arguments, launched with %d", l.kernel, len(sig.params), len(l.args)))
	}
	for i, a := range l.args {
		if a.kind != sig.params[i] {
			panic(fmt.Sprintf("cuda: kernel %s argument %d is %v, launched with %v", l.kernel, i, sig.params[i], a.kind))
		}
	}
	threads := uint64(l.block[0]) * uint64(l.block[1]) * uint64(l.block[2])
	if threads == 0 || threads > maxBlockThreads || sig.maxThreads > 0 && threads > uint64(sig.maxThreads) {
		panic(fmt.Sprintf("cuda: kernel %s launched with a block of %d threads (launch bounds %d)", l.kernel, threads, sig.maxThreads))
	}
	if l.grid[0] == 0 || l.grid[1] == 0 || l.grid[2] == 0 || l.grid[0] > maxGridX || l.grid[1] > maxGridYZ || l.grid[2] > maxGridYZ {
		panic(fmt.Sprintf("cuda: kernel %s launched with a grid of %v", l.kernel, l.grid))
	}
	if l.shared > maxStaticShared {
		panic(fmt.Sprintf("cuda: kernel %s asks for %d bytes of shared memory", l.kernel, l.shared))
	}
}

// Threads of the launches (the .cu files' LK_* constants must agree; a test
// checks it).
const (
	elemThreads = 256 // grid-stride elementwise kernels
	redThreads  = 256 // LK_RED_THREADS: one-block-per-row reductions
	attnThreads = 128 // LK_ATTN_THREADS
	attnMaxR    = 8   // LK_ATTN_MAXR
	norm2Chunk  = 4096
	maxGridElem = 1 << 16 // blocks of a grid-stride launch
)

// gridFor returns the blocks of a grid-stride launch over n elements with
// threads per block: enough to cover n, at least 1, at most maxGridElem.
func gridFor(n int64, threads int) uint32 {
	if n <= 0 {
		return 1
	}
	b := (n + int64(threads) - 1) / int64(threads)
	return uint32(min(b, maxGridElem))
}

// attnShared returns the dynamic shared memory, in bytes, of the attention
// kernels for head dimension d: "fwd", "dq" or "dkv".
func attnShared(kind string, d int) uint32 {
	switch kind {
	case "fwd":
		return uint32(4 * (d + 2*attnThreads))
	case "dq":
		return uint32(4 * (2*d + attnThreads))
	case "dkv":
		return uint32(4 * (2*d + 2*attnThreads))
	}
	panic("cuda: attnShared " + kind)
}
