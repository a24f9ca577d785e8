package inspect

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

type quantWeight struct {
	params    int64
	quantType string
}

type quantSummary struct {
	quantType   string
	blocksize   int
	doubleQuant bool
	params      int64 // logical parameters of the 4-bit weights
	bytes       int64 // bytes of the 4-bit weights and their state
	weights     map[string]quantWeight
	aux         map[string]bool
}

// quantized reads the packed quant-state JSON of every 4-bit weight (a few
// hundred bytes each; from a stream, the stream is read through).
func quantized(src *checkpoint.Source) (*quantSummary, error) {
	states := map[string][]byte{}
	isState := func(name string) bool {
		return strings.HasSuffix(name, nf4.SuffixQuantStateNF4) || strings.HasSuffix(name, nf4.SuffixQuantStateFP4)
	}
	if src.Random() {
		for _, t := range src.Tensors {
			if isState(t.Name) {
				b, err := src.Data(t.Name)
				if err != nil {
					return nil, err
				}
				states[t.Name] = b
			}
		}
	} else {
		err := src.Each(func(t safetensors.TensorInfo, data []byte) error {
			if isState(t.Name) {
				states[t.Name] = bytes.Clone(data)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	q := &quantSummary{weights: map[string]quantWeight{}, aux: map[string]bool{}}
	for _, t := range src.Tensors {
		if w, _, ok := nf4.SplitStateKey(t.Name); ok {
			q.aux[t.Name] = true
			q.bytes += t.NumBytes()
			_ = w
		}
	}
	types := map[string]bool{}
	for name, js := range states {
		weight, _, _ := nf4.SplitStateKey(name)
		qs, err := nf4.ParseStateJSON(js)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", src.Path, name, err)
		}
		wt, ok := src.Info(weight)
		if !ok {
			return nil, fmt.Errorf("%s: tensor %q: %w: its packed weight %q is missing", src.Path, name, nf4.ErrMissing, weight)
		}
		if want := int64(nf4.PackedLen(int(qs.NumElements()))); wt.NumBytes() != want {
			return nil, fmt.Errorf("%s: tensor %q: %w: %d packed bytes for shape %v (want %d)", src.Path, weight, nf4.ErrState, wt.NumBytes(), qs.Shape, want)
		}
		n := qs.NumElements()
		q.weights[weight] = quantWeight{params: n, quantType: qs.Type.String()}
		q.params += n
		q.bytes += wt.NumBytes()
		types[qs.Type.String()] = true
		if q.blocksize == 0 || qs.Blocksize == q.blocksize {
			q.blocksize = qs.Blocksize
		} else {
			q.blocksize = -1 // mixed
		}
		if qs.Nested != nil {
			q.doubleQuant = true
		}
	}
	q.quantType = strings.Join(sortedKeys(types), ",")
	return q, nil
}
