// Package quantize converts Hugging Face checkpoints to the bitsandbytes
// 4-bit format that transformers loads (NF4 or FP4, optionally with double
// quantization of the block scales), and converts such checkpoints back to
// bf16, f16 or f32. It works at the checkpoint level — which tensors become
// 4-bit, the quant-state tensors beside them, config.json's
// quantization_config — and leaves the 4-bit arithmetic and its
// serialization to package nf4 (shared/specs/nf4.md).
//
// Both directions stream tensor by tensor: the per-tensor work is split into
// fixed chunks computed on every core, outputs are written in the reference
// order while the workers run ahead within a memory budget, and the results
// do not depend on the number of cores. Outputs go through checkpoint.Writer
// (a folder sharded like the input, one file, or stdout), atomically.
package quantize

import (
	"context"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lorakit/lorakit/internal/kernels/nibble"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/pipeline"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tool"
)

// Errors returned by this package; test with errors.Is.
var (
	// ErrQuantized reports an input that is already a 4-bit checkpoint.
	ErrQuantized = errclass.New(errclass.Invalid, "quantize: input is already quantized")
	// ErrNotQuantized reports a --dequantize input without 4-bit weights.
	ErrNotQuantized = errclass.New(errclass.Invalid, "quantize: input has no 4-bit weights")
	// ErrNothing reports a model with no weight left to quantize.
	ErrNothing = errclass.New(errclass.Invalid, "quantize: no Linear weight to quantize")
	// ErrInternal reports a failed internal consistency check (a bug).
	ErrInternal = errclass.New(errclass.Failure, "quantize: internal consistency check failed")
)

// Options configure Quantize, Dequantize and Run. Start from
// DefaultOptions.
type Options struct {
	// Env gives the streams ("-" in and out), the cleanup registry, the
	// worker count (Threads), the spool folder (TempDir, for a streamed
	// input; "" is the output's folder), progress in bytes written, and
	// phase timings (Logf).
	tool.Env

	// Dequantize makes Run dequantize instead of quantize.
	Dequantize bool

	// Type, Blocksize, DoubleQuant, Skip and ComputeDType configure
	// quantizing.
	Type        nf4.Type
	Blocksize   int // a power of two in [32, 4096]
	DoubleQuant bool
	// Skip lists more modules to leave unquantized, as regular expressions
	// matched like transformers' llm_int8_skip_modules (anchored at the
	// start of the module name, or a literal suffix). They are added to the
	// default set (lm_head) and written to llm_int8_skip_modules.
	Skip []string
	// ComputeDType is bnb_4bit_compute_dtype, a torch name; "" is bfloat16.
	ComputeDType string
	// Offsets, keyed by weight name, replace the computed double
	// quantization offsets (to reproduce a reference file bit for bit).
	Offsets map[string]float32

	// DType is the dequantized output dtype (F32, BF16 or F16). "" gives
	// each 4-bit weight its quant state's dtype (what bitsandbytes'
	// dequantize_4bit returns) and leaves the other tensors as they are; a
	// dtype converts every F32/BF16/F16 tensor and sets config.json's dtype
	// to it.
	DType dtype.DType

	// Budget bounds the output bytes in flight (see pipeline.Options); 0
	// is the engine's default.
	Budget int64
}

// DefaultOptions returns QLoRA's settings: NF4, block 64, double
// quantization, bfloat16 compute dtype.
func DefaultOptions() Options {
	return Options{Type: nf4.NF4, Blocksize: nf4.DefaultBlocksize, DoubleQuant: true, ComputeDType: "bfloat16"}
}

// Run is lora-quantize as a function: it opens in (an HF folder, a
// .safetensors file, or "-" for a stream on Env.Stdin) and quantizes it to
// out (a folder, a .safetensors file, or "-" for Env.Stdout), or
// dequantizes it with o.Dequantize. Nothing is written when it fails.
func Run(ctx context.Context, in, out string, o Options) (*Report, error) {
	if in != "-" && out != "-" {
		a, err1 := filepath.Abs(in)
		b, err2 := filepath.Abs(out)
		if err1 == nil && err2 == nil && a == b {
			return nil, errclass.Usagef("the output %s would replace the input", out)
		}
	}
	src, err := checkpoint.Open(in, o.In())
	if err != nil {
		return nil, err
	}
	defer src.Close()
	if o.Dequantize {
		return Dequantize(ctx, src, out, o)
	}
	return Quantize(ctx, src, out, o)
}

// weight is one tensor being quantized.
type weight struct {
	name   string
	info   safetensors.TensorInfo
	n      int
	absmax []float32 // first pass: the block absmax values, until the state is made
	digest []uint64  // per chunk: a hash of the first pass's absmax values
	q      nf4.Quantized
	state  []nf4.NamedTensor // the serialized quant state (every tensor but the packed codes)
	after  int64             // output bytes: packed codes and state
	stats  []errStats        // per chunk, of the dequantized values against the input
}

func (w *weight) chunks() int { return (w.n + chunkElems - 1) / chunkElems }

// Quantize writes src, with its Linear weights quantized to 4 bits, to out
// (a folder, a .safetensors file, or "-" for stdout) and reports what it
// did. Nothing is written when it fails.
func Quantize(ctx context.Context, src *checkpoint.Source, out string, opts Options) (*Report, error) {
	return quantize(ctx, src, out, opts, createAt(out, opts))
}

func quantize(ctx context.Context, src *checkpoint.Source, out string, opts Options, create createSink) (*Report, error) {
	if err := nf4.CheckBlocksize(opts.Blocksize); err != nil {
		return nil, err
	}
	if opts.Type != nf4.NF4 && opts.Type != nf4.FP4 {
		return nil, fmt.Errorf("%w: %d", nf4.ErrType, opts.Type)
	}
	if opts.ComputeDType == "" {
		opts.ComputeDType = "bfloat16"
	}
	if _, err := model.BaseFrom(src, model.BaseOptions{}); err != nil {
		return nil, err
	}
	if src.IsQuantized() {
		return nil, fmt.Errorf("%s: %w (it holds bitsandbytes quant-state tensors; use --dequantize)", src.Path, ErrQuantized)
	}
	cfg, hasCfg := src.Files["config.json"]
	if hasCfg && hasQuantizationConfig(cfg) {
		return nil, fmt.Errorf("%s: config.json: %w (it has a quantization_config block)", src.Path, ErrQuantized)
	}
	var skip []string
	if len(opts.Skip) > 0 {
		skip = append(slices.Clone(nf4.DefaultSkipModules), opts.Skip...)
	}
	sel, err := nf4.NewSelector(skip)
	if err != nil {
		return nil, err
	}

	// Plan: which tensors become 4-bit.
	weights := map[string]*weight{}
	var order []*weight
	for _, t := range src.Tensors {
		if sel.Quantize(t.Name, t.DType, t.Shape) {
			w := &weight{name: t.Name, info: t, n: int(t.NumElements())}
			weights[t.Name] = w
			order = append(order, w)
		} else if sel.Quantize(t.Name, dtype.F32, t.Shape) {
			return nil, fmt.Errorf("%s: tensor %q: %w: %s (a Linear weight must be F32, BF16 or F16)",
				src.Path, t.Name, nf4.ErrDType, t.DType)
		}
	}
	if len(order) == 0 {
		return nil, fmt.Errorf("%s: %w", src.Path, ErrNothing)
	}
	qc := nf4.QuantizationConfig{QuantType: opts.Type, DoubleQuant: opts.DoubleQuant,
		ComputeDType: opts.ComputeDType, SkipModules: skip}
	files := maps.Clone(src.Files)
	rep := &Report{Schema: ReportVersion, Version: ReportVersion, Mode: "quantize", Input: src.Path, Output: out,
		QuantType: opts.Type.String(), Blocksize: opts.Blocksize, DoubleQuant: opts.DoubleQuant,
		ComputeDType: opts.ComputeDType, SkipModules: skip}
	if hasCfg {
		if files["config.json"], err = quantizedConfig(cfg, qc); err != nil {
			return nil, fmt.Errorf("%s: %w", src.Path, err)
		}
	} else {
		rep.Warnings = append(rep.Warnings, "the input has no config.json, so the output has no quantization_config: transformers needs both")
	}

	in := pipeline.NewInput(src, pipeline.InputOptions{TempDir: opts.SpillDir(out)})
	defer in.Close()

	// Pass 1: the block absmax of every weight, then its quant state.
	start := time.Now()
	pass1 := make([]*pipeline.Job, len(order))
	for i, w := range order {
		pass1[i] = w.absmaxJob(in, opts)
	}
	if err := pipeline.Run(ctx, engine(opts), pass1, nil); err != nil {
		return nil, err
	}
	opts.Log("first pass (block absmax, quant states of %d weights): %.2fs", len(order), time.Since(start).Seconds())

	// The output layout: shards like the input's, each weight's tensors in
	// the shard that held it.
	shards := make([]checkpoint.Shard, len(src.Shards))
	jobs := map[string]*pipeline.Job{}
	var total int64
	for i, sh := range src.Shards {
		shards[i].Name = sh.Name
		for _, t := range sh.Tensors {
			w := weights[t.Name]
			if w == nil {
				shards[i].Tensors = append(shards[i].Tensors, safetensors.TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape})
				jobs[t.Name] = in.CopyJob(t.Name)
				total += t.NumBytes()
				continue
			}
			packed := int64(nf4.PackedLen(w.n))
			shards[i].Tensors = append(shards[i].Tensors, safetensors.TensorInfo{Name: w.name, DType: dtype.U8, Shape: []int64{packed, 1}})
			jobs[w.name] = w.quantizeJob(in, opts)
			total += packed
			for k, st := range w.state {
				shards[i].Tensors = append(shards[i].Tensors, safetensors.TensorInfo{Name: st.Name, DType: st.DType, Shape: st.Shape})
				jobs[st.Name] = bytesJob(st.Name, &w.state[k].Data)
				total += int64(len(st.Data))
			}
		}
	}
	if len(shards) == 1 {
		shards[0].Name = "model.safetensors"
	}

	// Pass 2: quantize and write, in the output order.
	wr, err := create(files, shards)
	if err != nil {
		return nil, err
	}
	start = time.Now()
	if err := writeAll(ctx, wr, jobs, opts, total); err != nil {
		wr.Abort()
		return nil, err
	}
	opts.Log("second pass (quantize and write %d bytes): %.2fs", total, time.Since(start).Seconds())
	start = time.Now()
	if err := wr.Commit(); err != nil {
		return nil, err
	}
	opts.Log("commit (fsync, rename): %.2fs", time.Since(start).Seconds())

	// The report.
	slices.SortFunc(order, func(a, b *weight) int { return strings.Compare(a.name, b.name) })
	var all errStats
	for _, w := range order {
		var e errStats
		for _, s := range w.stats {
			e.merge(s)
		}
		all.merge(e)
		tr := TensorReport{Name: w.name, Shape: w.info.Shape, DTypeBefore: string(w.info.DType),
			DTypeAfter: strings.ToUpper(opts.Type.String()), Params: int64(w.n), BytesBefore: w.info.NumBytes(),
			BytesAfter: w.after, RMSE: e.rmse(), MaxAbsError: e.max()}
		tr.finish()
		rep.Tensors = append(rep.Tensors, tr)
		rep.Quantized.add(tr)
		rep.Total.add(tr)
	}
	rep.Quantized.RMSE, rep.Quantized.MaxAbsError = all.rmse(), all.max()
	for _, t := range src.Tensors {
		if weights[t.Name] == nil {
			tr := TensorReport{Params: t.NumElements(), BytesBefore: t.NumBytes(), BytesAfter: t.NumBytes()}
			rep.Other.add(tr)
			rep.Total.add(tr)
		}
	}
	rep.Quantized.finish()
	rep.Other.finish()
	rep.Total.finish()
	return rep, nil
}

// readChunk reads the input bytes of elements [lo, hi) of w into the
// worker's buffer.
func (w *weight) readChunk(in *pipeline.Input, lo, hi int, wk *pipeline.Worker) ([]byte, error) {
	es := w.info.DType.Size()
	raw := wk.Buf((hi - lo) * es)
	return raw, in.ReadAt(w.name, raw, int64(lo*es))
}

// absmaxJob is the first pass over w: the block absmax values chunk by
// chunk, then the quant state.
func (w *weight) absmaxJob(in *pipeline.Input, opts Options) *pipeline.Job {
	bs := opts.Blocksize
	return &pipeline.Job{Name: w.name, Chunks: w.chunks(),
		Prepare: func() error {
			w.absmax = make([]float32, nf4.NumBlocks(w.n, bs))
			w.digest = make([]uint64, w.chunks())
			return nil
		},
		Run: func(c int, _ []byte, wk *pipeline.Worker) error {
			lo, hi := span(c, w.n)
			raw, err := w.readChunk(in, lo, hi, wk)
			if err != nil {
				return err
			}
			am := w.absmax[lo/bs : lo/bs+nf4.NumBlocks(hi-lo, bs)]
			blockAbsmax(am, raw, w.info.DType, bs)
			w.digest[c] = digest(am)
			return nil
		},
		Finish: func() error { w.makeState(opts); return nil },
	}
}

// makeState builds the quant state from the first pass's absmax values and
// serializes it.
func (w *weight) makeState(opts Options) {
	st := nf4.QuantState{Type: opts.Type, Blocksize: opts.Blocksize, Shape: slices.Clone(w.info.Shape),
		DType: w.info.DType, Map: opts.Type.Code()}
	if opts.DoubleQuant {
		off, ok := opts.Offsets[w.name]
		if !ok {
			off = nf4.MeanOffset(w.absmax)
		}
		st.Nested = nf4.DoubleQuantize(w.absmax, off)
	} else {
		st.Absmax = w.absmax
	}
	w.q = nf4.Quantized{State: st}
	w.state = w.q.Tensors(w.name)[1:] // all but the packed codes, which the second pass computes
	w.after = int64(nf4.PackedLen(w.n))
	for _, t := range w.state {
		w.after += int64(len(t.Data))
	}
	// The second pass checks its absmax values against the digests and
	// takes the scales from the serialized state or the nested one.
	w.absmax, w.q.State.Absmax = nil, nil
}

// digest hashes absmax values (FNV-1a over their bits).
func digest(am []float32) uint64 {
	h := uint64(14695981039346656037)
	for _, a := range am {
		h ^= uint64(math.Float32bits(a))
		h *= 1099511628211
	}
	return h
}

// quantizeJob is the second pass over w: quantize chunk by chunk into the
// packed codes, check the block absmax against the first pass, and measure
// the error of the dequantized values.
func (w *weight) quantizeJob(in *pipeline.Input, opts Options) *pipeline.Job {
	bs := opts.Blocksize
	return &pipeline.Job{Name: w.name, Chunks: w.chunks(),
		Size: func(c int) int {
			lo, hi := span(c, w.n)
			return nf4.PackedLen(hi) - lo/2
		},
		Prepare: func() error {
			w.stats = make([]errStats, w.chunks())
			return nil
		},
		Run: func(c int, packed []byte, wk *pipeline.Worker) error {
			s := wk.Local.(*scratch)
			lo, hi := span(c, w.n)
			raw, err := w.readChunk(in, lo, hi, wk)
			if err != nil {
				return err
			}
			x := s.f32[:hi-lo]
			if err := dtype.ToF32(x, raw, w.info.DType); err != nil {
				return fmt.Errorf("tensor %q: %w", w.name, err)
			}
			am := s.am[:nf4.NumBlocks(hi-lo, bs)]
			if err := nf4.Quantize(packed, am, x, bs, opts.Type); err != nil {
				return fmt.Errorf("tensor %q: %w", w.name, err)
			}
			if digest(am) != w.digest[c] {
				return fmt.Errorf("%w: tensor %q, elements [%d, %d): the block absmax differs from the first pass", ErrInternal, w.name, lo, hi)
			}
			w.stats[c] = chunkError(&w.q.State, x, packed, am, lo/bs, s.sc)
			return nil
		},
		Finish: func() error {
			w.q = nf4.Quantized{}
			in.Done(w.name)
			return nil
		},
	}
}

// rounding returns the error kernel's rounding for an original dtype.
func rounding(dt dtype.DType) nibble.Rounding {
	switch dt {
	case dtype.BF16:
		return nibble.RoundBF16
	case dtype.F16:
		return nibble.RoundF16
	}
	return nibble.RoundF32
}

// chunkError compares the elements x (starting at block b0, with block
// absmax values am) with their dequantized values: code × block scale (the
// double-dequantized scale when the state is nested), rounded to the state's
// dtype as bitsandbytes' dequantize_4bit returns them. sc is scratch for the
// scales.
func chunkError(st *nf4.QuantState, x []float32, packed []byte, am []float32, b0 int, sc []float32) errStats {
	scales := am
	if nd := st.Nested; nd != nil {
		scales = sc[:len(am)]
		for b := range scales {
			gb := b0 + b
			scales[b] = float32(nd.Map[nd.Codes[gb]]*nd.Absmax[gb/nd.Blocksize]) + nd.Offset
		}
	}
	acc, mx := nibble.ErrSums(&st.Map, scales, rounding(st.DType), x, packed, st.Blocksize)
	e := errStats{n: int64(len(x)), maxAbs: float64(math.Float32frombits(mx))}
	for _, v := range acc {
		e.sumSq += v
	}
	return e
}
