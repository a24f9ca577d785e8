package quantize

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// dqWeight is one 4-bit weight being dequantized.
type dqWeight struct {
	name   string
	state  *nf4.QuantState
	out    dtype.DType
	n      int
	before int64 // bytes of the packed codes and every quant-state tensor
	packed []byte
	scales []float32
}

// Dequantize writes src, a bitsandbytes 4-bit checkpoint (written by
// Quantize or by transformers), with every 4-bit weight decoded as
// bitsandbytes' dequantize_4bit does and the quant-state tensors and
// quantization_config dropped, to out. Nothing is written when it fails.
func Dequantize(ctx context.Context, src *checkpoint.Source, out string, opts Options) (*Report, error) {
	return dequantize(ctx, src, out, opts, createAt(out, opts.Output()))
}

func dequantize(ctx context.Context, src *checkpoint.Source, out string, opts Options, create createSink) (*Report, error) {
	if opts.DType != "" && opts.DType != dtype.F32 && opts.DType != dtype.BF16 && opts.DType != dtype.F16 {
		return nil, fmt.Errorf("%w: output dtype %s (want F32, BF16 or F16)", nf4.ErrDType, opts.DType)
	}
	if _, err := model.BaseFrom(src, model.BaseOptions{}); err != nil {
		return nil, err
	}
	if !src.IsQuantized() {
		return nil, fmt.Errorf("%s: %w (no .quant_state.bitsandbytes__nf4 or __fp4 tensor)", src.Path, ErrNotQuantized)
	}
	files := maps.Clone(src.Files)
	if cfg, ok := files["config.json"]; ok && (hasQuantizationConfig(cfg) || opts.DType != "") {
		b, err := dequantizedConfig(cfg, opts.DType)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src.Path, err)
		}
		files["config.json"] = b
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	get, cleanup, err := openData(ctx, src, spoolDir(opts.TempDir, out), opts.Cleanup)
	if err != nil {
		return nil, err
	}
	defer cleanup()

	// Every 4-bit weight and its state, checked before anything is written.
	weights := map[string]*dqWeight{}
	for _, t := range src.Tensors {
		for _, suffix := range []string{nf4.SuffixQuantStateNF4, nf4.SuffixQuantStateFP4} {
			if w, ok := strings.CutSuffix(t.Name, suffix); ok && w != "" {
				weights[w] = &dqWeight{name: w}
			}
		}
	}
	tensor := func(name string) (nf4.Tensor, bool) {
		t, ok := src.Info(name)
		if !ok {
			return nf4.Tensor{}, false
		}
		data, err := get(name)
		if err != nil {
			return nf4.Tensor{}, false
		}
		return nf4.Tensor{DType: t.DType, Shape: t.Shape, Data: data}, true
	}
	names := slices.Sorted(maps.Keys(weights))
	for _, name := range names {
		w := weights[name]
		qs, _, err := nf4.ParseModule(name, tensor)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src.Path, err)
		}
		w.state, w.n, w.out = qs, int(qs.NumElements()), qs.DType
		if opts.DType != "" {
			w.out = opts.DType
		}
	}
	for _, t := range src.Tensors {
		wn := t.Name
		if _, ok := weights[wn]; !ok {
			var isState bool
			if wn, _, isState = nf4.SplitStateKey(t.Name); !isState {
				continue
			}
			if _, ok := weights[wn]; !ok {
				return nil, fmt.Errorf("%s: tensor %q: %w: a quant-state tensor without %s%s",
					src.Path, t.Name, nf4.ErrMissing, wn, nf4.SuffixQuantStateNF4)
			}
		}
		weights[wn].before += t.NumBytes()
	}

	shards := make([]checkpoint.Shard, len(src.Shards))
	prods := map[string]*producer{}
	rep := &Report{Schema: ReportVersion, Version: ReportVersion, Mode: "dequantize", Input: src.Path, Output: out}
	var total int64
	types := map[string]bool{}
	for i, sh := range src.Shards {
		shards[i].Name = sh.Name
		for _, t := range sh.Tensors {
			if w := weights[t.Name]; w != nil {
				shards[i].Tensors = append(shards[i].Tensors, safetensors.TensorInfo{Name: w.name, DType: w.out, Shape: w.state.Shape})
				prods[w.name] = &producer{job: w.job(get)}
				total += int64(w.n) * int64(w.out.Size())
				types[fmt.Sprintf("%s/%d/%v", w.state.Type, w.state.Blocksize, w.state.Nested != nil)] = true
				tr := TensorReport{Name: w.name, Shape: w.state.Shape, DTypeBefore: strings.ToUpper(w.state.Type.String()),
					DTypeAfter: string(w.out), Params: int64(w.n), BytesBefore: w.before,
					BytesAfter: int64(w.n) * int64(w.out.Size())}
				tr.finish()
				rep.Tensors = append(rep.Tensors, tr)
				rep.Quantized.add(tr)
				rep.Total.add(tr)
				continue
			}
			if wn, _, ok := nf4.SplitStateKey(t.Name); ok && weights[wn] != nil {
				continue
			}
			to := t.DType
			if opts.DType != "" && (to == dtype.F32 || to == dtype.BF16 || to == dtype.F16) {
				to = opts.DType
			}
			shards[i].Tensors = append(shards[i].Tensors, safetensors.TensorInfo{Name: t.Name, DType: to, Shape: t.Shape})
			name := t.Name
			if to == t.DType {
				prods[name] = &producer{data: func() ([]byte, error) { return get(name) }}
			} else {
				prods[name] = &producer{job: convertJob(t, to, get)}
			}
			after := t.NumElements() * int64(to.Size())
			total += after
			tr := TensorReport{Params: t.NumElements(), BytesBefore: t.NumBytes(), BytesAfter: after}
			rep.Other.add(tr)
			rep.Total.add(tr)
		}
	}
	if len(shards) == 1 {
		shards[0].Name = "model.safetensors"
	}
	if len(types) == 1 {
		for _, w := range weights {
			rep.QuantType, rep.Blocksize, rep.DoubleQuant = w.state.Type.String(), w.state.Blocksize, w.state.Nested != nil
			break
		}
	} else {
		rep.QuantType = "mixed"
	}
	slices.SortFunc(rep.Tensors, func(a, b TensorReport) int { return strings.Compare(a.Name, b.Name) })
	rep.Quantized.finish()
	rep.Other.finish()
	rep.Total.finish()

	wr, err := create(files, shards)
	if err != nil {
		return nil, err
	}
	p := newPool(ctx, opts.Threads)
	defer func() {
		cancel()
		p.close()
	}()
	var progress func(int64)
	if opts.Progress != nil {
		var done int64
		progress = func(n int64) { done += n; opts.Report(done, total) }
	}
	limit := budgetFor(opts.Budget, prods)
	if err := writeAll(ctx, wr, prods, p, limit, progress); err != nil {
		wr.Abort()
		return nil, err
	}
	if err := wr.Commit(); err != nil {
		return nil, err
	}
	return rep, nil
}

// job decodes w chunk by chunk: float32 products (spec 4), rounded to the
// output dtype.
func (w *dqWeight) job(get tensorData) *job {
	st := w.state
	bs := st.Blocksize
	es := w.out.Size()
	j := newJob(w.name, int64(w.n), int64(w.n)*int64(es), nil)
	j.prepare = func() error {
		packed, err := get(w.name)
		if err != nil {
			return err
		}
		if len(packed) != nf4.PackedLen(w.n) {
			return fmt.Errorf("tensor %q: %w: %d packed bytes for %d values", w.name, nf4.ErrState, len(packed), w.n)
		}
		w.packed, w.scales = packed, st.BlockAbsmax()
		return nil
	}
	j.release = func() {
		w.packed, w.scales = nil, nil
		w.state.Nested, w.state.Absmax = nil, nil
	}
	j.run = func(c int, s *scratch) error {
		lo, hi := c*chunkElems, min((c+1)*chunkElems, w.n)
		f := s.f32[:hi-lo]
		if err := nf4.Dequantize(f, w.packed[lo/2:nf4.PackedLen(hi)], w.scales[lo/bs:lo/bs+nf4.NumBlocks(hi-lo, bs)], bs, &st.Map); err != nil {
			return fmt.Errorf("tensor %q: %w", w.name, err)
		}
		return dtype.FromF32(j.out[lo*es:hi*es], f, w.out)
	}
	return j
}

// convertJob converts a carried-over float tensor to dtype to.
func convertJob(t safetensors.TensorInfo, to dtype.DType, get tensorData) *job {
	n := t.NumElements()
	ss, ds := t.DType.Size(), to.Size()
	var data []byte
	j := newJob(t.Name, n, n*int64(ds), nil)
	j.prepare = func() error {
		var err error
		data, err = get(t.Name)
		if err == nil && int64(len(data)) != t.NumBytes() {
			err = fmt.Errorf("tensor %q: %w", t.Name, safetensors.ErrTruncated)
		}
		return err
	}
	j.release = func() { data = nil }
	j.run = func(c int, _ *scratch) error {
		lo, hi := int64(c)*chunkElems, min(int64(c+1)*chunkElems, n)
		return dtype.Convert(j.out[lo*int64(ds):hi*int64(ds)], to, data[lo*int64(ss):hi*int64(ss)], t.DType)
	}
	return j
}
