package pipeline

import (
	"math"
	"sync"
)

// buffers hands out output buffers within a byte limit that covers both the
// buffers in use and those kept for reuse: a request waits until it fits,
// dropping kept buffers first. Models repeat a few tensor sizes, so a
// handful of buffers serves a whole run. A request larger than the limit is
// granted alone.
type buffers struct {
	mu     sync.Mutex
	cond   *sync.Cond
	limit  int64
	held   int64    // bytes of every live buffer (in use or kept)
	kept   [][]byte // free buffers, oldest first
	closed bool
}

func newBuffers(limit int64) *buffers {
	b := &buffers{limit: limit}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// get returns a buffer of n bytes (nil for 0), waiting for room; false once
// the pool is closed.
func (b *buffers) get(n int) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		if b.closed {
			return nil, false
		}
		if n == 0 {
			return nil, true
		}
		if i := b.fit(n, 2*n+4096); i >= 0 {
			return b.take(i, n), true
		}
		if b.held+int64(n) <= b.limit || b.held == 0 {
			buf := alloc(n)
			b.held += int64(cap(buf))
			return buf, true
		}
		// No room for a new buffer: a larger kept one serves (it is held
		// anyway); else make room, dropping first the kept buffers too
		// small for this request.
		if i := b.fit(n, math.MaxInt); i >= 0 {
			return b.take(i, n), true
		}
		if len(b.kept) > 0 {
			b.drop(0)
			continue
		}
		b.cond.Wait()
	}
}

// fit returns the kept buffer that holds n bytes with the least waste,
// at most most bytes, or -1.
func (b *buffers) fit(n, most int) int {
	best := -1
	for i, buf := range b.kept {
		if c := cap(buf); c >= n && c <= most && (best < 0 || c < cap(b.kept[best])) {
			best = i
		}
	}
	return best
}

func (b *buffers) take(i, n int) []byte {
	buf := b.kept[i]
	b.kept = append(b.kept[:i], b.kept[i+1:]...)
	return buf[:n]
}

func (b *buffers) drop(i int) {
	buf := b.kept[i]
	b.kept = append(b.kept[:i], b.kept[i+1:]...)
	b.held -= int64(cap(buf))
	release(buf)
}

// put gives a buffer back for reuse.
func (b *buffers) put(buf []byte) {
	if cap(buf) == 0 {
		return
	}
	b.mu.Lock()
	b.kept = append(b.kept, buf[:cap(buf)])
	b.mu.Unlock()
	b.cond.Broadcast()
}

// close wakes every waiter; later gets fail.
func (b *buffers) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cond.Broadcast()
}

// free releases the kept buffers; call it once nothing uses a buffer.
func (b *buffers) free() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.kept) > 0 {
		b.drop(len(b.kept) - 1)
	}
}

// alloc returns n bytes from allocFilled, or from the heap when that fails.
func alloc(n int) []byte {
	if b := allocFilled(n); b != nil {
		return b
	}
	return make([]byte, n)
}
