package quantize

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
)

// chunkElems is the number of elements one task handles: a multiple of every
// supported block size (powers of two up to 4096), and small enough (256 KiB
// of float32 scratch) that nf4's kernels run on the calling goroutine.
const chunkElems = 1 << 16

// scratch is a worker's private buffer.
type scratch struct {
	f32 []float32 // chunkElems values
	am  []float32 // chunkElems/32 block absmax values (the smallest block size is 32)
	sc  []float32 // chunkElems/32 block scales
}

// job is one tensor computed chunk by chunk on the pool. The chunks are
// independent and each writes its own part of out (and of any per-chunk
// result slice), so the result never depends on the number of workers or
// on which worker ran which chunk.
type job struct {
	name   string
	size   int64 // bytes of out, charged to the budget
	chunks int
	run    func(c int, s *scratch) error
	out    []byte
	// prepare, when set, runs before the chunks are queued (it fetches the
	// input); release, when set, runs once the output has been consumed.
	prepare func() error
	release func()
	// finish, when set, runs on the worker that completes the last chunk,
	// unless a chunk failed.
	finish func() error

	left  atomic.Int64
	done  chan struct{}
	close sync.Once
	mu    sync.Mutex
	err   error
}

func newJob(name string, elems int64, size int64, run func(c int, s *scratch) error) *job {
	j := &job{name: name, size: size, chunks: int((elems + chunkElems - 1) / chunkElems), run: run,
		done: make(chan struct{})}
	j.left.Store(int64(j.chunks))
	if j.chunks == 0 {
		j.markDone()
	}
	return j
}

func (j *job) fail(err error) {
	j.mu.Lock()
	if j.err == nil {
		j.err = err
	}
	j.mu.Unlock()
}

// complete runs finish and marks the job done.
func (j *job) complete() {
	j.mu.Lock()
	failed := j.err != nil
	j.mu.Unlock()
	if !failed && j.finish != nil {
		if err := j.finish(); err != nil {
			j.fail(err)
		}
	}
	j.markDone()
}

func (j *job) markDone() { j.close.Do(func() { close(j.done) }) }

// abort marks a job whose chunks were never queued as failed and done.
func (j *job) abort(err error) {
	j.fail(err)
	j.markDone()
}

// wait blocks until every chunk has run and returns the first error.
func (j *job) wait(ctx context.Context) error {
	select {
	case <-j.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// pool runs chunks of jobs on a fixed set of workers, in submission order.
type pool struct {
	ctx   context.Context
	tasks chan task
	wg    sync.WaitGroup
}

type task struct {
	j *job
	c int
}

// newPool starts workers goroutines (GOMAXPROCS when workers <= 0).
func newPool(ctx context.Context, workers int) *pool {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	p := &pool{ctx: ctx, tasks: make(chan task, 4*workers)}
	for range workers {
		p.wg.Go(func() {
			s := &scratch{f32: make([]float32, chunkElems), am: make([]float32, chunkElems/32), sc: make([]float32, chunkElems/32)}
			for t := range p.tasks {
				if p.ctx.Err() != nil {
					t.j.fail(p.ctx.Err())
				} else if err := t.j.run(t.c, s); err != nil {
					t.j.fail(err)
				}
				if t.j.left.Add(-1) == 0 {
					t.j.complete()
				}
			}
		})
	}
	return p
}

// submit queues every chunk of j; it blocks while the queue is full.
func (p *pool) submit(j *job) {
	for c := range j.chunks {
		p.tasks <- task{j, c}
	}
}

// close waits for the queued chunks to finish and stops the workers.
func (p *pool) close() {
	close(p.tasks)
	p.wg.Wait()
}
