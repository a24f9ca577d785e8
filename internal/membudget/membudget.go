// Package membudget bounds the bytes of work in flight in a streaming
// pipeline: workers take a job's output size before computing it and give it
// back once the ordered writer has consumed the result, so peak memory stays
// a small multiple of the largest tensor however far workers could run ahead.
package membudget

import "sync"

// Budget is a counting semaphore over bytes. A request larger than the whole
// limit is granted alone (as the full limit), so one huge tensor never
// deadlocks.
type Budget struct {
	mu     sync.Mutex
	cond   *sync.Cond
	limit  int64
	used   int64
	closed bool
}

// New returns a budget of limit bytes.
func New(limit int64) *Budget {
	b := &Budget{limit: limit}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// Acquire waits until n bytes (at most the limit) are free and takes them;
// it returns false, taking nothing, once the budget is closed.
func (b *Budget) Acquire(n int64) bool {
	n = min(n, b.limit)
	b.mu.Lock()
	defer b.mu.Unlock()
	for !b.closed && b.used+n > b.limit {
		b.cond.Wait()
	}
	if b.closed {
		return false
	}
	b.used += n
	return true
}

// Release gives back n bytes taken by Acquire.
func (b *Budget) Release(n int64) {
	n = min(n, b.limit)
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	b.cond.Broadcast()
}

// Close wakes every waiter; later Acquires fail.
func (b *Budget) Close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cond.Broadcast()
}
