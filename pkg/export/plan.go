package export

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/gguf"
	"github.com/lorakit/lorakit/pkg/safetensors"
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
	from string                                       // a source tensor, read directly
	f32  func(get getter) ([]float32, []int64, error) // builds float32 data (NF4, transposes)
	gen  []float32                                    // generated data (rope_freqs)

	rows, cols int64       // HF row-major view: rows × cols
	perm       []int       // row order (q/k permutation), nil = identity
	scale      float32     // multiplies every value (adapters' folded scale)
	scaleSet   bool        // scale was set; otherwise it is 1
	in         dtype.DType // dtype of the source tensor (from)
}

type getter func(name string) ([]byte, safetensors.TensorInfo, bool)

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
}

// Write streams the file to w, reading the source once in its own order. It must be
// called at most once (a stream source can be read only once).
func (p *Plan) Write(ctx context.Context, w io.Writer, o WriteOptions) (*Stats, error) {
	st := &Stats{F16Overflows: map[string]int{}}
	cw := &countWriter{w: w, progress: o.Progress}
	bw := bufio.NewWriterSize(cw, 1<<20)
	gw, err := gguf.NewWriter(bw, p.Metadata, p.Tensors)
	if err != nil {
		return nil, err
	}
	pl := newPipeline(o.Threads)
	defer pl.stop()
	pos := sourceIndex(p.src)
	// Tensors read later by a multi-source item are kept until it is written.
	keep := map[string]int{}
	for _, it := range p.items {
		if len(it.deps) > 1 {
			for _, d := range it.deps {
				keep[d] = max(keep[d], it.last)
			}
		}
	}
	held := map[string]heldTensor{}
	next := 0
	emit := func(upTo int, cur *heldTensor) error {
		for next < len(p.items) && p.items[next].last <= upTo {
			it := &p.items[next]
			info := p.Tensors[next]
			get := func(name string) ([]byte, safetensors.TensorInfo, bool) {
				if cur != nil && cur.info.Name == name {
					return cur.data, cur.info, true
				}
				h, ok := held[name]
				return h.data, h.info, ok
			}
			ts := &tensorStats{}
			if err := p.writeItem(ctx, gw, bw, pl, info, it, get, ts); err != nil {
				return fmt.Errorf("%s: tensor %q: %w", p.Source, info.Name, err)
			}
			if ts.overflows > 0 {
				st.F16Overflows[info.Name] = ts.overflows
			}
			next++
		}
		return nil
	}
	if err := emit(-1, nil); err != nil {
		return nil, err
	}
	stream := !p.src.Random()
	err = p.src.Each(func(t safetensors.TensorInfo, data []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		i := pos[t.Name]
		cur := &heldTensor{info: t, data: data}
		if until, ok := keep[t.Name]; ok && until > i {
			if stream {
				cur.data = append([]byte(nil), data...)
			}
			held[t.Name] = *cur
		}
		if err := emit(i, cur); err != nil {
			return err
		}
		for name := range held {
			if keep[name] <= i {
				delete(held, name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if next != len(p.items) {
		return nil, fmt.Errorf("%s: tensor %q: %w: its source was not read", p.Source, p.Tensors[next].Name, ErrInvalid)
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

type heldTensor struct {
	info safetensors.TensorInfo
	data []byte
}

func (p *Plan) writeItem(ctx context.Context, gw *gguf.Writer, bw *bufio.Writer, pl *pipeline, info gguf.TensorInfo, it *item, get getter, ts *tensorStats) error {
	rowBytes, err := info.Type.RowBytes(it.cols)
	if err != nil {
		return err
	}
	var src []byte
	in := it.in
	switch {
	case it.gen != nil:
		src, in = num.F32Bytes(it.gen), dtype.F32
	case it.f32 != nil:
		f, shape, err := it.f32(get)
		if err != nil {
			return err
		}
		if !(len(shape) == 2 && shape[0] == it.rows && shape[1] == it.cols) && !(len(shape) == 1 && it.rows == 1 && shape[0] == it.cols) {
			return fmt.Errorf("%w: source shape %v, planned %d×%d", ErrInvalid, shape, it.rows, it.cols)
		}
		src, in = num.F32Bytes(f), dtype.F32
	default:
		data, t, ok := get(it.from)
		if !ok {
			return fmt.Errorf("%w: source tensor %q not available", ErrInvalid, it.from)
		}
		if t.DType != it.in || int64(len(data)) != it.rows*it.cols*int64(it.in.Size()) {
			return fmt.Errorf("%w: source tensor %q is %s %v, planned %s %d×%d", ErrInvalid, it.from, t.DType, t.Shape, it.in, it.rows, it.cols)
		}
		src = data
	}
	same := it.scale == 1 && sameEncoding(in, info.Type)
	if same && it.perm == nil && it.from == "" {
		return gw.WriteTensor(info.Name, src) // small generated or loaded tensors
	}
	// Even a plain copy goes through the workers: their reads fault the mapped input
	// in while the writer's syscalls run, which is faster than write(2) straight from
	// the mapping.
	fn := copyRows(src, rowBytes, it.perm)
	if !same {
		fn = encodeRows(src, in, it.cols, it.perm, it.scale, info.Type, ts)
	}
	// With its buffer empty, bufio hands the copy to countWriter.ReadFrom, which
	// writes the workers' chunks without copying them.
	if err := bw.Flush(); err != nil {
		return err
	}
	return pl.writeConverted(ctx, gw, info, it.rows, rowBytes, fn)
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

// ReadFrom writes a converted tensor's chunks straight from the workers' buffers when
// r is the io.LimitedReader that gguf.Writer.WriteTensorFrom wraps around a chunkStream;
// any other reader is copied through a 1 MiB buffer.
func (c *countWriter) ReadFrom(r io.Reader) (int64, error) {
	lr, ok := r.(*io.LimitedReader)
	var s *chunkStream
	if ok {
		s, _ = lr.R.(*chunkStream)
	}
	if s == nil {
		return io.CopyBuffer(struct{ io.Writer }{c}, r, make([]byte, 1<<20))
	}
	var n int64
	for lr.N > 0 {
		b, err := s.chunk()
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
		b = b[:min(int64(len(b)), lr.N)]
		m, err := c.Write(b)
		s.off += m
		lr.N -= int64(m)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func sourceIndex(src *checkpoint.Source) map[string]int {
	pos := make(map[string]int, len(src.Tensors))
	for i, t := range src.Tensors {
		pos[t.Name] = i
	}
	return pos
}
