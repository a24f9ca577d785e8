package merge

import (
	"context"
	"fmt"
	"time"

	"github.com/lorakit/lorakit/internal/kernels/lowrank"
	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/pipeline"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// piece is one output tensor of a re-quantized weight, in the spill file.
type piece struct {
	name  string
	dt    dtype.DType
	shape []int64
	data  []byte
}

// convertChunk is the number of elements of a converted tensor's chunks.
const convertChunk = 1 << 18

// Run executes the plan and writes the merged checkpoint to out: a folder
// (sharded like the base, with its index and carried files), a
// .safetensors file (optionally .gz/.zst) or "-" for stdout. The output
// appears atomically when everything succeeded. Progress (Options.Env) is
// reported in bytes written. Run may be called once.
//
// Every output tensor is a job of the streaming engine (package pipeline),
// in the output's order, in chunks: merged tensors in chunks of row blocks,
// each block read with pread, merged and encoded while in cache; copied and
// converted ones in chunks of bytes. A re-quantized weight is computed
// first, into an unlinked spill file, because the output's header needs the
// sizes of its state tensors.
func (p *Plan) Run(ctx context.Context, out string) (*Summary, error) {
	start := time.Now()
	var spill spillFile
	spill.dir = p.opts.TempDir
	defer spill.close()
	if p.opts.Requantize {
		if err := p.requantize(ctx, &spill); err != nil {
			return nil, err
		}
	}
	w, err := checkpoint.CreateWith(out, p.files, p.shards, p.opts.Output())
	if err != nil {
		return nil, err
	}
	// Base tensors nobody reads (4-bit state tensors of dequantized
	// weights) are skipped in a stream; the others are released after
	// their last reader.
	users := map[string]int{}
	for _, j := range p.jobs {
		if j.mode != modeRequant {
			users[j.input]++
		}
	}
	for _, t := range p.base.Tensors {
		if users[t.Name] == 0 {
			p.in.Done(t.Name)
		}
	}
	var jobs []*pipeline.Job
	for _, t := range w.Order() {
		j := p.byName[t.Name]
		if j == nil {
			w.Abort()
			return nil, fmt.Errorf("merge: internal error: no job writes tensor %q", t.Name)
		}
		var e *pipeline.Job
		switch {
		case j.mode == modeRequant:
			e = spill.job(t.Name)
		case j.mode == modeCopy: // released below, after the input's last reader
			e = pipeline.CopyJob(j.name, j.in.info.NumBytes(), func(b []byte, off int64) error { return p.in.ReadAt(j.input, b, off) })
		case j.mode == modeConvert:
			e = p.convertJob(j)
		default:
			e = p.computeJob(j)
		}
		if j.mode != modeRequant {
			finish := e.Finish
			e.Finish = func() error {
				if users[j.input]--; users[j.input] == 0 {
					p.in.Done(j.input)
				}
				if finish != nil {
					return finish()
				}
				return nil
			}
		}
		jobs = append(jobs, e)
	}
	total, done := p.OutputBytes(), int64(0)
	err = pipeline.Run(ctx, p.engine(), jobs, func(j *pipeline.Job, _ int, b []byte) error {
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("tensor %q: %w", j.Name, err)
		}
		done += int64(len(b))
		p.opts.Report(done, total)
		return nil
	})
	if err != nil {
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
	s.Workers = p.opts.Threads
	s.Spilled = p.in.Spilled()
	return &s, nil
}

// engine returns the streaming engine's options: the plan's workers, each
// with its scratch.
func (p *Plan) engine() pipeline.Options {
	return pipeline.Options{Workers: p.opts.Threads, Local: func() any { return new(scratch) }}
}

// input returns a job's base bytes, read with pread (or from a stream's
// kept copy) into the worker's scratch.
func (p *Plan) input(j *job, s *scratch) *input {
	return &input{in: p.in, name: j.input, buf: &s.in}
}

// chunkElems is the target size of a merged tensor's chunks: a few row
// blocks, so that a chunk's output is still in cache when the consumer
// writes it.
const chunkElems = 1 << 18

// computeJob merges (or dequantizes) one tensor in chunks of whole row
// blocks. Its contributions are loaded once, before the chunks are queued,
// and dropped when the last chunk is written.
func (p *Plan) computeJob(j *job) *pipeline.Job {
	rows, cols := shape2(j.shape)
	block := blockRows(cols)
	step := block * max(1, chunkElems/(block*max(1, cols)))
	chunks := (rows + step - 1) / step
	if rows*cols == 0 {
		chunks = 1
	}
	rowBytes := cols * j.out.Size()
	var m *merger
	return &pipeline.Job{Name: j.name, Chunks: chunks,
		Size: func(c int) int { return (min(rows, (c+1)*step) - c*step) * rowBytes },
		Prepare: func() (err error) {
			if m, err = p.newMerger(j); err != nil {
				return p.fail(j, err)
			}
			return nil
		},
		Run: func(c int, out []byte, w *pipeline.Worker) error {
			if err := m.compute(c*step, min(rows, (c+1)*step), w.Local.(*scratch), out, nil); err != nil {
				return p.fail(j, err)
			}
			return nil
		},
		Finish: func() error {
			m = nil
			return nil
		}}
}

// convertJob converts one tensor to another dtype in chunks.
func (p *Plan) convertJob(j *job) *pipeline.Job {
	n := int(num.Elements(j.shape))
	is, os := j.in.info.DType.Size(), j.out.Size()
	return &pipeline.Job{Name: j.name, Chunks: (n + convertChunk - 1) / convertChunk,
		Size: func(c int) int { return (min(n, (c+1)*convertChunk) - c*convertChunk) * os },
		Run: func(c int, out []byte, w *pipeline.Worker) error {
			e0, e1 := c*convertChunk, min(n, (c+1)*convertChunk)
			b, err := p.input(j, w.Local.(*scratch)).bytes(e0*is, e1*is)
			if err == nil {
				err = dtype.Convert(out, j.out, b, j.in.info.DType)
			}
			if err != nil {
				return p.fail(j, err)
			}
			return nil
		}}
}

func (p *Plan) fail(j *job, err error) error {
	return fmt.Errorf("%s: tensor %q: %w", p.base.Path, j.input, err)
}

// requantize computes every re-quantized 4-bit weight first, into the
// spill file, so that the output header knows their state tensors' sizes.
func (p *Plan) requantize(ctx context.Context, spill *spillFile) error {
	var jobs []*pipeline.Job
	var results [][]piece // per job, written by its worker before the consumer reads it
	for _, j := range p.jobs {
		if j.mode != modeRequant {
			continue
		}
		i := len(jobs)
		results = append(results, nil)
		jobs = append(jobs, &pipeline.Job{Name: j.name, Chunks: 1,
			Run: func(_ int, _ []byte, w *pipeline.Worker) error {
				var err error
				results[i], err = p.requantizeOne(j, w.Local.(*scratch))
				return err
			},
			Finish: func() error {
				for _, pc := range results[i] {
					if err := spill.put(pc.name, pc.dt, pc.shape, pc.data); err != nil {
						return err
					}
				}
				results[i] = nil
				return nil
			}})
	}
	if len(jobs) == 0 {
		return nil
	}
	if err := pipeline.Run(ctx, p.engine(), jobs, nil); err != nil {
		return err
	}
	// Fix the header entries of the re-quantized tensors.
	for si := range p.shards {
		for ti, t := range p.shards[si].Tensors {
			if e, ok := spill.where[t.Name]; ok {
				p.shards[si].Tensors[ti] = safetensors.TensorInfo{Name: t.Name, DType: e.dt, Shape: e.shape}
			}
		}
	}
	return nil
}

// requantizeOne merges a 4-bit weight and quantizes it again with its
// original settings.
func (p *Plan) requantizeOne(j *job, s *scratch) ([]piece, error) {
	m, err := p.newMerger(j)
	if err != nil {
		return nil, p.fail(j, err)
	}
	full := make([]float32, num.Elements(j.shape))
	if err := m.compute(0, m.rows, s, nil, full); err != nil {
		return nil, p.fail(j, err)
	}
	if err := roundTo(full, j.out, s); err != nil {
		return nil, p.fail(j, err)
	}
	qs := j.in.quant.state
	q, err := nf4.QuantizeTensor(full, qs.Shape, nf4.Options{Type: qs.Type, Blocksize: qs.Blocksize, DoubleQuant: qs.Nested != nil, DType: qs.DType})
	if err != nil {
		return nil, p.fail(j, err)
	}
	var out []piece
	for _, nt := range q.Tensors(j.name) {
		out = append(out, piece{name: nt.Name, dt: nt.DType, shape: nt.Shape, data: nt.Data})
	}
	return out, nil
}
