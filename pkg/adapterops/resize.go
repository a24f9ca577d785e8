package adapterops

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/linalg"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tool"
)

// ResizeOptions configure Resize.
type ResizeOptions struct {
	// Adapter is the adapter to resize (folder, file or "-").
	Adapter string
	// Rule chooses each module's rank.
	Rule RankRule
	// Output is a folder, a .safetensors file or "-" (stdout).
	Output string
	// DType of the output A and B: F32 (""), BF16 or F16.
	DType dtype.DType
	// Env holds the streams ("-" reads Stdin, writes Stdout), the cleanup
	// registry, Threads (0: one per core) and the progress callback (bytes
	// written).
	tool.Env

	seam seam
}

// ResizeReport describes a resize; it is the JSON form of the command's
// report.
type ResizeReport struct {
	Schema int      `json:"schema"`
	Input  string   `json:"input"`
	Output string   `json:"output"`
	Rule   RankRule `json:"rule"`
	// Rank is the new adapter's r and lora_alpha: the largest new rank.
	Rank    int             `json:"r"`
	Modules []ResizedModule `json:"modules"`
	// Params counts the LoRA parameters (A and B) before and after.
	ParamsBefore int64 `json:"params_before"`
	ParamsAfter  int64 `json:"params_after"`
	// Kept is ‖resized ΔW‖_F/‖ΔW‖_F over all modules together; MinKept and
	// MinModule are the smallest per-module value and where it is.
	Kept      float64  `json:"kept"`
	MinKept   float64  `json:"min_kept"`
	MinModule string   `json:"min_kept_module"`
	Carried   []string `json:"carried,omitempty"`
}

// ResizedModule is one module's resize.
type ResizedModule struct {
	Module  string `json:"module"`
	Rank    int    `json:"rank"`
	NewRank int    `json:"new_rank"`
	// Norm is ‖ΔW‖_F = ‖s·B·A‖_F before the resize.
	Norm float64 `json:"norm"`
	// Kept is ‖ΔW_k‖_F/‖ΔW‖_F = √(Σ_{i<k} σᵢ²/Σ σᵢ²), 1 for a zero ΔW.
	Kept float64 `json:"kept"`
}

// Resize truncates every module's ΔW = s·B·A to the rank its rule
// chooses (the best approximation of that rank, by Eckart–Young) and
// writes the new adapter to o.Output. Non-LoRA tensors (modules_to_save,
// biases, trainable tokens) are copied unchanged; lora_B biases are kept
// exactly (multiplied by the old scaling, as the new one is 1).
func Resize(ctx context.Context, o ResizeOptions) (*ResizeReport, error) {
	if err := o.Rule.Validate(); err != nil {
		return nil, err
	}
	if o.Output == "" {
		return nil, fmt.Errorf("%w: no output", ErrOption)
	}
	dt, err := outputDType(o.DType)
	if err != nil {
		return nil, err
	}
	src, err := o.seam.openAdapter(o.Adapter, &o.Env)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	if err := checkLoRA(src, "resizing", false); err != nil {
		return nil, err
	}
	mods := src.Analysis().Modules
	if len(mods) == 0 {
		return nil, fmt.Errorf("%s: %w: no LoRA module", src.Path(), ErrUnsupported)
	}
	nw := workers(o.Threads)
	// Pass 1: the new ranks. A fixed rank needs no spectrum.
	ranks := make([]int, len(mods))
	err = parallelEach(ctx, len(mods), nw, func(i int) error {
		m := mods[i]
		if o.Rule.Method == RankFixed {
			ranks[i] = max(1, min(o.Rule.Rank, m.Rank, int(m.In), int(m.Out)))
			return nil
		}
		f, err := readFactors(src, m)
		if err != nil {
			return err
		}
		b, a := f.matrices()
		ranks[i] = o.Rule.Choose(linalg.ProductSingularValues(b, a))
		return nil
	})
	if err != nil {
		return nil, err
	}
	rep := &ResizeReport{Schema: Schema, Input: src.Path(), Output: o.Output, Rule: o.Rule, Modules: make([]ResizedModule, len(mods))}
	out := &output{}
	var mr []moduleRank
	for i := range mods {
		m, k := mods[i], ranks[i]
		rep.Rank = max(rep.Rank, k)
		rep.ParamsBefore += int64(m.Rank) * (m.In + m.Out)
		rep.ParamsAfter += int64(k) * (m.In + m.Out)
		mr = append(mr, moduleRank{path: m.Path, rank: k, linear: m.Kind == peft.KindLinear})
		an, bn := outNames(m.Path, m.Kind)
		ts := []safetensors.TensorInfo{
			{Name: an, DType: dt, Shape: []int64{int64(k), m.In}},
			{Name: bn, DType: dt, Shape: []int64{m.Out, int64(k)}},
		}
		if m.BBias != "" {
			ts = append(ts, safetensors.TensorInfo{Name: outBiasName(m.Path), DType: dt, Shape: []int64{m.Out}})
		}
		out.add(func(context.Context) (map[string][]byte, error) { return resizeModule(src, m, k, dt, &rep.Modules[i]) }, ts...)
	}
	for _, ot := range src.Analysis().Others {
		if err := out.carry(src, ot.Key.Name); err != nil {
			return nil, err
		}
		rep.Carried = append(rep.Carried, ot.Key.Name)
	}
	cfg, err := scaleOneConfig(src.Config(), rep.Rank, mr)
	if err != nil {
		return nil, err
	}
	js, err := peft.MarshalCompat(cfg)
	if err != nil {
		return nil, err
	}
	out.files = map[string][]byte{"adapter_config.json": js}
	if err := out.write(ctx, o.seam, &o.Env, o.Output, nw); err != nil {
		return nil, err
	}
	var all, kept float64
	rep.MinKept = 2
	for _, m := range rep.Modules {
		all += m.Norm * m.Norm
		kept += m.Norm * m.Norm * m.Kept * m.Kept
		if m.Kept < rep.MinKept {
			rep.MinKept, rep.MinModule = m.Kept, m.Module
		}
	}
	rep.Kept = 1
	if all > 0 {
		rep.Kept = math.Sqrt(kept / all)
	}
	return rep, nil
}

// resizeModule computes a module's truncated A and B (and lora_B bias).
func resizeModule(src source, m peft.Module, k int, dt dtype.DType, r *ResizedModule) (map[string][]byte, error) {
	f, err := readFactors(src, m)
	if err != nil {
		return nil, err
	}
	b, a := f.matrices()
	s := linalg.ProductSVD(b, a)
	na, nb := truncated(s.U, s.S, s.V, k)
	var n2 float64
	for _, x := range s.S {
		n2 += x * x
	}
	*r = ResizedModule{Module: m.Path, Rank: m.Rank, NewRank: k, Norm: math.Sqrt(n2), Kept: keptFraction(s.S, k)}
	an, bn := outNames(m.Path, m.Kind)
	out := map[string][]float32{an: na, bn: nb}
	if m.BBias != "" {
		bias, err := readFloats(src, m.BBias)
		if err != nil {
			return nil, err
		}
		for i, v := range bias { // the new scaling is 1: s·b
			bias[i] = float32(float64(v) * f.scale)
		}
		out[outBiasName(m.Path)] = bias
	}
	return encodeAll(dt, out)
}

// parallelEach calls fn(i) for i in [0, n) on nWorkers goroutines and
// returns the first error; it stops early on an error or when ctx ends.
func parallelEach(ctx context.Context, n, nWorkers int, fn func(i int) error) error {
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for w := 0; w < max(1, min(nWorkers, n)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				mu.Lock()
				stop := first != nil
				mu.Unlock()
				if stop {
					return
				}
				err := ctx.Err()
				if err == nil {
					err = fn(i)
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}
