package adapterops

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/linalg"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/pipeline"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tool"
)

// Schema is the version of the JSON reports.
const Schema = 1

// CombineOptions configure Combine.
type CombineOptions struct {
	// Adapters and their weights (weights may be negative).
	Adapters []Input
	// Method is the combination type; a single adapter always uses Linear,
	// as PEFT does.
	Method Method
	// Density is the fraction of entries kept by the pruning methods (ties,
	// dare_*, magnitude_prune*); required by them, > 0; >= 1 prunes
	// nothing (PEFT).
	Density float64
	// MajoritySign is the TIES sign election; "" means SignTotal.
	MajoritySign MajoritySign
	// SVDRank is the rank of the svd methods' output; 0 means the largest
	// rank of the inputs (PEFT's default).
	SVDRank int
	// SVDClamp, in (0, 1], clamps the entries of U·S and Vᵀ to ± the
	// SVDClamp-quantile of their values (PEFT's svd_clamp); 0 means none.
	SVDClamp float64
	// Seed keys DARE's random masks (see DAREKeep).
	Seed uint64
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

// CombineReport describes a combination; it is the JSON form of the
// command's report.
type CombineReport struct {
	Schema int    `json:"schema"`
	Output string `json:"output"`
	// Method is the method applied (linear for a single adapter).
	Method   Method         `json:"method"`
	Density  float64        `json:"density,omitempty"`
	Sign     MajoritySign   `json:"majority_sign,omitempty"`
	Seed     *uint64        `json:"seed,omitempty"`
	SVDClamp float64        `json:"svd_clamp,omitempty"`
	Adapters []CombineInput `json:"adapters"`
	// Rank is the new adapter's r and lora_alpha (scaling 1).
	Rank    int              `json:"r"`
	Modules []CombinedModule `json:"modules"`
	// Carried lists tensors copied unchanged (modules_to_save, biases,
	// trainable tokens) with the adapter they come from.
	Carried []CarriedTensor `json:"carried,omitempty"`
	Notes   []string        `json:"notes,omitempty"`
}

// CombineInput is one combined adapter.
type CombineInput struct {
	Path    string  `json:"path"`
	Weight  float64 `json:"weight"`
	Modules int     `json:"modules"`
	// Rank is max(r, rank_pattern values): the rank PEFT sizes it by.
	Rank   int     `json:"r"`
	Alpha  float64 `json:"lora_alpha"`
	RSLoRA bool    `json:"use_rslora,omitempty"`
}

// CombinedModule is one module of the new adapter.
type CombinedModule struct {
	Module string `json:"module"`
	Rank   int    `json:"rank"`
	// Adapters is how many inputs have the module.
	Adapters int `json:"adapters"`
	// Kept is, for the svd methods, ‖truncated‖_F / ‖combined ΔW‖_F.
	Kept *float64 `json:"kept,omitempty"`
	// Note reports a numerical caveat (an SVD iteration that stopped
	// before its tolerance).
	Note string `json:"note,omitempty"`
}

// CarriedTensor is a tensor copied unchanged into the output.
type CarriedTensor struct {
	Tensor string `json:"tensor"`
	From   string `json:"from"`
}

// combiner holds a Combine in progress.
type combiner struct {
	o       CombineOptions
	method  Method
	ss      sources
	out     dtype.DType
	rank    int
	modules []CombinedModule
	dense   []float32 // the dense methods' out×in matrix, reused module after module
}

// Combine merges adapters into one new adapter written to o.Output, with
// the semantics of PEFT 0.21's add_weighted_adapter (see the package
// documentation for every difference).
func Combine(ctx context.Context, o CombineOptions) (*CombineReport, error) {
	c := &combiner{o: o}
	defer func() { pipeline.FreeFloats(c.dense) }()
	rep, out, err := c.plan()
	defer c.ss.Close()
	if err != nil {
		return nil, err
	}
	w := workers(o.Threads)
	if c.method.SVDBased() && c.method != SVD {
		w = 1 // one dense out×in matrix at a time; the module's work is parallel
	}
	if err := out.write(ctx, o.seam, &o.Env, o.Output, w); err != nil {
		return nil, err
	}
	rep.Modules = c.modules
	return rep, nil
}

func (c *combiner) plan() (*CombineReport, *output, error) {
	o := c.o
	if len(o.Adapters) == 0 {
		return nil, nil, fmt.Errorf("%w: no adapter to combine", ErrOption)
	}
	if o.Output == "" {
		return nil, nil, fmt.Errorf("%w: no output", ErrOption)
	}
	method, err := ParseMethod(string(o.Method))
	if err != nil {
		return nil, nil, err
	}
	rep := &CombineReport{Schema: Schema, Output: o.Output}
	if len(o.Adapters) == 1 && method != Linear {
		rep.Notes = append(rep.Notes, fmt.Sprintf("a single adapter is combined with linear, not %s (as PEFT does)", method))
		method = Linear
	}
	c.method, rep.Method = method, method
	if err := c.checkOptions(rep); err != nil {
		return nil, nil, err
	}
	if c.out, err = outputDType(o.DType); err != nil {
		return nil, nil, err
	}
	paths := make([]string, len(o.Adapters))
	for i, in := range o.Adapters {
		if math.IsNaN(in.Weight) || math.IsInf(in.Weight, 0) {
			return nil, nil, fmt.Errorf("%w: adapter %s: weight %v is not finite", ErrOption, in.Path, in.Weight)
		}
		paths[i] = in.Path
	}
	if c.ss, err = openAll(o.seam, &o.Env, paths); err != nil {
		return nil, nil, err
	}
	cfg0 := c.ss[0].Config()
	var ranks []int
	for i, s := range c.ss {
		if err := checkLoRA(s, "combining", false); err != nil {
			return nil, nil, err
		}
		for _, m := range s.Analysis().Modules {
			if m.BBias != "" {
				return nil, nil, fmt.Errorf("%s: tensor %q: %w: lora_bias (PEFT's add_weighted_adapter drops the bias)", s.Path(), m.BBias, ErrUnsupported)
			}
		}
		cfg := s.Config()
		if cfg.FanInFanOut != cfg0.FanInFanOut {
			return nil, nil, fmt.Errorf("%w: %s has fan_in_fan_out %v but %s has %v (adapters of different base models?)", ErrIncompatible, s.Path(), cfg.FanInFanOut, c.ss[0].Path(), cfg0.FanInFanOut)
		}
		r := configRank(cfg)
		ranks = append(ranks, r)
		rep.Adapters = append(rep.Adapters, CombineInput{Path: s.Path(), Weight: o.Adapters[i].Weight,
			Modules: len(s.Analysis().Modules), Rank: r, Alpha: cfg.LoraAlpha, RSLoRA: cfg.UseRSLoRA})
	}
	switch {
	case method.sameRank():
		for i, r := range ranks {
			if r != ranks[0] {
				return nil, nil, fmt.Errorf("%w: %s needs adapters of the same rank, but %s has r=%d and %s r=%d (PEFT refuses too; use cat or svd)",
					ErrIncompatible, method, c.ss[0].Path(), ranks[0], c.ss[i].Path(), r)
			}
		}
		c.rank = ranks[0]
	case method == Cat:
		for _, r := range ranks {
			c.rank += r
		}
	default:
		c.rank = o.SVDRank
		if c.rank == 0 {
			c.rank = slices.Max(ranks)
		}
	}
	rep.Rank = c.rank
	set, err := unionModules(c.ss)
	if err != nil {
		return nil, nil, err
	}
	if len(set.paths) == 0 {
		return nil, nil, fmt.Errorf("%w: the adapters have no LoRA module", ErrUnsupported)
	}
	targets, err := unionTargets(c.ss)
	if err != nil {
		return nil, nil, err
	}
	out := &output{}
	var mods []moduleRank
	for _, path := range set.paths {
		members := set.members[path]
		var first *peft.Module
		n, sum, firstIdx := 0, 0, 0
		for i, m := range members {
			if m == nil {
				continue
			}
			if first == nil {
				first, firstIdx = m, i
			}
			if method.sameRank() && m.Rank != first.Rank {
				return nil, nil, fmt.Errorf("%w: module %s has rank %d in %s but %d in %s; %s needs equal ranks (use cat or svd)",
					ErrIncompatible, path, first.Rank, c.ss[firstIdx].Path(), m.Rank, c.ss[i].Path(), method)
			}
			n++
			sum += m.Rank
		}
		rank := first.Rank
		switch {
		case method == Cat:
			rank = max(c.rank, sum)
		case method.SVDBased():
			rank = min(c.rank, int(first.Out), int(first.In))
		}
		mods = append(mods, moduleRank{path: path, rank: rank, linear: first.Kind == peft.KindLinear})
		idx := len(c.modules)
		c.modules = append(c.modules, CombinedModule{Module: path, Rank: rank, Adapters: n})
		an, bn := outNames(path, first.Kind)
		job := func(ctx context.Context) (map[string][]byte, error) {
			return c.module(ctx, idx, path, first, members, rank)
		}
		out.add(job,
			safetensors.TensorInfo{Name: an, DType: c.out, Shape: []int64{int64(rank), first.In}},
			safetensors.TensorInfo{Name: bn, DType: c.out, Shape: []int64{first.Out, int64(rank)}})
	}
	cfg := *cfg0
	cfg.TargetModules = targets
	carried, err := c.carry(out, &cfg)
	if err != nil {
		return nil, nil, err
	}
	rep.Carried = carried
	newCfg, err := scaleOneConfig(&cfg, c.rank, mods)
	if err != nil {
		return nil, nil, err
	}
	js, err := peft.MarshalCompat(newCfg)
	if err != nil {
		return nil, nil, err
	}
	out.files = map[string][]byte{"adapter_config.json": js}
	return rep, out, nil
}

// checkOptions validates the method's options and notes ignored ones.
func (c *combiner) checkOptions(rep *CombineReport) error {
	o, m := c.o, c.method
	note := func(format string, args ...any) { rep.Notes = append(rep.Notes, fmt.Sprintf(format, args...)) }
	if m.Pruning() {
		if !(o.Density > 0) {
			return fmt.Errorf("%w: %s needs a density in (0, 1] (the fraction of entries kept), got %v", ErrOption, m, o.Density)
		}
		if o.Density >= 1 {
			note("density %v >= 1: nothing is pruned (as in PEFT)", o.Density)
		}
		rep.Density = o.Density
	} else if o.Density != 0 {
		note("density is ignored by %s", m)
	}
	switch o.MajoritySign {
	case "", SignTotal, SignFrequency:
	default:
		return fmt.Errorf("%w: majority sign method %q (want total or frequency)", ErrOption, o.MajoritySign)
	}
	if m.Elects() {
		rep.Sign = o.MajoritySign
		if rep.Sign == "" {
			rep.Sign = SignTotal
		}
	} else if o.MajoritySign != "" {
		note("majority sign method is ignored by %s", m)
	}
	if m.prune() == pruneRandom {
		seed := o.Seed
		rep.Seed = &seed
	}
	if o.SVDRank < 0 {
		return fmt.Errorf("%w: svd rank %d is negative", ErrOption, o.SVDRank)
	}
	if !(o.SVDClamp >= 0 && o.SVDClamp <= 1) {
		return fmt.Errorf("%w: svd clamp %v is not a quantile in (0, 1]", ErrOption, o.SVDClamp)
	}
	if m.SVDBased() {
		rep.SVDClamp = o.SVDClamp
	} else {
		if o.SVDRank != 0 {
			note("svd rank is ignored by %s", m)
		}
		if o.SVDClamp != 0 {
			note("svd clamp is ignored by %s", m)
		}
	}
	return nil
}

// configRank is the rank PEFT sizes an adapter by: max(r, rank_pattern).
func configRank(cfg *peft.Config) int {
	r := cfg.R
	for _, e := range cfg.RankPattern {
		r = max(r, e.Rank)
	}
	return r
}

// unionTargets is PEFT's target_modules of the new adapter: the union of
// the lists, or the regexes joined as "(a)|(b)"; a mix is refused.
func unionTargets(ss sources) (peft.Selector, error) {
	first := ss[0].Config().TargetModules
	for _, s := range ss[1:] {
		t := s.Config().TargetModules
		if t.Kind != first.Kind || t.IsAllLinear() != first.IsAllLinear() {
			return peft.Selector{}, fmt.Errorf("%w: target_modules of %s and %s are of different kinds (list, regex, all-linear or null); PEFT refuses to combine them",
				ErrIncompatible, ss[0].Path(), s.Path())
		}
	}
	switch {
	case first.Kind == peft.SelectList:
		var all []string
		seen := map[string]bool{}
		for _, s := range ss {
			for _, t := range s.Config().TargetModules.List {
				if !seen[t] {
					seen[t] = true
					all = append(all, t)
				}
			}
		}
		return peft.Names(all...), nil
	case first.Kind == peft.SelectString && !first.IsAllLinear() && len(ss) > 1:
		parts := make([]string, len(ss))
		for i, s := range ss {
			parts[i] = "(" + s.Config().TargetModules.String + ")"
		}
		return peft.Pattern(strings.Join(parts, "|")), nil
	}
	return first, nil
}

// carry adds the non-LoRA tensors (modules_to_save, biases, trainable
// tokens) to the output unchanged, refusing two adapters that replace the
// same tensor, and makes the config's modules_to_save the union.
func (c *combiner) carry(out *output, cfg *peft.Config) ([]CarriedTensor, error) {
	var carried []CarriedTensor
	owner := map[string]int{}
	var saved []string
	seenSaved := map[string]bool{}
	for i, s := range c.ss {
		sc := s.Config()
		for _, m := range sc.ModulesToSave {
			if !seenSaved[m] {
				seenSaved[m] = true
				saved = append(saved, m)
			}
		}
		for _, ot := range s.Analysis().Others {
			target := ot.Key.Role.String() + " " + ot.Key.BaseName()
			if j, dup := owner[target]; dup {
				return nil, fmt.Errorf("%w: %s and %s both replace %s (tensor %q); PEFT refuses to combine adapters with modules_to_save on the same module",
					ErrIncompatible, c.ss[j].Path(), s.Path(), ot.Key.BaseName(), ot.Key.Name)
			}
			owner[target] = i
			switch ot.Key.Role {
			case peft.RoleBias:
				if sc.Bias != cfg.Bias {
					if i > 0 && cfg.Bias != peft.BiasNone {
						return nil, fmt.Errorf("%w: %s has bias=%q but %s has %q", ErrIncompatible, s.Path(), sc.Bias, c.ss[0].Path(), cfg.Bias)
					}
					cfg.Bias = sc.Bias
				}
			case peft.RoleTrainableTokens:
				if !bytes.Equal(sc.TrainableTokenIndices, cfg.TrainableTokenIndices) {
					if i > 0 && len(bytes.TrimSpace(cfg.TrainableTokenIndices)) > 0 && string(bytes.TrimSpace(cfg.TrainableTokenIndices)) != "null" {
						return nil, fmt.Errorf("%w: %s and %s have different trainable_token_indices", ErrIncompatible, s.Path(), c.ss[0].Path())
					}
					cfg.TrainableTokenIndices = sc.TrainableTokenIndices
				}
			}
			if err := out.carry(s, ot.Key.Name); err != nil {
				return nil, err
			}
			carried = append(carried, CarriedTensor{Tensor: ot.Key.Name, From: s.Path()})
		}
	}
	if saved != nil {
		cfg.ModulesToSave = saved
	}
	return carried, nil
}

// member is one adapter's module with its weight and position.
type member struct {
	index  int
	weight float64
	f      *factors
}

// module computes one module of the new adapter: A (rank×in) and B
// (out×rank) in the output dtype.
func (c *combiner) module(ctx context.Context, idx int, path string, first *peft.Module, mods []*peft.Module, rank int) (map[string][]byte, error) {
	var ms []member
	for i, m := range mods {
		if m == nil {
			continue
		}
		f, err := readFactors(c.ss[i], *m)
		if err != nil {
			return nil, err
		}
		ms = append(ms, member{index: i, weight: c.o.Adapters[i].Weight, f: f})
	}
	in, out := int(first.In), int(first.Out)
	var a, b []float32
	var err error
	switch {
	case c.method == Cat:
		a, b = catModule(ms, in, out, rank)
	case c.method == SVD:
		var kept float64
		a, b, kept = svdModule(ms, in, out, rank)
		c.modules[idx].Kept = &kept
	case c.method.SVDBased():
		var kept float64
		var note string
		a, b, kept, note, err = c.denseModule(ctx, path, ms, in, out, rank)
		c.modules[idx].Kept, c.modules[idx].Note = &kept, note
	default:
		a, b = c.factorwise(path, ms, in, out, rank)
	}
	if err != nil {
		return nil, err
	}
	if c.method.SVDBased() && c.o.SVDClamp > 0 {
		clamp(a, b, c.o.SVDClamp)
	}
	an, bn := outNames(path, first.Kind)
	return encodeAll(c.out, map[string][]float32{an: a, bn: b})
}

// catModule stacks f32(f32(Aᵢ·wᵢ)·sᵢ) by rows and Bᵢ by columns, zero-padded
// to rank (PEFT fills the first rows and columns of the new adapter).
func catModule(ms []member, in, out, rank int) (a, b []float32) {
	a = make([]float32, rank*in)
	b = make([]float32, out*rank)
	row := 0
	for _, m := range ms {
		w, s := float32(m.weight), float32(m.f.scale)
		r := m.f.mod.Rank
		for k := 0; k < r; k++ {
			dst := a[(row+k)*in : (row+k+1)*in]
			for i, v := range m.f.a[k*in : (k+1)*in] {
				dst[i] = v * w * s
			}
		}
		for o := 0; o < out; o++ {
			copy(b[o*rank+row:o*rank+row+r], m.f.b[o*r:(o+1)*r])
		}
		row += r
	}
	return a, b
}

// factorwise applies the method to the A matrices and to the B matrices
// separately (linear, ties, dare_linear, dare_ties, magnitude_prune), with
// weights √|w·s|·sign(w·s) on A and √|w·s| on B, computed in float64 and
// rounded to float32 as PEFT's torch.tensor(weights) does.
func (c *combiner) factorwise(path string, ms []member, in, out, rank int) (a, b []float32) {
	as, bs := make([][]float32, len(ms)), make([][]float32, len(ms))
	wa, wb := make([]float32, len(ms)), make([]float32, len(ms))
	for i, m := range ms {
		ws := m.weight * m.f.scale
		root := math.Sqrt(math.Abs(ws))
		wb[i] = float32(root)
		if ws < 0 {
			root = -root
		}
		wa[i] = float32(root)
		as[i] = c.prune(path, DARELoraA, m.index, m.f.a)
		bs[i] = c.prune(path, DARELoraB, m.index, m.f.b)
	}
	a, b = make([]float32, rank*in), make([]float32, out*rank)
	kind := c.method.merge(c.o.MajoritySign)
	mergeInto(a, as, wa, kind)
	mergeInto(b, bs, wb, kind)
	return a, b
}

// prune returns a pruned copy of a tensor (or the tensor itself when the
// method does not prune).
func (c *combiner) prune(path string, t DARETensor, adapter int, x []float32) []float32 {
	switch c.method.prune() {
	case pruneMagnitude:
		y := append([]float32(nil), x...)
		pruner{kind: pruneMagnitude, rule: magnitudeRule(x, c.o.Density)}.apply(y, 0)
		return y
	case pruneRandom:
		y := append([]float32(nil), x...)
		newRandomPruner(c.o.Seed, path, t, adapter, c.o.Density).apply(y, 0)
		return y
	}
	return x
}

// svdModule factors Σ wᵢ·sᵢ·Bᵢ·Aᵢ exactly from the cores of the stacked
// factors [w₁s₁B₁ …] and [A₁; …] and keeps rank singular triplets: B' =
// U·diag(σ), A' = Vᵀ (zero beyond the product's own rank).
func svdModule(ms []member, in, out, rank int) (a, b []float32, kept float64) {
	total := 0
	for _, m := range ms {
		total += m.f.mod.Rank
	}
	bcat := linalg.NewDense(out, total, nil)
	acat := linalg.NewDense(total, in, nil)
	col := 0
	for _, m := range ms {
		r := m.f.mod.Rank
		ws := m.weight * m.f.scale
		for o := 0; o < out; o++ {
			for k := 0; k < r; k++ {
				bcat.Data[o*total+col+k] = float64(m.f.b[o*r+k]) * ws
			}
		}
		for k := 0; k < r; k++ {
			for i, v := range m.f.a[k*in : (k+1)*in] {
				acat.Data[(col+k)*in+i] = float64(v)
			}
		}
		col += r
	}
	s := linalg.ProductSVD(bcat, acat)
	a, b = truncated(s.U, s.S, s.V, rank)
	return a, b, keptFraction(s.S, rank)
}

// truncated returns A' = V_kᵀ (k×n) and B' = U_k·diag(σ_k) (m×k) in float32,
// k = rank, zero where rank exceeds the number of singular triplets.
func truncated(u *linalg.Dense, s []float64, v *linalg.Dense, rank int) (a, b []float32) {
	m, n, p := u.Rows, v.Rows, len(s)
	a = make([]float32, rank*n)
	b = make([]float32, m*rank)
	k := min(rank, p)
	for j := 0; j < k; j++ {
		for i := 0; i < n; i++ {
			a[j*n+i] = float32(v.Data[i*p+j])
		}
	}
	for o := 0; o < m; o++ {
		for j := 0; j < k; j++ {
			b[o*rank+j] = float32(u.Data[o*p+j] * s[j])
		}
	}
	return a, b
}

// keptFraction is √(Σ_{i<k} σᵢ²/Σ σᵢ²), 1 for a zero spectrum.
func keptFraction(s []float64, k int) float64 {
	var all, kept float64
	for i, x := range s {
		all += x * x
		if i < k {
			kept += x * x
		}
	}
	if all == 0 {
		return 1
	}
	return math.Sqrt(kept / all)
}
