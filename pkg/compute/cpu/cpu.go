// Package cpu is the pure-Go reference implementation of compute.Backend.
//
// It defines the meaning of every operation, runs on every platform and is
// parallel across cores. Work is split into pieces whose arithmetic does not
// depend on the split, so results are identical whatever the thread count.
// Hot loops run the kernels of internal/kernels for the CPU tier chosen at
// start (see internal/kernels/tier; LORAKIT_CPU forces one).
package cpu

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/lorakit/lorakit/internal/kernels/tier"
	"github.com/lorakit/lorakit/pkg/compute"
)

// Backend is the CPU compute backend.
type Backend struct {
	threads int
}

var _ compute.Backend = (*Backend)(nil)

// New returns a CPU backend using up to threads goroutines for one operation;
// threads ≤ 0 means runtime.GOMAXPROCS(0).
func New(threads int) *Backend {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	return &Backend{threads: threads}
}

// Threads returns the number of goroutines one operation may use.
func (be *Backend) Threads() int { return be.threads }

// Name implements compute.Backend.
func (be *Backend) Name() string {
	return fmt.Sprintf("cpu (%d threads, %s)", be.threads, tier.Describe())
}

// buf is the CPU Buffer: exactly one of f, h, i, u is used, by dtype.
type buf struct {
	dt compute.DType
	f  []float32
	h  []uint16
	i  []int32
	u  []byte
}

func (b *buf) Len() int {
	switch b.dt {
	case compute.BF16:
		return len(b.h)
	case compute.I32:
		return len(b.i)
	case compute.U8:
		return len(b.u)
	}
	return len(b.f)
}

func (b *buf) DType() compute.DType { return b.dt }

// NewBuffer wraps host memory as an F32 buffer without copying. The backend
// reads and writes s directly.
func NewBuffer(s []float32) compute.Buffer { return &buf{dt: compute.F32, f: s} }

// Float32s returns the memory of an F32 buffer of this package (no copy).
func Float32s(b compute.Buffer) []float32 { return f32(b) }

func get(b compute.Buffer) *buf {
	c, ok := b.(*buf)
	if !ok {
		panic(fmt.Sprintf("cpu: buffer %T does not belong to the cpu backend", b))
	}
	return c
}

func f32(b compute.Buffer) []float32 {
	c := get(b)
	if c.dt != compute.F32 {
		panic(fmt.Sprintf("cpu: want an F32 buffer, have %v", c.dt))
	}
	return c.f
}

func i32(b compute.Buffer) []int32 {
	c := get(b)
	if c.dt != compute.I32 {
		panic(fmt.Sprintf("cpu: want an I32 buffer, have %v", c.dt))
	}
	return c.i
}

func need(name string, have, want int) {
	if have != want {
		panic(fmt.Sprintf("cpu: %s has %d elements, want %d", name, have, want))
	}
}

func u8(b compute.Buffer) []byte {
	c := get(b)
	if c.dt != compute.U8 {
		panic(fmt.Sprintf("cpu: want a U8 buffer, have %v", c.dt))
	}
	return c.u
}

func needAtLeast(name string, have, want int) {
	if have < want {
		panic(fmt.Sprintf("cpu: %s has %d elements, want at least %d", name, have, want))
	}
}

// Alloc implements compute.Backend.
func (be *Backend) Alloc(dt compute.DType, n int) (compute.Buffer, error) {
	if n < 0 {
		panic("cpu: negative allocation")
	}
	switch dt {
	case compute.F32:
		return &buf{dt: dt, f: make([]float32, n)}, nil
	case compute.BF16:
		return &buf{dt: dt, h: make([]uint16, n)}, nil
	case compute.I32:
		return &buf{dt: dt, i: make([]int32, n)}, nil
	case compute.U8:
		return &buf{dt: dt, u: make([]byte, n)}, nil
	}
	panic(fmt.Sprintf("cpu: cannot allocate %v", dt))
}

// Free implements compute.Backend. Memory is reclaimed by the garbage collector.
func (be *Backend) Free(b compute.Buffer) {
	c := get(b)
	c.f, c.h, c.i, c.u = nil, nil, nil, nil
}

// View implements compute.Backend.
func (be *Backend) View(b compute.Buffer, off, n int) compute.Buffer {
	c := get(b)
	if off < 0 || n < 0 || off+n > c.Len() {
		panic(fmt.Sprintf("cpu: view [%d:%d] of a buffer of %d elements", off, off+n, c.Len()))
	}
	v := &buf{dt: c.dt}
	switch c.dt {
	case compute.F32:
		v.f = c.f[off : off+n : off+n]
	case compute.BF16:
		v.h = c.h[off : off+n : off+n]
	case compute.I32:
		v.i = c.i[off : off+n : off+n]
	case compute.U8:
		v.u = c.u[off : off+n : off+n]
	}
	return v
}

// Upload implements compute.Backend.
func (be *Backend) Upload(dst compute.Buffer, src []float32) {
	c := get(dst)
	need("upload destination", c.Len(), len(src))
	switch c.dt {
	case compute.F32:
		copy(c.f, src)
	case compute.BF16:
		for i, x := range src {
			c.h[i] = toBF16(x)
		}
	default:
		panic("cpu: Upload into a non-float buffer")
	}
}

// UploadInt32 implements compute.Backend.
func (be *Backend) UploadInt32(dst compute.Buffer, src []int32) {
	d := i32(dst)
	need("upload destination", len(d), len(src))
	copy(d, src)
}

// UploadBytes implements compute.Backend.
func (be *Backend) UploadBytes(dst compute.Buffer, src []byte) {
	d := u8(dst)
	need("upload destination", len(d), len(src))
	copy(d, src)
}

// Download implements compute.Backend.
func (be *Backend) Download(dst []float32, src compute.Buffer) error {
	c := get(src)
	need("download destination", len(dst), c.Len())
	switch c.dt {
	case compute.F32:
		copy(dst, c.f)
	case compute.BF16:
		for i, h := range c.h {
			dst[i] = fromBF16(h)
		}
	default:
		panic("cpu: Download from a non-float buffer")
	}
	return nil
}

// Zero implements compute.Backend.
func (be *Backend) Zero(b compute.Buffer) {
	c := get(b)
	clear(c.f)
	clear(c.h)
	clear(c.i)
	clear(c.u)
}

// Copy implements compute.Backend.
func (be *Backend) Copy(dst, src compute.Buffer) {
	d, s := get(dst), get(src)
	if d.dt != s.dt {
		panic("cpu: Copy between dtypes")
	}
	need("copy destination", d.Len(), s.Len())
	copy(d.f, s.f)
	copy(d.h, s.h)
	copy(d.i, s.i)
	copy(d.u, s.u)
}

// Convert implements compute.Backend.
func (be *Backend) Convert(dst, src compute.Buffer) {
	d, s := get(dst), get(src)
	need("convert destination", d.Len(), s.Len())
	switch {
	case d.dt == s.dt && (d.dt == compute.F32 || d.dt == compute.BF16):
		be.Copy(dst, src)
	case d.dt == compute.BF16 && s.dt == compute.F32:
		be.parallel(len(s.f), elemGrain, func(lo, hi int) {
			for i, x := range s.f[lo:hi] {
				d.h[lo+i] = toBF16(x)
			}
		})
	case d.dt == compute.F32 && s.dt == compute.BF16:
		be.parallel(len(s.h), elemGrain, func(lo, hi int) {
			for i, x := range s.h[lo:hi] {
				d.f[lo+i] = fromBF16(x)
			}
		})
	default:
		panic(fmt.Sprintf("cpu: Convert from %v to %v", s.dt, d.dt))
	}
}

// Sync implements compute.Backend; the CPU backend is synchronous.
func (be *Backend) Sync() error { return nil }

// fromBF16 widens a bfloat16 to float32 (exact).
func fromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// toBF16 rounds a float32 to bfloat16, to nearest even; NaN stays NaN.
func toBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x40
	}
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// parallel splits [0, n) into at most be.threads contiguous ranges of at
// least grain elements and runs fn on each concurrently.
func (be *Backend) parallel(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	parts := min(be.threads, (n+grain-1)/grain)
	if parts <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for p := range parts {
		lo, hi := n*p/parts, n*(p+1)/parts
		if p == parts-1 {
			fn(lo, hi)
			continue
		}
		wg.Go(func() { fn(lo, hi) })
	}
	wg.Wait()
}

// tasks runs fn(i) for i in [0, n) on up to be.threads goroutines taking
// tasks in order from a shared counter. worker identifies the goroutine
// (0 ≤ worker < be.threads) so fn can use per-worker scratch memory.
func (be *Backend) tasks(n int, fn func(worker, i int)) {
	workers := min(be.threads, n)
	if workers <= 1 {
		for i := range n {
			fn(0, i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		run := func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(w, i)
			}
		}
		if w == workers-1 {
			run()
			continue
		}
		wg.Go(run)
	}
	wg.Wait()
}
