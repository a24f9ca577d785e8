package cuda

import (
	"errors"
	"math/bits"

	"github.com/lorakit/lorakit/pkg/compute"
)

// pool is a caching allocator of device memory. Blocks are handed out in
// size classes and kept on per-class free lists when released, so a training
// loop that allocates the same shapes every step reaches the driver only on
// its first step. All work runs on one stream, so a block released while
// queued kernels still use it can be reused at once: later work is ordered
// after them.
type pool struct {
	dev    device
	free   map[int][]uintptr // class size → free blocks
	cached int               // bytes on the free lists
	inUse  int               // bytes handed out
	// peak is the largest inUse, peakReserved the largest inUse + cached,
	// since the last resetPeak.
	peak, peakReserved int
}

// note updates the peaks after a change of inUse or cached.
func (p *pool) note() {
	p.peak = max(p.peak, p.inUse)
	p.peakReserved = max(p.peakReserved, p.inUse+p.cached)
}

// resetPeak starts new peaks at the current use.
func (p *pool) resetPeak() { p.peak, p.peakReserved = p.inUse, p.inUse+p.cached }

// Size classes: 512 B at least, powers of two up to 1 MiB, then multiples
// of 1 MiB (2 MiB for blocks over 64 MiB).
const (
	minClass   = 512
	smallClass = 1 << 20
)

// sizeClass returns the bytes reserved for a request of n bytes.
func sizeClass(n int) int {
	switch {
	case n <= minClass:
		return minClass
	case n <= smallClass:
		return 1 << bits.Len(uint(n-1))
	case n <= 64<<20:
		return (n + smallClass - 1) &^ (smallClass - 1)
	}
	return (n + 2*smallClass - 1) &^ (2*smallClass - 1)
}

func newPool(dev device) *pool {
	return &pool{dev: dev, free: map[int][]uintptr{}}
}

// get returns a block of class sizeClass(n). On an exhausted device it
// releases the cached blocks and tries again.
func (p *pool) get(n int) (uintptr, int, error) {
	c := sizeClass(n)
	if l := p.free[c]; len(l) > 0 {
		ptr := l[len(l)-1]
		p.free[c] = l[:len(l)-1]
		p.cached -= c
		p.inUse += c
		p.note()
		return ptr, c, nil
	}
	ptr, err := p.dev.memAlloc(c)
	if errors.Is(err, compute.ErrOutOfMemory) && p.cached > 0 {
		if err := p.trim(); err != nil {
			return 0, 0, err
		}
		ptr, err = p.dev.memAlloc(c)
	}
	if err != nil {
		return 0, 0, err
	}
	p.inUse += c
	p.note()
	return ptr, c, nil
}

// put returns a block obtained from get.
func (p *pool) put(ptr uintptr, class int) {
	p.free[class] = append(p.free[class], ptr)
	p.cached += class
	p.inUse -= class
}

// trim frees every cached block.
func (p *pool) trim() error {
	var first error
	for c, l := range p.free {
		for _, ptr := range l {
			if err := p.dev.memFree(ptr); err != nil && first == nil {
				first = err
			}
		}
		delete(p.free, c)
	}
	p.cached = 0
	return first
}
