package llama

import (
	"hash/fnv"
	"io"

	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
)

// seed returns the FillUniform seed of tensor name.
func (s *Synthetic) seed(name string) uint64 {
	h := fnv.New64a()
	io.WriteString(h, name)
	return s.Seed ^ h.Sum64()
}

// syntheticTensor makes tensor name on the backend under Options.Synthetic
// (ok false otherwise), uniform in ±Scale (norms are normTensor's).
func (m *Model) syntheticTensor(name string, dt compute.DType, shape []int) (compute.Buffer, bool, error) {
	s := m.opt.Synthetic
	if s == nil {
		return nil, false, nil
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	b, err := m.alloc(dt, n)
	if err != nil {
		return nil, true, err
	}
	m.be.FillUniform(b, s.seed(name), -s.Scale, s.Scale)
	return b, true, nil
}

// syntheticQuant makes projection name as random NF4 codes with double
// quantization under Options.Synthetic.NF4 (nil otherwise): random
// nibbles, random 8-bit block-scale codes, nested scales of Scale/4 and an
// offset of Scale, so block scales fall within 0.75–1.25 × Scale.
func (m *Model) syntheticQuant(name string, out, in int) (*quantWeight, error) {
	s := m.opt.Synthetic
	if s == nil || !s.NF4 {
		return nil, nil
	}
	n := out * in
	blocks := nf4.NumBlocks(n, nf4.DefaultBlocksize)
	qw := &quantWeight{dt: m.scratchDType(dtype.F32)}
	q := &qw.q
	q.N, q.Blocksize, q.NestedBlocksize, q.Offset = n, nf4.DefaultBlocksize, nf4.NestedBlocksize, s.Scale
	code, dyn := nf4.NF4.Code(), nf4.DynamicMap()
	var err error
	alloc := func(dt compute.DType, n int, seed uint64, lo, hi float32) compute.Buffer {
		if err != nil {
			return nil
		}
		var b compute.Buffer
		if b, err = m.alloc(dt, n); err == nil {
			m.be.FillUniform(b, seed, lo, hi)
		}
		return b
	}
	seed := s.seed(name)
	q.Packed = alloc(compute.U8, nf4.PackedLen(n), seed, 0, 0)
	q.Absmax = alloc(compute.U8, blocks, seed+1, 0, 0)
	q.NestedAbsmax = alloc(compute.F32, (blocks+q.NestedBlocksize-1)/q.NestedBlocksize, 0, s.Scale/4, s.Scale/4)
	q.Code = alloc(compute.F32, len(code), 0, 0, 0)
	q.NestedCode = alloc(compute.F32, len(dyn), 0, 0, 0)
	if err != nil {
		return nil, err
	}
	m.be.Upload(q.Code, code[:])
	m.be.Upload(q.NestedCode, dyn[:])
	return qw, nil
}
