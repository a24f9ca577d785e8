// Package pipeline is lorakit's streaming engine, shared by lora-quantize,
// lora-merge, lora-gguf and lora-train's reading of a base. Run computes
// ordered jobs (usually one output tensor each) split into chunks on a pool
// of workers and hands every chunk's output to one consumer in order, within
// a byte budget, so that results never depend on the number of workers.
// Input reads any checkpoint.Source in any order with bounded memory: files
// with pread (never mapped, so the input's pages do not count against the
// process); streams forward on demand, keeping what arrives before it is
// needed in memory up to a bound and beyond it in an unlinked spill file —
// the one spool policy for unseekable input. Output buffers are anonymous
// mappings outside the Go heap, so the collector's slack adds nothing.
package pipeline

import (
	"context"
	"runtime"
	"sync"
)

// DefaultBudget is the smallest budget Run uses when none is given: enough
// for the workers to run well ahead of the consumer.
const DefaultBudget = 32 << 20

// Options configure Run.
type Options struct {
	// Workers is the number of worker goroutines; 0 means GOMAXPROCS.
	Workers int
	// Budget bounds the bytes of chunk outputs in flight plus the buffers
	// kept for reuse; 0 means DefaultBudget or three times the largest
	// chunk output (one being consumed, one per worker on two workers),
	// whichever is larger. A chunk larger than the budget runs alone.
	Budget int64
	// Local, when set, makes each worker's Worker.Local (its scratch).
	Local func() any
}

// Job is one unit of ordered work, usually one output tensor: Chunks
// independent parts that workers compute in parallel, each into its own
// output buffer of Size(c) bytes.
type Job struct {
	// Name names the job in errors.
	Name string
	// Chunks is the number of parts; 0 runs only Prepare and Finish.
	Chunks int
	// Size returns the output bytes of chunk c; nil means no output.
	Size func(c int) int
	// Prepare, when set, runs once before the job's chunks are queued, on
	// the goroutine that queues every job in order.
	Prepare func() error
	// Run computes chunk c into out (len(out) == Size(c); nil when 0).
	Run func(c int, out []byte, w *Worker) error
	// Finish, when set, runs on the consumer's goroutine once every chunk
	// of the job has been consumed.
	Finish func() error
}

func (j *Job) size(c int) int {
	if j.Size == nil {
		return 0
	}
	return j.Size(c)
}

// Worker is what a chunk runs with: the worker's own scratch.
type Worker struct {
	// Local is the worker's value made by Options.Local.
	Local any
	buf   []byte
}

// Buf returns a scratch slice of n bytes owned by the worker, valid until
// the worker's next call of Buf.
func (w *Worker) Buf(n int) []byte {
	if cap(w.buf) < n {
		w.buf = make([]byte, n)
	}
	return w.buf[:n]
}

// task is one chunk on its way from the feeder to the consumer.
type task struct {
	j    *Job
	c    int
	out  []byte
	err  error
	done chan struct{}
}

// Run runs jobs in order and calls consume (when not nil) with every
// chunk's output in order; out is valid only until consume returns. The first error — of a
// Prepare, a chunk, consume or a Finish, in job order — stops the run and is
// returned once every worker has stopped.
func Run(ctx context.Context, o Options, jobs []*Job, consume func(j *Job, c int, out []byte) error) error {
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	budget := o.Budget
	if budget <= 0 {
		budget = DefaultBudget
		for _, j := range jobs {
			for c := range j.Chunks {
				budget = max(budget, 3*int64(j.size(c)))
			}
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	bufs := newBuffers(budget)
	work := make(chan *task, 2*workers)
	order := make(chan *task, 4*workers+16)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		bufs.close()
		wg.Wait() // the feeder and the workers: nobody touches a buffer after this
		for t := range order {
			bufs.put(t.out)
		}
		bufs.free()
	}()

	for range workers {
		wg.Go(func() {
			w := &Worker{}
			if o.Local != nil {
				w.Local = o.Local()
			}
			for t := range work {
				if err := ctx.Err(); err != nil {
					t.err = err
				} else if err := t.j.Run(t.c, t.out, w); err != nil {
					t.err = err
				}
				close(t.done)
			}
		})
	}
	wg.Go(func() {
		defer close(order)
		defer close(work)
		fail := func(j *Job, err error) {
			t := &task{j: j, c: -1, err: err, done: make(chan struct{})}
			close(t.done)
			select {
			case order <- t:
			case <-ctx.Done():
			}
		}
		for _, j := range jobs {
			if j.Prepare != nil {
				if err := j.Prepare(); err != nil {
					fail(j, err)
					return
				}
			}
			if j.Chunks == 0 {
				t := &task{j: j, c: -1, done: make(chan struct{})}
				close(t.done)
				select {
				case order <- t:
				case <-ctx.Done():
					return
				}
				continue
			}
			for c := range j.Chunks {
				out, ok := bufs.get(j.size(c))
				if !ok {
					return
				}
				t := &task{j: j, c: c, out: out, done: make(chan struct{})}
				select {
				case order <- t:
				case <-ctx.Done():
					bufs.put(out)
					return
				}
				select {
				case work <- t:
				case <-ctx.Done():
					t.err = ctx.Err()
					close(t.done)
					return
				}
			}
		}
	})

	for t := range order {
		select {
		case <-t.done:
		case <-ctx.Done():
			bufs.put(t.out)
			return ctx.Err()
		}
		err := t.err
		if err == nil && t.c >= 0 && consume != nil {
			err = consume(t.j, t.c, t.out)
		}
		bufs.put(t.out)
		if err == nil && t.c == t.j.Chunks-1 && t.j.Finish != nil { // the last chunk, or -1 for no chunks
			err = t.j.Finish()
		}
		if err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return nil
}

// CopyBytes is the size of the chunks of CopyJob.
const CopyBytes = 1 << 20

// CopyJob writes n bytes read by read (pread, a spill file...) unchanged,
// in chunks of CopyBytes: a tensor copied from input to output.
func CopyJob(name string, n int64, read func(p []byte, off int64) error) *Job {
	return &Job{Name: name, Chunks: int((n + CopyBytes - 1) / CopyBytes),
		Size: func(c int) int { return int(min(n, int64(c+1)*CopyBytes) - int64(c)*CopyBytes) },
		Run:  func(c int, out []byte, _ *Worker) error { return read(out, int64(c)*CopyBytes) }}
}
