package adapterops

import (
	"context"
	"fmt"
	"runtime"
	"sync"

	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tool"
)

// job computes some output tensors (a module's A and B, or one carried
// tensor), returned by name in the output dtype's bytes.
type job func(ctx context.Context) (map[string][]byte, error)

// output is an adapter to write: its files, the layout of its tensors and,
// for each tensor, the job that produces it.
type output struct {
	files    map[string][]byte
	tensors  []safetensors.TensorInfo
	producer []int // producer[i]: index in jobs of the job making tensors[i]
	jobs     []job
}

// add registers a job and the tensors it produces.
func (o *output) add(j job, tensors ...safetensors.TensorInfo) {
	for _, t := range tensors {
		o.tensors = append(o.tensors, t)
		o.producer = append(o.producer, len(o.jobs))
	}
	o.jobs = append(o.jobs, j)
}

// carry adds a job copying a tensor of src unchanged. The bytes are the
// source's (a mapped view for files), not copied: a carried lm_head can be
// the largest tensor of an adapter.
func (o *output) carry(src source, name string) error {
	info, _, err := src.Tensor(name)
	if err != nil {
		return err
	}
	o.add(func(context.Context) (map[string][]byte, error) {
		_, b, err := src.Tensor(name)
		if err != nil {
			return nil, err
		}
		return map[string][]byte{name: b}, nil
	}, safetensors.TensorInfo{Name: name, DType: info.DType, Shape: info.Shape})
	return nil
}

// workers returns the number of goroutines for n: GOMAXPROCS when n <= 0.
func workers(n int) int {
	if n <= 0 {
		return runtime.GOMAXPROCS(0)
	}
	return n
}

// write creates the output and writes every tensor in the sink's order.
// Jobs run on nWorkers goroutines in the order their first tensor is
// written, at most nWorkers results waiting at a time, so memory stays a
// few modules; the bytes do not depend on nWorkers. Progress goes to
// env.Report in bytes written.
func (o *output) write(ctx context.Context, sm seam, env *tool.Env, path string, nWorkers int) error {
	out, err := sm.createOutput(path, o.files, o.tensors, env)
	if err != nil {
		return err
	}
	if err := o.run(ctx, out, workers(nWorkers), env.Report); err != nil {
		out.Abort()
		return err
	}
	return out.Commit()
}

func (o *output) run(ctx context.Context, out sink, nWorkers int, progress func(done, total int64)) error {
	byName := make(map[string]int, len(o.tensors))
	for i, t := range o.tensors {
		byName[t.Name] = o.producer[i]
	}
	order := out.Order()
	var seq []int // jobs in the order of their first tensor
	pos := make([]int, len(o.jobs))
	for i := range pos {
		pos[i] = -1
	}
	for _, t := range order {
		j, ok := byName[t.Name]
		if !ok {
			return fmt.Errorf("adapterops: internal error: no job writes %q", t.Name)
		}
		if pos[j] < 0 {
			pos[j] = len(seq)
			seq = append(seq, j)
		}
	}
	type result struct {
		data map[string][]byte
		err  error
	}
	results := make([]chan result, len(seq))
	for i := range results {
		results[i] = make(chan result, 1)
	}
	ctx, cancel := context.WithCancel(ctx)
	// On return every job has ended: none still uses a buffer its caller
	// frees (the dense methods' matrix).
	var running sync.WaitGroup
	defer running.Wait()
	defer cancel()
	tokens := make(chan struct{}, nWorkers)
	running.Add(1)
	go func() {
		defer running.Done()
		for i, j := range seq {
			select {
			case tokens <- struct{}{}:
			case <-ctx.Done():
				return
			}
			running.Add(1)
			go func() {
				defer running.Done()
				data, err := o.jobs[j](ctx)
				results[i] <- result{data, err}
			}()
		}
	}()
	received := make([]map[string][]byte, len(seq))
	next := 0 // next position of seq to receive
	var done, total int64
	for _, t := range order {
		total += t.NumBytes()
	}
	for _, t := range order {
		p := pos[byName[t.Name]]
		for next <= p {
			select {
			case r := <-results[next]:
				<-tokens
				if r.err != nil {
					return r.err
				}
				received[next] = r.data
				next++
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		data, ok := received[p][t.Name]
		if !ok {
			return fmt.Errorf("adapterops: internal error: job did not produce %q", t.Name)
		}
		if int64(len(data)) != t.NumElements()*int64(t.DType.Size()) {
			return fmt.Errorf("adapterops: internal error: %q has %d bytes, want %d", t.Name, len(data), t.NumElements()*int64(t.DType.Size()))
		}
		if err := out.WriteTensor(t.Name, data); err != nil {
			return err
		}
		delete(received[p], t.Name)
		if len(received[p]) == 0 {
			received[p] = nil
		}
		done += int64(len(data))
		progress(done, total)
	}
	return nil
}
