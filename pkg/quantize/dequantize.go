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
	"github.com/lorakit/lorakit/pkg/pipeline"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// dqWeight is one 4-bit weight being dequantized.
type dqWeight struct {
	name   string
	state  *nf4.QuantState
	out    dtype.DType
	n      int
	before int64 // bytes of the packed codes and every quant-state tensor
	scales []float32
}

// Dequantize writes src, a bitsandbytes 4-bit checkpoint (written by
// Quantize or by transformers), with every 4-bit weight decoded as
// bitsandbytes' dequantize_4bit does and the quant-state tensors and
// quantization_config dropped, to out. Nothing is written when it fails.
func Dequantize(ctx context.Context, src *checkpoint.Source, out string, opts Options) (*Report, error) {
	return dequantize(ctx, src, out, opts, createAt(out, opts))
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

	in := pipeline.NewInput(src, pipeline.InputOptions{TempDir: opts.SpillDir(out)})
	defer in.Close()

	// Every 4-bit weight and its state, checked before anything is written.
	weights := map[string]*dqWeight{}
	for _, t := range src.Tensors {
		for _, suffix := range []string{nf4.SuffixQuantStateNF4, nf4.SuffixQuantStateFP4} {
			if w, ok := strings.CutSuffix(t.Name, suffix); ok && w != "" {
				weights[w] = &dqWeight{name: w}
			}
		}
	}
	names := slices.Sorted(maps.Keys(weights))
	for _, name := range names {
		w := weights[name]
		qs, err := in.QuantState(name)
		if err != nil {
			return nil, err
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
			in.Done(t.Name) // read for the state; not written
		}
		weights[wn].before += t.NumBytes()
	}

	shards := make([]checkpoint.Shard, len(src.Shards))
	jobs := map[string]*pipeline.Job{}
	rep := &Report{Schema: ReportVersion, Version: ReportVersion, Mode: "dequantize", Input: src.Path, Output: out}
	var total int64
	types := map[string]bool{}
	for i, sh := range src.Shards {
		shards[i].Name = sh.Name
		for _, t := range sh.Tensors {
			if w := weights[t.Name]; w != nil {
				shards[i].Tensors = append(shards[i].Tensors, safetensors.TensorInfo{Name: w.name, DType: w.out, Shape: w.state.Shape})
				jobs[w.name] = w.job(in)
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
			if to == t.DType {
				jobs[t.Name] = in.CopyJob(t.Name)
			} else {
				jobs[t.Name] = convertJob(in, t, to)
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
	if err := writeAll(ctx, wr, jobs, opts, total); err != nil {
		wr.Abort()
		return nil, err
	}
	if err := wr.Commit(); err != nil {
		return nil, err
	}
	return rep, nil
}

// job decodes w chunk by chunk: float32 products (spec 4), rounded to the
// output dtype. Each chunk reads its packed codes with pread.
func (w *dqWeight) job(in *pipeline.Input) *pipeline.Job {
	st := w.state
	bs := st.Blocksize
	es := w.out.Size()
	return &pipeline.Job{Name: w.name, Chunks: elemChunks(w.n),
		Size: func(c int) int {
			lo, hi := span(c, w.n)
			return (hi - lo) * es
		},
		Prepare: func() error {
			w.scales = st.BlockAbsmax()
			return nil
		},
		Run: func(c int, out []byte, wk *pipeline.Worker) error {
			s := wk.Local.(*scratch)
			lo, hi := span(c, w.n)
			packed := wk.Buf(nf4.PackedLen(hi) - lo/2)
			if err := in.ReadAt(w.name, packed, int64(lo/2)); err != nil {
				return err
			}
			f := s.f32[:hi-lo]
			if err := nf4.Dequantize(f, packed, w.scales[lo/bs:lo/bs+nf4.NumBlocks(hi-lo, bs)], bs, &st.Map); err != nil {
				return fmt.Errorf("tensor %q: %w", w.name, err)
			}
			return dtype.FromF32(out, f, w.out)
		},
		Finish: func() error {
			w.scales = nil
			w.state.Nested, w.state.Absmax = nil, nil
			in.Done(w.name)
			return nil
		},
	}
}

// convertJob converts a carried-over float tensor to dtype to.
func convertJob(in *pipeline.Input, t safetensors.TensorInfo, to dtype.DType) *pipeline.Job {
	n := int(t.NumElements())
	ss, ds := t.DType.Size(), to.Size()
	return &pipeline.Job{Name: t.Name, Chunks: elemChunks(n),
		Size: func(c int) int {
			lo, hi := span(c, n)
			return (hi - lo) * ds
		},
		Run: func(c int, out []byte, wk *pipeline.Worker) error {
			lo, hi := span(c, n)
			raw := wk.Buf((hi - lo) * ss)
			if err := in.ReadAt(t.Name, raw, int64(lo*ss)); err != nil {
				return err
			}
			return dtype.Convert(out, to, raw, t.DType)
		},
		Finish: func() error { in.Done(t.Name); return nil },
	}
}
