package quantize

import (
	"context"
	"fmt"
	"sync"

	"github.com/lorakit/lorakit/internal/membudget"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/output"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// sink is where the output goes: a checkpoint.Writer, or (in tests) memory.
type sink interface {
	Order() []safetensors.TensorInfo
	WriteTensor(name string, data []byte) error
	Commit() error
	Abort()
}

// createSink makes the output for the files and shards of a run.
type createSink func(files map[string][]byte, shards []checkpoint.Shard) (sink, error)

// createAt is the real output at path out.
func createAt(out string, o output.Options) createSink {
	return func(files map[string][]byte, shards []checkpoint.Shard) (sink, error) {
		return checkpoint.CreateWith(out, files, shards, o)
	}
}

// producer supplies the bytes of one output tensor: either ready-made
// (data: a view of the input, or a small state tensor) or computed on the
// pool (job).
type producer struct {
	data    func() ([]byte, error)
	job     *job
	release func() // called once the tensor is written
}

// defaultBudget bounds the computed outputs in flight: enough for the
// workers to run well ahead of the writer (64 MiB of packed codes are 128 M
// parameters).
const defaultBudget = 64 << 20

// budgetFor returns the budget to use: the one asked for, else the default
// or twice the largest computed tensor, whichever is larger.
func budgetFor(asked int64, prods map[string]*producer) int64 {
	if asked > 0 {
		return asked
	}
	b := int64(defaultBudget)
	for _, p := range prods {
		if p.job != nil {
			b = max(b, 2*p.job.size)
		}
	}
	return b
}

// writeAll writes every tensor of w in w.Order(), computing jobs on p ahead
// of the writer within limit bytes of outputs in flight. It returns after
// the feeder has stopped; the caller closes the pool.
func writeAll(ctx context.Context, w sink, prods map[string]*producer, p *pool, limit int64,
	progress func(int64)) error {
	order := w.Order()
	var jobs []*job
	for _, t := range order {
		pr, ok := prods[t.Name]
		if !ok {
			return fmt.Errorf("quantize: internal: no producer for tensor %q", t.Name)
		}
		if pr.job != nil {
			jobs = append(jobs, pr.job)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	bud := membudget.New(limit)
	var feeder sync.WaitGroup
	defer func() {
		cancel()
		bud.Close()
		feeder.Wait()
	}()
	feeder.Go(func() {
		for _, j := range jobs {
			if ctx.Err() != nil || !bud.Acquire(j.size) {
				return
			}
			if j.prepare != nil {
				if err := j.prepare(); err != nil {
					j.abort(err)
					return
				}
			}
			j.out = make([]byte, j.size)
			p.submit(j)
		}
	})
	for _, t := range order {
		if err := ctx.Err(); err != nil {
			return err
		}
		pr := prods[t.Name]
		var data []byte
		if pr.job != nil {
			if err := pr.job.wait(ctx); err != nil {
				return err
			}
			data = pr.job.out
		} else {
			var err error
			if data, err = pr.data(); err != nil {
				return err
			}
		}
		if err := w.WriteTensor(t.Name, data); err != nil {
			return fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if progress != nil {
			progress(int64(len(data)))
		}
		if pr.release != nil {
			pr.release()
		}
		if j := pr.job; j != nil {
			j.out = nil
			if j.release != nil {
				j.release()
			}
			bud.Release(j.size)
		}
	}
	return nil
}

// runAll runs jobs on p in order: a feeder prepares them (allocating their
// outputs) and queues them ahead while the caller waits for each in turn
// and releases it; the outputs stay with the jobs.
func runAll(ctx context.Context, p *pool, jobs []*job) error {
	ctx, cancel := context.WithCancel(ctx)
	var feeder sync.WaitGroup
	defer func() {
		cancel()
		feeder.Wait()
	}()
	feeder.Go(func() {
		for _, j := range jobs {
			if ctx.Err() != nil {
				return
			}
			if j.prepare != nil {
				if err := j.prepare(); err != nil {
					j.abort(err)
					return
				}
			}
			if j.size > 0 {
				j.out = make([]byte, j.size)
			}
			p.submit(j)
		}
	})
	for _, j := range jobs {
		if err := j.wait(ctx); err != nil {
			return err
		}
		if j.release != nil {
			j.release()
		}
	}
	return nil
}
