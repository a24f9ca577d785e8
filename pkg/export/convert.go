package export

import (
	"context"
	"encoding/binary"
	"io"
	"math"
	"runtime"
	"sync"
	"unsafe"

	"github.com/lorakit/lorakit/internal/kernels/vec"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/gguf"
)

// chunkBytes is the target size of one converted chunk of output: small enough for a
// chunk's float32 scratch to stay in cache, large enough to keep hand-offs rare.
const chunkBytes = 512 << 10

// rowFn fills dst with the encoded output rows [r0, r1) of a tensor; scratch is a
// per-worker float32 buffer it may grow.
type rowFn func(dst []byte, r0, r1 int64, scratch *[]float32) error

// pipeline converts tensors in chunks of rows on a pool of worker goroutines that lives
// for one Write. The goroutine writing the file pulls the chunks in order (chunkStream),
// so a tensor is never held whole and no goroutine sits between workers and writer.
type pipeline struct {
	workers int
	jobs    chan *task
	wg      sync.WaitGroup
	mu      sync.Mutex
	bufs    [][]byte // free output chunks
}

type task struct {
	fn     rowFn
	r0, r1 int64
	buf    []byte
	err    error
	done   chan struct{}
}

func newPipeline(threads int) *pipeline {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	p := &pipeline{workers: threads, jobs: make(chan *task, 2*threads)}
	for range threads {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			var scratch []float32
			for t := range p.jobs {
				t.err = t.fn(t.buf, t.r0, t.r1, &scratch)
				close(t.done)
			}
		}()
	}
	return p
}

// stop ends the workers; every stream must have been closed.
func (p *pipeline) stop() {
	close(p.jobs)
	p.wg.Wait()
}

func (p *pipeline) getBuf(n int64) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.bufs) > 0 {
		b := p.bufs[len(p.bufs)-1]
		p.bufs = p.bufs[:len(p.bufs)-1]
		if int64(cap(b)) >= n {
			return b[:n]
		}
	}
	return make([]byte, n, max(n, chunkBytes))
}

func (p *pipeline) putBuf(b []byte) {
	p.mu.Lock()
	p.bufs = append(p.bufs, b)
	p.mu.Unlock()
}

// chunkStream is one tensor's converted bytes as an io.Reader: it keeps up to twice the
// worker count of chunks in flight and hands them out in order.
type chunkStream struct {
	ctx             context.Context
	p               *pipeline
	fn              rowFn
	rows, per, rowB int64
	next            int64   // first row not yet submitted
	queue           []*task // submitted, in order
	cur             *task   // chunk being read
	off             int     // read position in cur.buf
	err             error   // sticky
}

func (p *pipeline) stream(ctx context.Context, rows, rowBytes int64, fn rowFn) *chunkStream {
	return &chunkStream{ctx: ctx, p: p, fn: fn, rows: rows, rowB: rowBytes, per: max(1, chunkBytes/max(rowBytes, 1))}
}

func (s *chunkStream) fill() {
	for len(s.queue) < 2*s.p.workers && s.next < s.rows {
		r1 := min(s.rows, s.next+s.per)
		t := &task{fn: s.fn, r0: s.next, r1: r1, buf: s.p.getBuf((r1 - s.next) * s.rowB), done: make(chan struct{})}
		s.next = r1
		s.queue = append(s.queue, t)
		s.p.jobs <- t
	}
}

// chunk returns the unread part of the current chunk, waiting for the next one when
// the current one is used up; io.EOF after the last.
func (s *chunkStream) chunk() ([]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.cur != nil && s.off < len(s.cur.buf) {
		return s.cur.buf[s.off:], nil
	}
	if s.cur != nil {
		s.p.putBuf(s.cur.buf)
		s.cur = nil
	}
	if err := s.ctx.Err(); err != nil {
		s.err = err
		return nil, err
	}
	s.fill()
	if len(s.queue) == 0 {
		s.err = io.EOF
		return nil, io.EOF
	}
	t := s.queue[0]
	s.queue = s.queue[1:]
	<-t.done
	if t.err != nil {
		s.p.putBuf(t.buf)
		s.err = t.err
		return nil, t.err
	}
	s.cur, s.off = t, 0
	s.fill()
	return t.buf, nil
}

// Read implements io.Reader.
func (s *chunkStream) Read(p []byte) (int, error) {
	b, err := s.chunk()
	if err != nil {
		return 0, err
	}
	n := copy(p, b)
	s.off += n
	return n, nil
}

// close waits for the chunks still in flight and recycles their buffers.
func (s *chunkStream) close() {
	for _, t := range s.queue {
		<-t.done
		s.p.putBuf(t.buf)
	}
	s.queue = nil
	if s.cur != nil {
		s.p.putBuf(s.cur.buf)
		s.cur = nil
	}
}

// writeConverted streams one tensor through the pipeline into w.
func (p *pipeline) writeConverted(ctx context.Context, w *gguf.Writer, t gguf.TensorInfo, rows, rowBytes int64, fn rowFn) error {
	s := p.stream(ctx, rows, rowBytes, fn)
	defer s.close()
	err := w.WriteTensorFrom(t.Name, s)
	if s.err != nil && s.err != io.EOF {
		return s.err // the conversion's error rather than the copy's wrapping of it
	}
	return err
}

// encodeRows returns a rowFn that decodes rows of src (HF row-major, cols values of
// type dt per row), reorders them by perm (nil: identity), scales them (scale != 1),
// and encodes them as out. stats collects F16 overflows.
func encodeRows(src []byte, dt dtype.DType, cols int64, perm []int, scale float32, out gguf.Type, st *tensorStats) rowFn {
	es := int64(dt.Size())
	bs, ts := out.BlockSize(), out.TypeSize()
	// Convert in pieces of subElems values so that the float32 scratch stays in the L1
	// cache between decoding and encoding; pieces hold whole blocks (rows do too).
	sub := max(bs, subElems/bs*bs)
	encode := func(dst, in []byte, n int64, f []float32) error {
		for e := int64(0); e < n; e += sub {
			k := min(sub, n-e)
			fk := f[:k]
			if err := dtype.ToF32(fk, in[e*es:(e+k)*es], dt); err != nil {
				return err
			}
			if scale != 1 {
				for i := range fk {
					fk[i] *= scale
				}
			}
			d := dst[e/bs*ts : (e+k)/bs*ts]
			if err := gguf.Quantize(d, fk, out); err != nil {
				return err
			}
			if out == gguf.TypeF16 && st != nil && vec.AnyF16InfLE(d) {
				if c := gguf.F16Overflows(fk); c > 0 {
					st.addOverflow(c)
				}
			}
		}
		return nil
	}
	rowOut := cols / bs * ts
	return func(dst []byte, r0, r1 int64, scratch *[]float32) error {
		if int64(cap(*scratch)) < sub {
			*scratch = make([]float32, sub)
		}
		f := (*scratch)[:sub]
		if perm == nil {
			return encode(dst, src[r0*cols*es:r1*cols*es], (r1-r0)*cols, f)
		}
		for r := r0; r < r1; r++ {
			s := int64(perm[r])
			if err := encode(dst[(r-r0)*rowOut:(r-r0+1)*rowOut], src[s*cols*es:(s+1)*cols*es], cols, f); err != nil {
				return err
			}
		}
		return nil
	}
}

// subElems is the number of values converted at a time by encodeRows (32 KiB of float32).
const subElems = 8192

// copyRows returns a rowFn that copies rows of rowBytes bytes of src reordered by perm
// (nil: in order).
func copyRows(src []byte, rowBytes int64, perm []int) rowFn {
	return func(dst []byte, r0, r1 int64, _ *[]float32) error {
		if perm == nil {
			copy(dst, src[r0*rowBytes:r1*rowBytes])
			return nil
		}
		for r := r0; r < r1; r++ {
			s := int64(perm[r])
			copy(dst[(r-r0)*rowBytes:(r-r0+1)*rowBytes], src[s*rowBytes:(s+1)*rowBytes])
		}
		return nil
	}
}

// tensorStats accumulates per-tensor findings across workers.
type tensorStats struct {
	mu        sync.Mutex
	overflows int
}

func (s *tensorStats) addOverflow(n int) {
	s.mu.Lock()
	s.overflows += n
	s.mu.Unlock()
}

// f32Bytes views f as its little-endian bytes (amd64 and arm64 are little-endian; on
// a big-endian host it copies).
func f32Bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	if nativeLE {
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), 4*len(f))
	}
	b := make([]byte, 4*len(f))
	for i, v := range f {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

var nativeLE = binary.NativeEndian.Uint16([]byte{1, 0}) == 1
