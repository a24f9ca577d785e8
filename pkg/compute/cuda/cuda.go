// Package cuda is the NVIDIA GPU implementation of compute.Backend, reached
// without cgo and without the CUDA SDK at build time.
//
// github.com/ebitengine/purego opens the driver (libcuda.so.1), cuBLAS
// (libcublas.so.13, then .12) and NVRTC (libnvrtc.so.13, then .12) at run
// time. The kernels of package kernels (kernels/*.cu) are compiled by NVRTC
// for the device's architecture when the backend starts and cached on disk
// under os.UserCacheDir()/lorakit/cuda, keyed by source, architecture, driver
// and NVRTC versions. One device-worker goroutine, locked to its OS thread,
// holds the device's primary context and makes every driver call; the
// backend's methods marshal their work to it. All work runs in order on one
// stream.
//
// Semantics are those of compute/cpu, within the conformance suite's
// tolerances: GEMMs run through cuBLAS with f32 accumulation
// (CUBLAS_COMPUTE_32F, no TF32): F32 operands in f32 arithmetic, BF16 ones
// on the tensor cores, a BF16 operand beside an F32 one widened exactly.
// The other kernels mirror the reference's arithmetic, with
// double-precision sums where it uses them and no floating-point atomics,
// so results are deterministic. The hot kernels take F32 or BF16 operands
// (mixed precision: widened on load, rounded once on store); attention on
// BF16 runs on the tensor cores in chunks of queries (attention.go). The
// dropout mask and FillUniform are bit-identical to compute's.
// Options.BF16Gemm trades exactness for tensor-core speed in mixed
// F32×BF16 products.
//
// Device memory comes from a caching allocator (pool.go) that reports its
// peaks (compute.MemoryReporter).
//
// When the driver, a library or a device is missing, New returns an error
// wrapping ErrUnavailable; it never panics and nothing happens at init.
// That error's class is errclass.Requirement (exit code 4 for --device cuda);
// --device auto falls back to the CPU backend.
package cuda

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"
	"unsafe"

	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/errclass"
)

// ErrUnavailable reports that no CUDA device can be used: the driver or a
// library is missing or too old, no device is present, or the kernels do not
// compile. The wrapped message says which.
var ErrUnavailable = errclass.New(errclass.Requirement, "cuda: unavailable")

// Options configure New; the zero value is the default.
type Options struct {
	// Device is the ordinal of the GPU (CUDA_VISIBLE_DEVICES applies).
	Device int
	// BF16Gemm runs GEMMs that mix an F32 and a BF16 operand on the tensor
	// cores, rounding the F32 operand to bf16 (f32 accumulation). Faster,
	// but no longer the reference's arithmetic: the conformance suite's f32
	// tolerances do not hold.
	BF16Gemm bool
	// AttentionChunk is the number of queries whose scores the bf16
	// attention computes at a time (0: chosen from the sequence length and
	// a 1 GiB budget for the scores; see Backend.Attention).
	AttentionChunk int
	// CacheDir holds compiled kernels. Empty: $LORAKIT_CUDA_CACHE, else
	// os.UserCacheDir()/lorakit/cuda. "off" disables the cache.
	CacheDir string
	// LibDirs are searched for the libraries after the dynamic linker's own
	// search, before $LORAKIT_CUDA_LIBS (colon-separated), $CUDA_HOME and
	// the usual install locations.
	LibDirs []string
}

// Backend is the CUDA compute backend. Its methods are not safe for
// concurrent use (compute.Backend); they may be called from any goroutine.
type Backend struct {
	dev    device
	reg    *registry
	pool   *pool
	opt    Options
	err    error   // sticky device error
	flags  *buffer // U32 error word the kernels set (errEmbedding, ...)
	closed bool
}

var (
	_ compute.Backend        = (*Backend)(nil)
	_ compute.MemoryReporter = (*Backend)(nil)
	_ compute.Describer      = (*Backend)(nil)
)

// Bits of the kernels' error word (common.cuh LK_ERR_*).
const (
	errEmbedding = 1
	errRope      = 2
	errTarget    = 4
	errSegments  = 8
)

// New opens device opt.Device. Without a usable GPU the error wraps
// ErrUnavailable.
func New(opt Options) (*Backend, error) {
	reg, err := kernelRegistry()
	if err != nil {
		return nil, err
	}
	if opt.CacheDir == "" {
		opt.CacheDir = defaultCacheDir()
	}
	dev, err := openDevice(opt, reg)
	if err != nil {
		return nil, err
	}
	be, err := newBackend(dev, reg, opt)
	if err != nil {
		dev.close()
		return nil, err
	}
	return be, nil
}

// newBackend builds a backend over dev (the tests pass a fake).
func newBackend(dev device, reg *registry, opt Options) (*Backend, error) {
	be := &Backend{dev: dev, reg: reg, pool: newPool(dev), opt: opt}
	f, err := be.Alloc(u32Type, 1)
	if err != nil {
		return nil, err
	}
	be.flags = f.(*buffer)
	return be, nil
}

// defaultCacheDir returns $LORAKIT_CUDA_CACHE or os.UserCacheDir()/lorakit/cuda
// ("off" when neither is known).
func defaultCacheDir() string {
	if d := os.Getenv("LORAKIT_CUDA_CACHE"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "off"
	}
	return d + string(os.PathSeparator) + "lorakit" + string(os.PathSeparator) + "cuda"
}

// Name implements compute.Backend.
func (be *Backend) Name() string { return "cuda (" + be.dev.info() + ")" }

// Details describes the device, the libraries loaded (with their paths)
// and the kernel build (target, cache), one item a line.
func (be *Backend) Details() string { return be.dev.details() }

// Close waits for pending work and releases the device: the memory of every
// buffer, the kernels, the stream and the context. The backend and its
// buffers are unusable afterwards.
func (be *Backend) Close() error {
	if be.closed {
		return nil
	}
	err := be.Sync()
	be.closed = true
	if e := be.pool.trim(); err == nil {
		err = e
	}
	if e := be.dev.close(); err == nil {
		err = e
	}
	return err
}

// MemoryInUse returns the bytes of device memory held by live buffers and
// the bytes cached by the pool for reuse.
func (be *Backend) MemoryInUse() (inUse, cached int) { return be.pool.inUse, be.pool.cached }

// MemoryStats implements compute.MemoryReporter: the caching allocator's
// bytes in use (buffers and in-flight scratch, in size classes), reserved
// from the driver, and their peaks. cuBLAS's own workspace is not counted.
func (be *Backend) MemoryStats() compute.MemoryStats {
	p := be.pool
	return compute.MemoryStats{InUse: int64(p.inUse), Peak: int64(p.peak), Reserved: int64(p.inUse + p.cached),
		PeakReserved: int64(p.peakReserved)}
}

// ResetPeakMemory implements compute.MemoryReporter.
func (be *Backend) ResetPeakMemory() { be.pool.resetPeak() }

// Device implements compute.Describer.
func (be *Backend) Device() compute.Device { return be.dev.describe() }

// TrimCache returns the pool's cached blocks to the driver.
func (be *Backend) TrimCache() error {
	be.live()
	return be.pool.trim()
}

// Time runs f, which queues work on the backend, and returns the device time
// it took, measured with CUDA events.
func (be *Backend) Time(f func()) (time.Duration, error) {
	be.live()
	d, err := be.dev.elapsed(f)
	be.fail(err)
	return d, err
}

func (be *Backend) live() {
	if be.closed {
		panic(errClosed)
	}
}

// fail records the first device error.
func (be *Backend) fail(err error) {
	if err != nil && be.err == nil {
		if !errors.Is(err, compute.ErrDevice) && !errors.Is(err, compute.ErrOutOfMemory) {
			err = fmt.Errorf("%w: %w", compute.ErrDevice, err)
		}
		be.err = err
	}
}

// ok reports whether device work may be queued (no sticky error).
func (be *Backend) ok() bool {
	be.live()
	return be.err == nil
}

// Sync implements compute.Backend. Besides driver errors it reports invalid
// data that kernels met (an embedding id, a rope position or a target out of
// range), which the CPU backend reports by panicking.
func (be *Backend) Sync() error {
	be.live()
	if be.err != nil {
		return be.err
	}
	var w [4]byte
	be.fail(be.dev.dtoh(w[:], be.flags.ptr()))
	if be.err != nil {
		return be.err
	}
	if f := uint32(w[0]) | uint32(w[1])<<8 | uint32(w[2])<<16 | uint32(w[3])<<24; f != 0 {
		be.fail(flagError(f))
	}
	return be.err
}

func flagError(f uint32) error {
	var what []string
	if f&errEmbedding != 0 {
		what = append(what, "an embedding id outside the table")
	}
	if f&errRope != 0 {
		what = append(what, "a rope position outside the table")
	}
	if f&errTarget != 0 {
		what = append(what, "a cross-entropy target ≥ vocab")
	}
	if f&errSegments != 0 {
		what = append(what, "attention segment ids that decrease")
	}
	if len(what) == 0 {
		what = append(what, fmt.Sprintf("error flags %#x", f))
	}
	return fmt.Errorf("%w: kernels met %s", compute.ErrDevice, strings.Join(what, ", "))
}

// u32Type is the internal dtype of the error word (4-byte elements).
const u32Type compute.DType = 200

// block is one allocation of the pool.
type block struct {
	ptr   uintptr
	class int
	freed bool
}

// buffer is the Buffer of this backend: n elements of dt at byte offset off
// of a block.
type buffer struct {
	be   *Backend
	blk  *block
	off  int
	n    int
	dt   compute.DType
	view bool
}

func (b *buffer) Len() int             { return b.n }
func (b *buffer) DType() compute.DType { return b.dt }

// ptr returns the device address of the first element.
func (b *buffer) ptr() uintptr {
	if b.blk.freed {
		panic("cuda: use of a freed buffer")
	}
	return b.blk.ptr + uintptr(b.off)
}

func (b *buffer) bytes() int { return b.n * elemSize(b.dt) }

func elemSize(dt compute.DType) int {
	if dt == u32Type {
		return 4
	}
	return dt.Size()
}

func (be *Backend) get(b compute.Buffer) *buffer {
	c, ok := b.(*buffer)
	if !ok || c.be != be {
		panic(fmt.Sprintf("cuda: buffer %T does not belong to this backend", b))
	}
	return c
}

func (be *Backend) typed(b compute.Buffer, dt compute.DType, what string) *buffer {
	c := be.get(b)
	if c.dt != dt {
		panic(fmt.Sprintf("cuda: %s is %v, want %v", what, c.dt, dt))
	}
	return c
}

func (be *Backend) f32(b compute.Buffer, what string, n int) *buffer {
	c := be.typed(b, compute.F32, what)
	need(what, c.n, n)
	return c
}

// float returns b, which must be F32 or BF16.
func (be *Backend) float(b compute.Buffer, what string) *buffer {
	c := be.get(b)
	if c.dt != compute.F32 && c.dt != compute.BF16 {
		panic(fmt.Sprintf("cuda: %s is %v, want F32 or BF16", what, c.dt))
	}
	return c
}

// floatN is float with a length check.
func (be *Backend) floatN(b compute.Buffer, what string, n int) *buffer {
	c := be.float(b, what)
	need(what, c.n, n)
	return c
}

// dts returns the dts argument of the mixed-precision kernels: bit k set
// when bs[k] is BF16 (nil ones clear).
func dts(bs ...*buffer) arg {
	v := 0
	for k, b := range bs {
		if b != nil && b.dt == compute.BF16 {
			v |= 1 << k
		}
	}
	return i32Arg(v)
}

// widening runs an operation that has f32 kernels only on BF16 operands:
// F32 scratch copies in, rounded back out once (compute's meaning of BF16
// operands). Cold paths use it (DoRA, (IA)³, mixed attention calls); the
// hot operations have mixed-precision kernels.
type widening struct {
	be   *Backend
	tmps []*buffer
	back [][2]*buffer // BF16 output, its F32 stand-in
}

// mixed returns a widening when one of bs (nil ones skipped) is BF16, nil
// otherwise.
func (be *Backend) mixed(bs ...compute.Buffer) *widening {
	for _, b := range bs {
		if b != nil && be.get(b).dt == compute.BF16 {
			return &widening{be: be}
		}
	}
	return nil
}

// in returns b, or an F32 copy of a BF16 b (an empty one when scratch
// memory ran out: the error is sticky and nothing runs).
func (w *widening) in(b compute.Buffer) compute.Buffer {
	if b == nil {
		return nil
	}
	c := w.be.get(b)
	if c.dt != compute.BF16 {
		return b
	}
	t, ok := w.be.scratch(compute.F32, c.n)
	if !ok {
		t = &buffer{be: w.be, blk: &block{}, n: c.n, dt: compute.F32}
	} else {
		w.tmps = append(w.tmps, t)
		w.be.Convert(t, c)
	}
	return t
}

// out is in for an operand the operation writes (and may read): done
// rounds the stand-in back into it.
func (w *widening) out(b compute.Buffer) compute.Buffer {
	f := w.in(b)
	if f != b {
		w.back = append(w.back, [2]*buffer{w.be.get(b), w.be.get(f)})
	}
	return f
}

// done rounds the outputs back and releases the scratch copies.
func (w *widening) done() {
	for _, p := range w.back {
		w.be.Convert(p[0], p[1])
	}
	w.be.releaseAll(w.tmps...)
}

func need(what string, have, want int) {
	if have != want {
		panic(fmt.Sprintf("cuda: %s has %d elements, want %d", what, have, want))
	}
}

// ptrOrNil returns the address of b, or 0 for a nil Buffer.
func (be *Backend) ptrOrNil(b compute.Buffer, what string, n int) uintptr {
	if b == nil {
		return 0
	}
	return be.f32(b, what, n).ptr()
}

// Alloc implements compute.Backend.
func (be *Backend) Alloc(dt compute.DType, n int) (compute.Buffer, error) {
	be.live()
	if n < 0 {
		panic("cuda: negative allocation")
	}
	switch dt {
	case compute.F32, compute.BF16, compute.I32, compute.U8, u32Type:
	default:
		panic(fmt.Sprintf("cuda: cannot allocate %v", dt))
	}
	if be.err != nil {
		return nil, be.err
	}
	bytes := n * elemSize(dt)
	ptr, class, err := be.pool.get(bytes)
	if err != nil {
		if errors.Is(err, compute.ErrOutOfMemory) {
			return nil, fmt.Errorf("cuda: %v[%d]: %w", dt, n, err)
		}
		be.fail(err)
		return nil, be.err
	}
	b := &buffer{be: be, blk: &block{ptr: ptr, class: class}, n: n, dt: dt}
	if bytes > 0 {
		be.fail(be.dev.memset(ptr, bytes))
	}
	return b, nil
}

// scratch allocates a temporary buffer for an operation; it is released
// with release right after the work using it is queued (stream order keeps
// it alive long enough).
func (be *Backend) scratch(dt compute.DType, n int) (*buffer, bool) {
	ptr, class, err := be.pool.get(max(1, n*elemSize(dt)))
	if err != nil {
		be.fail(err)
		return nil, false
	}
	return &buffer{be: be, blk: &block{ptr: ptr, class: class}, n: n, dt: dt}, true
}

func (be *Backend) release(b *buffer) {
	be.pool.put(b.blk.ptr, b.blk.class)
	b.blk.freed = true
}

// releaseAll releases the non-nil scratch buffers bs.
func (be *Backend) releaseAll(bs ...*buffer) {
	for _, b := range bs {
		if b != nil {
			be.release(b)
		}
	}
}

// addr returns the device address of b, or 0 for a nil buffer.
func (b *buffer) addr() uintptr {
	if b == nil {
		return 0
	}
	return b.ptr()
}

// Free implements compute.Backend. Freeing a view only invalidates the
// view; freeing a buffer from Alloc returns its memory to the pool and
// invalidates its views.
func (be *Backend) Free(b compute.Buffer) {
	c := be.get(b)
	if be.closed || c.view || c.blk.freed {
		return
	}
	be.release(c)
}

// View implements compute.Backend.
func (be *Backend) View(b compute.Buffer, off, n int) compute.Buffer {
	c := be.get(b)
	if off < 0 || n < 0 || off+n > c.n {
		panic(fmt.Sprintf("cuda: view [%d:%d] of a buffer of %d elements", off, off+n, c.n))
	}
	return &buffer{be: be, blk: c.blk, off: c.off + off*elemSize(c.dt), n: n, dt: c.dt, view: true}
}

// toBF16 rounds a float32 to bfloat16 bits, to nearest even; NaN stays NaN
// (compute/cpu's rounding).
func toBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x40
	}
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

func fromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

func f32Bytes(s []float32) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), 4*len(s))
}

func u16Bytes(s []uint16) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), 2*len(s))
}

func i32Bytes(s []int32) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), 4*len(s))
}

// Upload implements compute.Backend. BF16 is rounded on the host.
func (be *Backend) Upload(dst compute.Buffer, src []float32) {
	d := be.get(dst)
	need("upload destination", d.n, len(src))
	if !be.ok() || len(src) == 0 {
		return
	}
	switch d.dt {
	case compute.F32:
		be.fail(be.dev.htod(d.ptr(), f32Bytes(src)))
	case compute.BF16:
		h := make([]uint16, len(src))
		for i, x := range src {
			h[i] = toBF16(x)
		}
		be.fail(be.dev.htod(d.ptr(), u16Bytes(h)))
	default:
		panic("cuda: Upload into a non-float buffer")
	}
}

// UploadInt32 implements compute.Backend.
func (be *Backend) UploadInt32(dst compute.Buffer, src []int32) {
	d := be.typed(dst, compute.I32, "upload destination")
	need("upload destination", d.n, len(src))
	if !be.ok() || len(src) == 0 {
		return
	}
	be.fail(be.dev.htod(d.ptr(), i32Bytes(src)))
}

// UploadBytes implements compute.Backend.
func (be *Backend) UploadBytes(dst compute.Buffer, src []byte) {
	d := be.typed(dst, compute.U8, "upload destination")
	need("upload destination", d.n, len(src))
	if !be.ok() || len(src) == 0 {
		return
	}
	be.fail(be.dev.htod(d.ptr(), src))
}

// Download implements compute.Backend.
func (be *Backend) Download(dst []float32, src compute.Buffer) error {
	s := be.get(src)
	need("download destination", len(dst), s.n)
	if !be.ok() {
		return be.err
	}
	switch s.dt {
	case compute.F32:
		if len(dst) == 0 {
			return be.Sync()
		}
		be.fail(be.dev.dtoh(f32Bytes(dst), s.ptr()))
	case compute.BF16:
		if len(dst) == 0 {
			return be.Sync()
		}
		h := make([]uint16, len(dst))
		be.fail(be.dev.dtoh(u16Bytes(h), s.ptr()))
		for i, v := range h {
			dst[i] = fromBF16(v)
		}
	default:
		panic("cuda: Download from a non-float buffer")
	}
	return be.err
}

// DownloadInt32 copies the I32 buffer src into dst after pending work
// completes.
func (be *Backend) DownloadInt32(dst []int32, src compute.Buffer) error {
	s := be.typed(src, compute.I32, "download source")
	need("download destination", len(dst), s.n)
	if !be.ok() {
		return be.err
	}
	if len(dst) > 0 {
		be.fail(be.dev.dtoh(i32Bytes(dst), s.ptr()))
	}
	return be.err
}

// Zero implements compute.Backend.
func (be *Backend) Zero(b compute.Buffer) {
	c := be.get(b)
	if be.ok() && c.n > 0 {
		be.fail(be.dev.memset(c.ptr(), c.bytes()))
	}
}

// Copy implements compute.Backend.
func (be *Backend) Copy(dst, src compute.Buffer) {
	d, s := be.get(dst), be.get(src)
	if d.dt != s.dt {
		panic("cuda: Copy between dtypes")
	}
	need("copy destination", d.n, s.n)
	if be.ok() && d.n > 0 {
		be.fail(be.dev.dtod(d.ptr(), s.ptr(), d.bytes()))
	}
}

// run validates and queues a kernel launch; an empty grid queues nothing.
func (be *Backend) run(kernel string, grid, block [3]uint32, shared uint32, args ...arg) {
	l := &launch{kernel: kernel, grid: grid, block: block, shared: shared, args: args}
	if l.grid[0] == 0 || l.grid[1] == 0 || l.grid[2] == 0 {
		return
	}
	l.check(be.reg)
	if be.ok() {
		be.fail(be.dev.launch(l))
	}
}

// elementwise launches a grid-stride kernel over n elements.
func (be *Backend) elementwise(kernel string, n int, args ...arg) {
	if n == 0 {
		return
	}
	be.run(kernel, [3]uint32{gridFor(int64(n), elemThreads), 1, 1}, [3]uint32{elemThreads, 1, 1}, 0, args...)
}

// rowwise launches one reduction block per row.
func (be *Backend) rowwise(kernel string, rows int, args ...arg) {
	be.run(kernel, [3]uint32{uint32(rows), 1, 1}, [3]uint32{redThreads, 1, 1}, 0, args...)
}

func p(b *buffer) arg { return ptrArg(b.ptr()) }
