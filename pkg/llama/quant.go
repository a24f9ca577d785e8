package llama

import (
	"fmt"

	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
)

// QuantLoader returns the bitsandbytes 4-bit state of the projection weight
// called name (a Hugging Face name such as
// "model.layers.0.self_attn.q_proj.weight") and its packed codes, as
// nf4.ParseModule returns them, or ok = false when that weight is not
// quantized (the model then reads it through its Loader). The model copies
// what it needs before the next call; packed may alias a mapped file.
type QuantLoader func(name string) (qs *nf4.QuantState, packed []byte, ok bool, err error)

// NF4Loader returns a QuantLoader over the raw tensors of a checkpoint
// (get returns a tensor by its full name, as for nf4.ParseModule): a weight
// is quantized when its ".quant_state.bitsandbytes__nf4" (or "__fp4")
// tensor exists.
func NF4Loader(get func(name string) (nf4.Tensor, bool)) QuantLoader {
	return func(name string) (*nf4.QuantState, []byte, bool, error) {
		_, nf := get(name + nf4.SuffixQuantStateNF4)
		_, fp := get(name + nf4.SuffixQuantStateFP4)
		if !nf && !fp {
			return nil, nil, false, nil
		}
		qs, packed, err := nf4.ParseModule(name, get)
		if err != nil {
			return nil, nil, false, err
		}
		return qs, packed, true, nil
	}
}

// quantWeight is a frozen projection weight held in its 4-bit form.
type quantWeight struct {
	q  compute.Quant4
	dt compute.DType // dtype it is dequantized into
}

// scratchDType returns the dtype a weight of original dtype orig is
// dequantized into: what a dense model with the same Options would hold.
func (m *Model) scratchDType(orig dtype.DType) compute.DType {
	if orig == dtype.BF16 || m.opt.WeightDType == compute.BF16 {
		return compute.BF16
	}
	return compute.F32
}

// quantTensor loads the 4-bit weight name of shape [out, in] onto the
// backend, or returns nil when qload does not have it quantized.
func (m *Model) quantTensor(qload QuantLoader, name string, out, in int) (*quantWeight, error) {
	if m.opt.Synthetic != nil {
		return m.syntheticQuant(name, out, in)
	}
	if qload == nil {
		return nil, nil
	}
	qs, packed, ok, err := qload(name)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	if !ok {
		return nil, nil
	}
	if err := qs.Validate(); err != nil {
		return nil, fmt.Errorf("%w: tensor %q: %w", ErrWeight, name, err)
	}
	if len(qs.Shape) != 2 || qs.Shape[0] != int64(out) || qs.Shape[1] != int64(in) {
		return nil, fmt.Errorf("%w: tensor %q has shape %v, want [%d %d]", ErrWeight, name, qs.Shape, out, in)
	}
	n := out * in
	if len(packed) != nf4.PackedLen(n) {
		return nil, fmt.Errorf("%w: tensor %q has %d packed bytes, want %d", ErrWeight, name, len(packed), nf4.PackedLen(n))
	}
	qw := &quantWeight{dt: m.scratchDType(qs.DType)}
	q := &qw.q
	q.N, q.Blocksize, q.RoundF16 = n, qs.Blocksize, qs.DType == dtype.F16
	u8 := func(x []byte) (compute.Buffer, error) {
		b, err := m.alloc(compute.U8, len(x))
		if err == nil {
			m.be.UploadBytes(b, x)
		}
		return b, err
	}
	f32 := func(x []float32) (compute.Buffer, error) {
		b, err := m.alloc(compute.F32, len(x))
		if err == nil {
			m.be.Upload(b, x)
		}
		return b, err
	}
	if q.Packed, err = u8(packed); err == nil {
		q.Code, err = f32(qs.Map[:])
	}
	if nd := qs.Nested; nd != nil {
		q.NestedBlocksize, q.Offset = nd.Blocksize, nd.Offset
		if err == nil {
			q.Absmax, err = u8(nd.Codes)
		}
		if err == nil {
			q.NestedAbsmax, err = f32(nd.Absmax)
		}
		if err == nil {
			q.NestedCode, err = f32(nd.Map[:])
		}
	} else if err == nil {
		q.Absmax, err = f32(qs.Absmax)
	}
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	return qw, nil
}

// allocDequantScratch allocates the buffers 4-bit weights are dequantized
// into: one per dtype in use, as large as the largest such weight.
func (m *Model) allocDequantScratch() error {
	size := map[compute.DType]int{}
	for l := range m.layers {
		for _, mod := range m.layers[l].mods {
			if mod.q != nil {
				size[mod.q.dt] = max(size[mod.q.dt], mod.out*mod.in)
			}
		}
	}
	for _, dt := range []compute.DType{compute.F32, compute.BF16} {
		if size[dt] == 0 {
			continue
		}
		b, err := m.alloc(dt, size[dt])
		if err != nil {
			return fmt.Errorf("dequantization scratch: %w", err)
		}
		if m.dq == nil {
			m.dq = map[compute.DType]compute.Buffer{}
		}
		m.dq[dt] = b
	}
	return nil
}

// weight returns the frozen weight of mod: its dense buffer, or its 4-bit
// form dequantized into the shared scratch buffer, valid until the next
// call for another module.
func (m *Model) weight(mod *module) compute.Buffer {
	if mod.q == nil {
		return mod.w
	}
	w := m.be.View(m.dq[mod.q.dt], 0, mod.out*mod.in)
	m.be.Dequantize4(w, mod.q.q)
	return w
}
