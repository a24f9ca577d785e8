package pipeline

import "sync"

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
		if i := b.fit(n); i >= 0 {
			buf := b.kept[i]
			b.kept = append(b.kept[:i], b.kept[i+1:]...)
			return buf[:n], true
		}
		if b.held+int64(n) <= b.limit || b.held == 0 {
			buf := alloc(n)
			b.held += int64(cap(buf))
			return buf, true
		}
		if len(b.kept) > 0 { // make room: drop the oldest kept buffer
			b.drop(0)
			continue
		}
		b.cond.Wait()
	}
}

// fit returns the kept buffer that holds n bytes with the least waste (at
// most twice n), or -1.
func (b *buffers) fit(n int) int {
	best := -1
	for i, buf := range b.kept {
		if c := cap(buf); c >= n && c <= 2*n+4096 && (best < 0 || c < cap(b.kept[best])) {
			best = i
		}
	}
	return best
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

// alloc returns n bytes from tryAlloc, or from the heap when that fails.
func alloc(n int) []byte {
	if b := tryAlloc(n); b != nil {
		return b
	}
	return make([]byte, n)
}
