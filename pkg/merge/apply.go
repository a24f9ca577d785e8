package merge

import (
	"fmt"
	"math"

	"github.com/lorakit/lorakit/internal/kernels/lowrank"
	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/pipeline"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// blockElems is the target size of a row block: tensors are decoded,
// merged and encoded this many elements at a time (whole rows).
const blockElems = 1 << 16

// scratch is a worker's reusable memory.
type scratch struct {
	v, w0, t, acc, deq, rep []float32
	bytes, in               []byte
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// prepared is a contribution with its adapter tensors loaded.
type prepared struct {
	*contrib
	l, r   []float32 // cLoRA/cDoRA: L (rows×rank), R (rank×cols)
	rank   int
	vec    []float32 // magnitude (cDoRA), IA³ vector, lora_B.bias
	factor []float32 // cDoRA with colScale: per-column factor
	raw    []byte    // cReplace/cTokens: the adapter tensor's bytes
	rawDT  dtype.DType
	rowOf  map[int64]int // cTokens: base row → delta row
}

// shape2 views a tensor as rows × cols (1-D: one row; 0-D: 1×1; more
// dimensions: the first against the rest).
func shape2(shape []int64) (rows, cols int) {
	switch len(shape) {
	case 0:
		return 1, 1
	case 1:
		return 1, int(shape[0])
	}
	return int(shape[0]), int(num.Elements(shape[1:]))
}

// prepare loads the adapter tensors of j's contributions as float32, in
// the layout the kernel wants.
func (p *Plan) prepare(j *job) ([]*prepared, error) {
	var out []*prepared
	for _, c := range j.contribs {
		pc := &prepared{contrib: c}
		ad := c.ad
		var err error
		switch c.kind {
		case cLoRA, cDoRA:
			m := c.mod
			a, err := ad.Float32(m.A)
			if err != nil {
				return nil, err
			}
			b, err := ad.Float32(m.B)
			if err != nil {
				return nil, err
			}
			r, in, outF := m.Rank, int(m.In), int(m.Out)
			if m.Transposed { // MLX: A is (in, r), B is (r, out)
				a, b = num.Transpose(a, in, r), num.Transpose(b, r, outF)
			}
			pc.rank = r
			if c.transposed { // stored rows are the inputs: L = Aᵀ, R = Bᵀ
				pc.l, pc.r = num.Transpose(a, r, in), num.Transpose(b, outF, r)
			} else {
				pc.l, pc.r = b, a
			}
			if c.kind == cDoRA {
				if pc.vec, err = ad.Float32(m.Magnitude); err != nil {
					return nil, err
				}
			}
		case cIA3:
			pc.vec, err = ad.Float32(c.key)
		case cLoRABias:
			pc.vec, err = ad.Float32(c.key)
		case cReplace, cTokens:
			t, ok := ad.Info(c.key)
			if !ok {
				return nil, fmt.Errorf("%s: %w: %q", ad.Path, safetensors.ErrNotFound, c.key)
			}
			pc.rawDT = t.DType
			pc.raw, err = ad.Data(c.key)
			if c.kind == cTokens {
				pc.rowOf = make(map[int64]int, len(c.tokens))
				for i, row := range c.tokens {
					pc.rowOf[row] = i
				}
			}
		}
		if err != nil {
			return nil, err
		}
		out = append(out, pc)
	}
	return out, nil
}

// input gives ranges of a job's base tensor, read through the plan's
// pipeline.Input (pread for a file) into scratch.
type input struct {
	in   *pipeline.Input
	name string
	buf  *[]byte
}

// bytes returns input bytes [lo, hi), valid until the next call.
func (in *input) bytes(lo, hi int) ([]byte, error) {
	*in.buf = grow(*in.buf, hi-lo)
	if err := in.in.ReadAt(in.name, *in.buf, int64(lo)); err != nil {
		return nil, err
	}
	return *in.buf, nil
}

// decoder fills v with the base values of elements [e0, e1) as float32.
type decoder func(v []float32, e0, e1 int) error

// decoder returns how to read j's base values: converted from the stored
// dtype, or dequantized from 4 bits. Each call reads only the bytes of its
// range (for 4 bits, of the enclosing quantization blocks).
func (p *Plan) decoder(j *job, in *input, s *scratch) decoder {
	bt := j.in
	if q := bt.quant; q != nil {
		qs := q.state
		absmax := qs.BlockAbsmax()
		n := int(qs.NumElements())
		bs := qs.Blocksize
		return func(v []float32, e0, e1 int) error {
			// Dequantize the enclosing whole blocks, then round to the
			// state's dtype as bitsandbytes' dequantize_4bit returns it.
			as, ae := e0-e0%bs, min(n, (e1+bs-1)/bs*bs)
			packed, err := in.bytes(as/2, nf4.PackedLen(ae))
			if err != nil {
				return err
			}
			s.deq = grow(s.deq, ae-as)
			if err := nf4.Dequantize(s.deq, packed, absmax[as/bs:nf4.NumBlocks(ae, bs)], bs, &qs.Map); err != nil {
				return err
			}
			copy(v, s.deq[e0-as:e1-as])
			return roundTo(v, qs.DType, s)
		}
	}
	size := bt.info.DType.Size()
	dt := bt.info.DType
	return func(v []float32, e0, e1 int) error {
		b, err := in.bytes(e0*size, e1*size)
		if err != nil {
			return err
		}
		return dtype.ToF32(v, b, dt)
	}
}

// roundTo rounds v to dt's precision (round to nearest even) in place.
func roundTo(v []float32, dt dtype.DType, s *scratch) error {
	if dt == dtype.F32 {
		return nil
	}
	s.bytes = grow(s.bytes, len(v)*dt.Size())
	if err := dtype.FromF32(s.bytes, v, dt); err != nil {
		return err
	}
	return dtype.ToF32(v, s.bytes, dt)
}

// merger is one job's merge, ready to compute any range of its rows on any
// worker: the contributions loaded once, the per-column DoRA factors
// computed. Rows are independent (a row's merged values, and its DoRA row
// norm, depend on that row alone), so ranges computed apart give the bytes
// of the whole.
type merger struct {
	p            *Plan
	j            *job
	pcs          []*prepared
	rows, cols   int
	block        int // rows per block: decoded, merged and encoded in cache
	sole, needW0 bool
}

// blockRows is the number of rows of a row block of a tensor with cols
// columns: about blockElems values, whole 4-row kernel tiles
// (internal/kernels/lowrank) when more than 4.
func blockRows(cols int) int {
	block := max(1, blockElems/max(1, cols))
	if block > 4 {
		block &^= 3
	}
	return block
}

// newMerger loads j's contributions and, for a per-column DoRA, makes the
// pass over the whole tensor its column norms need.
func (p *Plan) newMerger(j *job) (*merger, error) {
	pcs, err := p.prepare(j)
	if err != nil {
		return nil, err
	}
	m := &merger{p: p, j: j, pcs: pcs, sole: len(pcs) == 1 && pcs[0].weight == 1}
	m.rows, m.cols = shape2(j.shape)
	m.block = blockRows(m.cols)
	for _, pc := range pcs {
		if pc.kind != cLoRA && pc.kind != cLoRABias {
			m.needW0 = m.needW0 || !m.sole
		}
	}
	if m.rows == 0 || m.cols == 0 {
		return m, nil
	}
	var s *scratch
	for _, pc := range pcs {
		if pc.kind != cDoRA || !pc.colScale {
			continue
		}
		if s == nil {
			s = new(scratch)
		}
		dec := p.decoder(j, p.input(j, s), s)
		rows, cols := m.rows, m.cols
		// torch reduces a strided dimension sequentially in float32.
		sum := make([]float32, cols)
		for r0 := 0; r0 < rows; r0 += m.block {
			r1 := min(rows, r0+m.block)
			s.t = grow(s.t, (r1-r0)*cols)
			if err := dec(s.t, r0*cols, r1*cols); err != nil {
				return nil, err
			}
			p.addLoRA(pc, s.t, r0, r1, cols, pc.scale, s)
			for i := 0; i < r1-r0; i++ {
				for c, x := range s.t[i*cols : (i+1)*cols] {
					sum[c] = float32(sum[c] + float32(x*x))
				}
			}
		}
		pc.factor = make([]float32, cols)
		for c := range sum {
			pc.factor[c] = pc.vec[c] / float32(math.Sqrt(float64(sum[c])))
		}
	}
	return m, nil
}

// compute merges rows [r0, r1) block by block, each block decoded, merged
// and encoded while in cache: into out (those rows encoded as j.out) or,
// when full is not nil, into full (the whole tensor as float32).
func (m *merger) compute(r0, r1 int, s *scratch, out []byte, full []float32) error {
	p, j, cols := m.p, m.j, m.cols
	if r0 >= r1 || cols == 0 {
		return nil
	}
	dec := p.decoder(j, p.input(j, s), s)
	sz := j.out.Size()
	for b0 := r0; b0 < r1; b0 += m.block {
		b1 := min(r1, b0+m.block)
		n := (b1 - b0) * cols
		var v []float32
		if full != nil {
			v = full[b0*cols : b1*cols]
		} else {
			s.v = grow(s.v, n)
			v = s.v
		}
		if err := dec(v, b0*cols, b1*cols); err != nil {
			return err
		}
		var w0 []float32
		if m.needW0 {
			s.w0 = grow(s.w0, n)
			w0 = s.w0
			copy(w0, v)
		}
		for _, pc := range m.pcs {
			if err := p.apply(pc, v, w0, m.sole, b0, b1, cols, s); err != nil {
				return err
			}
		}
		if p.opts.Safe {
			for i, x := range v {
				if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
					return fmt.Errorf("%w: tensor %q, element %d: %v", ErrNonFinite, j.name, b0*cols+i, x)
				}
			}
		}
		if out != nil {
			o := (b0 - r0) * cols * sz
			if err := dtype.FromF32(out[o:o+n*sz], v, j.out); err != nil {
				return fmt.Errorf("tensor %q: %w", j.name, err)
			}
		}
	}
	return nil
}

// addLoRA adds pc's low-rank delta, scaled by scale, to rows [r0, r1).
func (p *Plan) addLoRA(pc *prepared, v []float32, r0, r1, cols int, scale float32, s *scratch) {
	s.acc = lowrank.Add(v, r1-r0, cols, pc.l[r0*pc.rank:r1*pc.rank], pc.r, pc.rank, scale, s.acc)
}

// apply adds one contribution to the block v (rows [r0, r1)). With sole
// set it is the tensor's only contribution with weight 1 and is applied
// exactly as PEFT merges it; otherwise it adds w·(merge(W0) − W0), with w0
// the block's base values.
func (p *Plan) apply(pc *prepared, v, w0 []float32, sole bool, r0, r1, cols int, s *scratch) error {
	w := float32(pc.weight)
	// mix stores the contribution's merged value x for element i.
	mix := func(i int, x float32) {
		if sole {
			v[i] = x
		} else {
			v[i] = float32(v[i] + float32(w*float32(x-w0[i])))
		}
	}
	switch pc.kind {
	case cLoRA:
		p.addLoRA(pc, v, r0, r1, cols, pc.scale, s)
	case cLoRABias:
		for c := range v {
			v[c] = float32(v[c] + float32(pc.vec[c]*pc.scale))
		}
	case cDoRA:
		t := v
		if !sole {
			s.t = grow(s.t, len(v))
			t = s.t
			copy(t, w0)
		}
		p.addLoRA(pc, t, r0, r1, cols, pc.scale, s)
		for i := 0; i < r1-r0; i++ {
			row := t[i*cols : (i+1)*cols]
			if pc.colScale {
				for c, x := range row {
					mix(i*cols+c, float32(pc.factor[c]*x))
				}
				continue
			}
			f := pc.vec[r0+i] / rowNorm(row)
			for c, x := range row {
				mix(i*cols+c, float32(f*x))
			}
		}
	case cIA3:
		src := v
		if !sole {
			src = w0
		}
		for i := 0; i < r1-r0; i++ {
			for c := 0; c < cols; c++ {
				k := i*cols + c
				l := pc.vec[r0+i]
				if pc.colScale {
					l = pc.vec[c]
				}
				mix(k, float32(src[k]*l))
			}
		}
	case cReplace:
		n := len(v)
		s.rep = grow(s.rep, n)
		sz := pc.rawDT.Size()
		if err := dtype.ToF32(s.rep, pc.raw[r0*cols*sz:r1*cols*sz], pc.rawDT); err != nil {
			return fmt.Errorf("%s: tensor %q: %w", pc.ad.Path, pc.key, err)
		}
		for k, x := range s.rep {
			mix(k, x)
		}
	case cTokens:
		sz := pc.rawDT.Size()
		s.rep = grow(s.rep, cols)
		for i := 0; i < r1-r0; i++ {
			t, ok := pc.rowOf[int64(r0+i)]
			if !ok {
				continue
			}
			if err := dtype.ToF32(s.rep, pc.raw[t*cols*sz:(t+1)*cols*sz], pc.rawDT); err != nil {
				return fmt.Errorf("%s: tensor %q: %w", pc.ad.Path, pc.key, err)
			}
			for c, x := range s.rep {
				mix(i*cols+c, x)
			}
		}
	}
	return nil
}

// rowNorm is the L2 norm of a row as torch 2.11 computes
// torch.linalg.norm(W, dim=1) for a contiguous float32 row on the CPU (the
// vectorized path with 8-lane AVX2 vectors): eight float32 partial sums of
// x·x (product rounded, then added), summed left to right, the tail added
// one by one, then a float32 square root. With it DoRA merges of the
// fixtures match PEFT bit for bit.
func rowNorm(row []float32) float32 {
	var acc [8]float32
	d := 0
	for ; d+8 <= len(row); d += 8 {
		for j, x := range row[d : d+8] {
			acc[j] = float32(acc[j] + float32(x*x))
		}
	}
	s := acc[0]
	for _, a := range acc[1:] {
		s = float32(s + a)
	}
	for _, x := range row[d:] {
		s = float32(s + float32(x*x))
	}
	return float32(math.Sqrt(float64(s)))
}
