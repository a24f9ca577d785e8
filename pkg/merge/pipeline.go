package merge

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lorakit/lorakit/internal/kernels/lowrank"
	"github.com/lorakit/lorakit/internal/membudget"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// piece is one output tensor's bytes, ready to write.
type piece struct {
	name  string
	dt    dtype.DType
	shape []int64
	data  []byte
	free  func() // after writing: recycle the buffer or release mapped pages
}

// result is what a worker returns for a job.
type result struct {
	job    *job
	pieces []piece
	cost   int64
	err    error
}

// task is a job handed to a worker, with its input bytes for streams.
type task struct {
	job  *job
	data []byte
	cost int64
}

// Lower bounds of the in-flight window and of the tensors kept in memory
// while they wait for their turn (beyond it they go to the spill file).
// Variables so that tests can force spilling.
var (
	// windowTensors is the window's capacity in largest output tensors.
	windowTensors int64 = 2
	minWindow     int64 = 16 << 20
	minPending    int64 = 16 << 20
	spillAll            = false
)

// runner is one execution of a plan.
type runner struct {
	p        *Plan
	ctx      context.Context
	cancel   context.CancelCauseFunc
	random   bool
	win      *membudget.Budget
	tasks    chan task
	results  chan result
	pool     bufPool
	spill    spillFile
	pending  map[string]piece
	pendingN int64
	pendCap  int64
	wg       sync.WaitGroup
}

// Run executes the plan and writes the merged checkpoint to out: a folder
// (sharded like the base, with its index and carried files), a
// .safetensors file (optionally .gz/.zst) or "-" for stdout. The output
// appears atomically when everything succeeded. progress, when not nil, is
// called with the bytes of each tensor written. Run may be called once.
func (p *Plan) Run(ctx context.Context, out string, progress func(int64)) (*Summary, error) {
	start := time.Now()
	r := p.newRunner(ctx)
	defer r.stop()
	if p.opts.Requantize {
		if err := r.requantize(); err != nil {
			return nil, err
		}
	}
	w, err := checkpoint.Create(out, p.files, p.shards)
	if err != nil {
		return nil, err
	}
	if err := r.write(w, progress); err != nil {
		w.Abort()
		return nil, err
	}
	written := time.Now()
	if err := w.Commit(); err != nil {
		return nil, err
	}
	s := p.summary
	s.Output = out
	s.Bytes = w.Written()
	s.Seconds = time.Since(start).Seconds()
	s.CommitSeconds = time.Since(written).Seconds()
	s.Kernel = lowrank.Impl()
	return &s, nil
}

func (p *Plan) newRunner(ctx context.Context) *runner {
	r := &runner{p: p, random: p.base.Random(), pending: map[string]piece{}}
	r.ctx, r.cancel = context.WithCancelCause(ctx)
	r.win = membudget.New(max(windowTensors*p.maxOut, minWindow))
	r.pendCap = max(p.maxOut, minPending)
	if spillAll {
		r.pendCap = 0
	}
	r.spill.dir = p.opts.TempDir
	return r
}

// stop ends the goroutines and removes the spill file.
func (r *runner) stop() {
	r.cancel(context.Canceled)
	r.win.Close()
	r.wg.Wait()
	r.spill.close()
}

// fail stops the run with err.
func (r *runner) fail(err error) {
	r.cancel(err)
	r.win.Close()
}

// err returns why the run stopped.
func (r *runner) err() error {
	if err := context.Cause(r.ctx); err != nil {
		return err
	}
	return r.ctx.Err()
}

// startWorkers starts the merge goroutines, each with its own scratch.
// They stop when tasks is closed or the run is cancelled.
func (r *runner) startWorkers() {
	r.tasks = make(chan task)
	r.results = make(chan result)
	tasks := r.tasks
	for i := 0; i < r.p.opts.Workers; i++ {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			var s scratch
			for {
				var t task
				select {
				case tt, ok := <-tasks:
					if !ok {
						return
					}
					t = tt
				case <-r.ctx.Done():
					return
				}
				res := r.run(t, &s)
				select {
				case r.results <- res:
				case <-r.ctx.Done():
					return
				}
			}
		}()
	}
}

// send hands a job to the workers once the window has room.
func (r *runner) send(j *job, data []byte) bool {
	cost := numel(j.shape) * int64(j.out.Size())
	if !r.win.Acquire(cost) {
		return false
	}
	select {
	case r.tasks <- task{j, data, cost}:
		return true
	case <-r.ctx.Done():
		return false
	}
}

// inputData returns a job's input bytes from a file-backed base (a view of
// the mapped file).
func (r *runner) inputData(j *job) ([]byte, error) {
	return r.p.base.Data(j.input)
}

// done is called when a job no longer needs its input: the last one
// releases the input's mapped pages.
func (r *runner) done(j *job) {
	if atomic.AddInt32(j.users, -1) == 0 && r.random {
		if b, err := r.p.base.Data(j.input); err == nil {
			releaseMapped(b)
		}
	}
}

// convertChunk is the number of elements converted per read.
const convertChunk = 1 << 18

// run executes one job on a worker.
func (r *runner) run(t task, s *scratch) (res result) {
	j := t.job
	res = result{job: j, cost: t.cost}
	in := &input{data: t.data}
	if r.random {
		defer r.done(j)
		if loc, ok := r.p.baseFiles.locate(j.input); ok && j.in.quant == nil && j.mode != modeCopy {
			in = &input{ra: loc.ra, off: loc.off, buf: &s.in}
		} else {
			var err error
			if in.data, err = r.inputData(j); err != nil {
				res.err = err
				return res
			}
		}
	}
	fail := func(err error) result {
		res.err = fmt.Errorf("%s: tensor %q: %w", r.p.base.Path, j.input, err)
		return res
	}
	n := int(numel(j.shape))
	switch j.mode {
	case modeCopy: // streams only: the input is the output
		res.pieces = []piece{{name: j.name, dt: j.out, shape: j.shape, data: in.data, free: func() {}}}
	case modeConvert:
		out := r.pool.get(n * j.out.Size())
		is, os := j.in.info.DType.Size(), j.out.Size()
		for e0 := 0; e0 < n; e0 += convertChunk {
			e1 := min(n, e0+convertChunk)
			b, err := in.bytes(e0*is, e1*is)
			if err == nil {
				err = dtype.Convert(out[e0*os:e1*os], j.out, b, j.in.info.DType)
			}
			if err != nil {
				r.pool.put(out)
				return fail(err)
			}
		}
		res.pieces = []piece{{name: j.name, dt: j.out, shape: j.shape, data: out, free: func() { r.pool.put(out) }}}
	case modeCompute:
		out := r.pool.get(n * j.out.Size())
		if err := r.p.compute(j, in, s, out, nil); err != nil {
			r.pool.put(out)
			return fail(err)
		}
		res.pieces = []piece{{name: j.name, dt: j.out, shape: j.shape, data: out, free: func() { r.pool.put(out) }}}
	case modeRequant:
		full := make([]float32, n)
		if err := r.p.compute(j, in, s, nil, full); err != nil {
			return fail(err)
		}
		if err := roundTo(full, j.out, s); err != nil {
			return fail(err)
		}
		qs := j.in.quant.state
		q, err := nf4.QuantizeTensor(full, qs.Shape, nf4.Options{Type: qs.Type, Blocksize: qs.Blocksize, DoubleQuant: qs.Nested != nil, DType: qs.DType})
		if err != nil {
			return fail(err)
		}
		for _, nt := range q.Tensors(j.name) {
			res.pieces = append(res.pieces, piece{name: nt.Name, dt: nt.DType, shape: nt.Shape, data: nt.Data, free: func() {}})
		}
	}
	return res
}

// requantize computes every re-quantized 4-bit weight first, into the
// spill file, so that the output header knows their state tensors' sizes.
func (r *runner) requantize() error {
	var jobs []*job
	for _, j := range r.p.jobs {
		if j.mode == modeRequant {
			jobs = append(jobs, j)
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	r.startWorkers()
	go func() { // not waited for: it ends when the jobs are sent or the run is cancelled
		defer close(r.tasks)
		for _, j := range jobs {
			if !r.send(j, nil) {
				return
			}
		}
	}()
	for range jobs {
		select {
		case res := <-r.results:
			r.win.Release(res.cost)
			if res.err != nil {
				r.fail(res.err)
				return res.err
			}
			for _, pc := range res.pieces {
				if err := r.spill.put(pc.name, pc.dt, pc.shape, pc.data); err != nil {
					return err
				}
			}
		case <-r.ctx.Done():
			return r.err()
		}
	}
	// Fix the header entries of the re-quantized tensors.
	for si := range r.p.shards {
		for ti, t := range r.p.shards[si].Tensors {
			if e, ok := r.spill.where[t.Name]; ok {
				r.p.shards[si].Tensors[ti] = safetensors.TensorInfo{Name: t.Name, DType: e.dt, Shape: e.shape}
			}
		}
	}
	r.wg.Wait() // the workers end with the closed task channel
	return nil
}

// write streams every output tensor to w in its order.
func (r *runner) write(w *checkpoint.Writer, progress func(int64)) error {
	order := w.Order()
	pos := make(map[string]int, len(order))
	for i, t := range order {
		pos[t.Name] = i
	}
	var dispatch []*job
	for _, j := range r.p.jobs {
		if j.mode == modeRequant || (r.random && j.mode == modeCopy) {
			continue
		}
		dispatch = append(dispatch, j)
	}
	first := func(j *job) int {
		f := len(order)
		for _, o := range j.outputs {
			if i, ok := pos[o]; ok {
				f = min(f, i)
			}
		}
		return f
	}
	slices.SortStableFunc(dispatch, func(a, b *job) int { return first(a) - first(b) })
	r.startWorkers()
	go func() { // not waited for: a stream read may block until its writer ends
		defer close(r.tasks)
		if r.random {
			for _, j := range dispatch {
				if !r.send(j, nil) {
					return
				}
			}
			return
		}
		byInput := map[string][]*job{}
		for _, j := range dispatch {
			byInput[j.input] = append(byInput[j.input], j)
		}
		err := r.p.base.Each(func(t safetensors.TensorInfo, data []byte) error {
			if len(byInput[t.Name]) > 0 {
				data = bytes.Clone(data) // Each's bytes are only valid during the call
			}
			for _, j := range byInput[t.Name] {
				if !r.send(j, data) {
					return r.err()
				}
			}
			return nil
		})
		if err != nil {
			r.fail(err)
		}
	}()
	for _, t := range order {
		pc, err := r.next(t.Name)
		if err != nil {
			r.fail(err)
			return err
		}
		if err := w.WriteTensor(t.Name, pc.data); err != nil {
			r.fail(err)
			return err
		}
		pc.free()
		if progress != nil {
			progress(int64(len(pc.data)))
		}
	}
	return nil
}

// next returns the bytes of output tensor name, waiting for its job.
func (r *runner) next(name string) (piece, error) {
	j := r.p.byName[name]
	if j == nil {
		return piece{}, fmt.Errorf("merge: internal error: no job writes tensor %q", name)
	}
	if r.random && j.mode == modeCopy {
		data, err := r.inputData(j)
		if err != nil {
			return piece{}, err
		}
		populateMapped(data)
		return piece{name: name, data: data, free: func() { r.done(j) }}, nil
	}
	if pc, ok := r.pending[name]; ok {
		delete(r.pending, name)
		r.pendingN -= int64(len(pc.data))
		return pc, nil
	}
	if r.spill.has(name) {
		buf, err := r.spill.take(name, r.pool.get(r.spill.size(name)))
		if err != nil {
			return piece{}, err
		}
		return piece{name: name, data: buf, free: func() { r.pool.put(buf) }}, nil
	}
	for {
		select {
		case res := <-r.results:
			if res.err != nil {
				r.win.Release(res.cost)
				return piece{}, res.err
			}
			// A file base is dispatched in output order: a result keeps its
			// share of the window until written, which bounds what waits
			// here. A stream comes in its own order: the window is freed at
			// once (or the reader could wait for room that only a tensor
			// not yet read would free), and what waits beyond pendCap goes
			// to the spill file.
			if r.random && len(res.pieces) == 1 {
				pc, cost := &res.pieces[0], res.cost
				free := pc.free
				pc.free = func() { free(); r.win.Release(cost) }
			} else {
				r.win.Release(res.cost)
			}
			var found *piece
			for i := range res.pieces {
				pc := res.pieces[i]
				if pc.name == name {
					found = &res.pieces[i]
					continue
				}
				if r.pendingN+int64(len(pc.data)) > r.pendCap && !(r.random && len(res.pieces) == 1) {
					if err := r.spill.put(pc.name, pc.dt, pc.shape, pc.data); err != nil {
						return piece{}, err
					}
					pc.free()
					continue
				}
				r.pending[pc.name] = pc
				r.pendingN += int64(len(pc.data))
			}
			if found != nil {
				return *found, nil
			}
		case <-r.ctx.Done():
			return piece{}, r.err()
		}
	}
}
