package export

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/gguf"
	"github.com/lorakit/lorakit/pkg/pipeline"
)

// Plan is a complete description of a GGUF file to write: its metadata and tensor
// infos (so every offset is known before the first byte) and, for each tensor, how to
// make it from the source.
type Plan struct {
	// Kind is "model" or "adapter".
	Kind string
	// Metadata holds the key/value pairs in file order.
	Metadata gguf.Metadata
	// Tensors holds the tensor infos in file order (offsets are filled by the writer).
	Tensors []gguf.TensorInfo
	// Notes describe the choices made (scaling rule, type fallbacks, dropped tensors).
	Notes []string
	// Warnings are findings the user should see.
	Warnings []string
	// Vocab is the tokenizer metadata of a model (nil for adapters).
	Vocab *Vocab
	// Source is the input path.
	Source string
	// Params is the number of elements over all tensors.
	Params int64

	src   *checkpoint.Source
	items []item // parallel to Tensors
}

// item says how one output tensor is made.
type item struct {
	// deps are the source tensors it reads, and last the position in the source's
	// reading order of the last of them (-1 for generated tensors).
	deps []string
	last int
	// Exactly one of the following makes the float data or bytes.
	from string    // a source tensor, read directly
	f32  loader    // builds float32 data (NF4, transposes)
	gen  []float32 // generated data (rope_freqs)

	rows, cols int64       // HF row-major view of the output: rows × cols
	srcRows    int64       // rows of the source when more than rows (a trimmed vocabulary); 0: rows
	perm       []int       // row order (q/k permutation), nil = identity
	add        float32     // added to every value before scale (Gemma's norms: 1 + w)
	scale      float32     // multiplies every value (a folded factor, adapters' folded scale)
	scaleSet   bool        // scale was set; otherwise it is 1
	in         dtype.DType // dtype of the source tensor (from)
}

// loader builds an item's float32 data and its shape from the source.
type loader func(in *pipeline.Input) ([]float32, []int64, error)

// Stats are what a Write found while converting.
type Stats struct {
	// Bytes is the size of the file written.
	Bytes int64
	// F16Overflows counts finite values that became ±Inf in F16, per tensor.
	F16Overflows map[string]int
}

// Size returns the size in bytes of the file the plan writes.
func (p *Plan) Size() int64 {
	h, err := gguf.NewWriter(io.Discard, p.Metadata, p.Tensors)
	if err != nil {
		return -1
	}
	return h.Size()
}

// WriteOptions tune Plan.Write.
type WriteOptions struct {
	// Threads is the number of conversion goroutines (0: GOMAXPROCS). The output does
	// not depend on it.
	Threads int
	// Progress, if set, is called with the number of bytes written since the last call.
	Progress func(n int64)
	// TempDir holds the spill file of a streamed source read out of its order ("":
	// os.TempDir()); plans read sources in order, so it is rarely used.
	TempDir string
}

// Write streams the file to w through the streaming engine (package pipeline): every
// tensor is converted in chunks of rows on the workers and written in order, reading
// the source with pread (a file) or once in its own order (a stream). It must be called
// at most once (a stream source can be read only once).
func (p *Plan) Write(ctx context.Context, w io.Writer, o WriteOptions) (*Stats, error) {
	st := &Stats{F16Overflows: map[string]int{}}
	cw := &countWriter{w: w, progress: o.Progress}
	bw := bufio.NewWriterSize(cw, 1<<20)
	gw, err := gguf.NewWriter(bw, p.Metadata, p.Tensors)
	if err != nil {
		return nil, err
	}
	in := pipeline.NewInput(p.src, pipeline.InputOptions{TempDir: o.TempDir})
	defer in.Close()
	// A source tensor is released after the last item reading it; one no item
	// reads is skipped.
	lastUse := map[string]int{}
	for i, it := range p.items {
		for _, d := range it.deps {
			lastUse[d] = i
		}
	}
	for _, t := range p.src.Tensors {
		if _, ok := lastUse[t.Name]; !ok {
			in.Done(t.Name)
		}
	}
	jobs := make([]*pipeline.Job, len(p.items))
	for i := range p.items {
		jobs[i] = p.job(i, in, lastUse, st)
	}
	scratch := func() any { return new([]float32) }
	err = pipeline.Run(ctx, pipeline.Options{Workers: o.Threads, Local: scratch}, jobs, func(_ *pipeline.Job, _ int, out []byte) error {
		_, err := gw.Write(out)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := gw.Close(); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	st.Bytes = cw.n
	return st, nil
}

// job is the engine's job for item i: its rows converted in chunks of about
// chunkBytes of output.
func (p *Plan) job(i int, in *pipeline.Input, lastUse map[string]int, st *Stats) *pipeline.Job {
	it, info := &p.items[i], p.Tensors[i]
	fail := func(err error) error { return fmt.Errorf("%s: tensor %q: %w", p.Source, info.Name, err) }
	rowBytes, rbErr := info.Type.RowBytes(it.cols)
	per := max(1, chunkBytes/max(rowBytes, 1))
	ts := &tensorStats{}
	var (
		src []byte      // float data made in Prepare (generated or loaded items)
		dt  dtype.DType // the dtype of the data converted
	)
	srcRows := cmp.Or(it.srcRows, it.rows)
	j := &pipeline.Job{Name: info.Name, Chunks: int((it.rows + per - 1) / per)}
	if rbErr != nil {
		j.Chunks = 0
	}
	j.Size = func(c int) int {
		r0 := int64(c) * per
		return int((min(it.rows, r0+per) - r0) * rowBytes)
	}
	j.Prepare = func() error {
		if rbErr != nil {
			return fail(rbErr)
		}
		switch {
		case it.gen != nil:
			src, dt = num.F32Bytes(it.gen), dtype.F32
		case it.f32 != nil:
			f, shape, err := it.f32(in)
			if err != nil {
				return fail(err)
			}
			if !(len(shape) == 2 && shape[0] == srcRows && shape[1] == it.cols) && !(len(shape) == 1 && it.rows == 1 && shape[0] == it.cols) {
				return fail(fmt.Errorf("%w: source shape %v, planned %d×%d", ErrInvalid, shape, srcRows, it.cols))
			}
			src, dt = num.F32Bytes(f), dtype.F32
		default:
			t, ok := in.Info(it.from)
			if !ok {
				return fail(fmt.Errorf("%w: source tensor %q not available", ErrInvalid, it.from))
			}
			if t.DType != it.in || t.NumBytes() != srcRows*it.cols*int64(it.in.Size()) {
				return fail(fmt.Errorf("%w: source tensor %q is %s %v, planned %s %d×%d", ErrInvalid, it.from, t.DType, t.Shape, it.in, srcRows, it.cols))
			}
			dt = it.in
		}
		return nil
	}
	// read fills buf with source rows [r0, r1) in output order (the q/k
	// permutation applied): from src, or with pread.
	read := func(buf []byte, r0, r1 int64) error {
		inRow := it.cols * int64(dt.Size())
		for r := r0; r < r1; {
			s, n := r, r1-r
			if it.perm != nil {
				s, n = int64(it.perm[r]), 1
			}
			dst := buf[(r-r0)*inRow : (r-r0+n)*inRow]
			if src != nil {
				copy(dst, src[s*inRow:(s+n)*inRow])
			} else if err := in.ReadAt(it.from, dst, s*inRow); err != nil {
				return err
			}
			r += n
		}
		return nil
	}
	j.Run = func(c int, out []byte, w *pipeline.Worker) error {
		r0 := int64(c) * per
		r1 := min(it.rows, r0+per)
		buf := w.Buf(int((r1 - r0) * it.cols * int64(dt.Size())))
		if err := read(buf, r0, r1); err != nil {
			return err
		}
		conv := copyRows(buf, rowBytes)
		if it.scale != 1 || it.add != 0 || !sameEncoding(dt, info.Type) {
			conv = encodeRows(buf, dt, it.cols, it.add, it.scale, info.Type, ts)
		}
		if err := conv(out, 0, r1-r0, w.Local.(*[]float32)); err != nil {
			return fail(err)
		}
		return nil
	}
	j.Finish = func() error {
		if ts.overflows > 0 {
			st.F16Overflows[info.Name] = ts.overflows
		}
		for _, d := range it.deps {
			if lastUse[d] == i {
				in.Done(d)
			}
		}
		src = nil
		return nil
	}
	return j
}

// sameEncoding reports whether values of dtype d are stored as GGUF type t unchanged.
func sameEncoding(d dtype.DType, t gguf.Type) bool {
	return d == dtype.F32 && t == gguf.TypeF32 || d == dtype.F16 && t == gguf.TypeF16 || d == dtype.BF16 && t == gguf.TypeBF16
}

// order sorts the items (and tensors) by the position of their last source tensor, so
// that Write can emit each as soon as its sources have been read. Generated tensors
// come first; ties keep their planned order.
func (p *Plan) order() {
	idx := make([]int, len(p.items))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return p.items[idx[a]].last < p.items[idx[b]].last })
	items := make([]item, len(idx))
	tensors := make([]gguf.TensorInfo, len(idx))
	for i, j := range idx {
		items[i], tensors[i] = p.items[j], p.Tensors[j]
	}
	p.items, p.Tensors = items, tensors
}

// add appends a tensor and its recipe. The recipe's last is computed from deps.
func (p *Plan) add(t gguf.TensorInfo, it item, pos map[string]int) {
	it.last = -1
	for _, d := range it.deps {
		it.last = max(it.last, pos[d])
	}
	if !it.scaleSet {
		it.scale = 1
	}
	p.Tensors = append(p.Tensors, t)
	p.items = append(p.items, it)
	p.Params += t.NumElements()
}

type countWriter struct {
	w        io.Writer
	n        int64
	progress func(int64)
}

// Write forwards p in pieces of at most 16 MiB so progress moves smoothly.
func (c *countWriter) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		k := min(len(p), 16<<20)
		n, err := c.w.Write(p[:k])
		total += n
		c.n += int64(n)
		if c.progress != nil && n > 0 {
			c.progress(int64(n))
		}
		if err != nil {
			return total, err
		}
		p = p[k:]
	}
	return total, nil
}

func sourceIndex(src *checkpoint.Source) map[string]int {
	pos := make(map[string]int, len(src.Tensors))
	for i, t := range src.Tensors {
		pos[t.Name] = i
	}
	return pos
}
