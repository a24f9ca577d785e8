package quantize

import (
	"context"
	"fmt"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/pipeline"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// chunkElems is the number of elements one chunk handles: a multiple of
// every supported block size (powers of two up to 4096), and small enough
// (256 KiB of float32 scratch) that nf4's kernels run on the calling
// goroutine.
const chunkElems = 1 << 16

// scratch is a worker's private buffer (pipeline.Worker.Local).
type scratch struct {
	f32 []float32 // chunkElems values
	am  []float32 // chunkElems/32 block absmax values (the smallest block size is 32)
	sc  []float32 // chunkElems/32 block scales
}

func newScratch() any {
	return &scratch{f32: make([]float32, chunkElems), am: make([]float32, chunkElems/32), sc: make([]float32, chunkElems/32)}
}

// sink is where the output goes: a checkpoint.Writer, or (in tests) memory.
type sink interface {
	Order() []safetensors.TensorInfo
	Write(p []byte) (int, error)
	Commit() error
	Abort()
}

// createSink makes the output for the files and shards of a run.
type createSink func(files map[string][]byte, shards []checkpoint.Shard) (sink, error)

// createAt is the real output at path out.
func createAt(out string, o Options) createSink {
	return func(files map[string][]byte, shards []checkpoint.Shard) (sink, error) {
		return checkpoint.CreateWith(out, files, shards, o.Output())
	}
}

// engine returns the streaming engine's options of a run.
func engine(o Options) pipeline.Options {
	return pipeline.Options{Workers: o.Threads, Budget: o.Budget, Local: newScratch}
}

// elemChunks is the number of chunkElems chunks of n elements, and span
// their bounds.
func elemChunks(n int) int { return (n + chunkElems - 1) / chunkElems }

func span(c, n int) (lo, hi int) { return c * chunkElems, min((c+1)*chunkElems, n) }

// writeAll writes every output tensor in w's order, each made by its job,
// through the engine, reporting progress of total bytes.
func writeAll(ctx context.Context, w sink, jobs map[string]*pipeline.Job, o Options, total int64) error {
	order := w.Order()
	list := make([]*pipeline.Job, len(order))
	for i, t := range order {
		if list[i] = jobs[t.Name]; list[i] == nil {
			return fmt.Errorf("%w: no job writes tensor %q", ErrInternal, t.Name)
		}
	}
	var done int64
	return pipeline.Run(ctx, engine(o), list, func(j *pipeline.Job, _ int, out []byte) error {
		if _, err := w.Write(out); err != nil {
			return fmt.Errorf("tensor %q: %w", j.Name, err)
		}
		done += int64(len(out))
		o.Report(done, total)
		return nil
	})
}

// bytesJob writes bytes made earlier (a quant-state tensor), then lets them go.
func bytesJob(name string, data *[]byte) *pipeline.Job {
	n := len(*data)
	return &pipeline.Job{Name: name, Chunks: 1, Size: func(int) int { return n },
		Run:    func(_ int, out []byte, _ *pipeline.Worker) error { copy(out, *data); return nil },
		Finish: func() error { *data = nil; return nil },
	}
}
