package merge

import (
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/pipeline"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tool"
)

// Options configure a merge.
type Options struct {
	// Env gives the streams ("-" in and out), the cleanup registry, the
	// worker count (Threads; 0 means one per core), the folder of
	// the spill file (TempDir; "" means os.TempDir()), progress in bytes
	// written, and warnings about the adapters.
	tool.Env
	// DType is the output dtype of float tensors: F32, BF16 or F16; ""
	// keeps each tensor's own dtype (a 4-bit weight's is its quant state's).
	DType dtype.DType
	// Requantize writes the adapted weights of a 4-bit base as 4-bit again
	// (same type, block size and double quantization); the other 4-bit
	// weights are copied unchanged.
	Requantize bool
	// Safe refuses non-finite merged values (PEFT's safe_merge check).
	Safe bool
	// StreamMemory bounds the bytes of a streamed base kept in memory while
	// the merge needs its tensors in another order than they arrive; beyond
	// it they go to a spill file in TempDir. 0 means
	// pipeline.DefaultInputMemory or the largest tensor, whichever is larger.
	StreamMemory int64
	// AllowMutatedBase accepts PiSSA/OLoRA/CorDA/LoftQ/LoRA-GA adapters
	// (Run only): the base given is the one they mutated at init (§7.8).
	AllowMutatedBase bool
}

// AdapterInput names an adapter for Run: a folder, a .safetensors file or
// "-" (Env.Stdin), and its weight.
type AdapterInput struct {
	Path   string
	Weight float64
}

// Run is lora-merge as a function: it opens the base and the adapters,
// checks that every adapter key fits the base, warns about what the
// adapters' analysis found, and writes the merged checkpoint to out (a
// folder, a .safetensors file or "-" for Env.Stdout), atomically.
func Run(ctx context.Context, base string, adapters []AdapterInput, out string, o Options) (*Summary, error) {
	paths := []string{base}
	for _, a := range adapters {
		paths = append(paths, a.Path)
	}
	if err := tool.StdinOnce(paths...); err != nil {
		return nil, err
	}
	if o.Requantize && o.DType != "" {
		return nil, errclass.Usagef("--requantize keeps the base's dtypes; drop --dtype")
	}
	o.TempDir = o.SpillDir(out)
	mb, err := model.OpenBase(base, o.In(), model.BaseOptions{})
	if err != nil {
		return nil, err
	}
	defer mb.Close()
	var ads []*Adapter
	defer func() {
		for _, a := range ads {
			a.Close()
		}
	}()
	for _, in := range adapters {
		a, err := OpenAdapter(in.Path, o.In(), in.Weight, AdapterOptions{AllowMutatedBase: o.AllowMutatedBase})
		if err != nil {
			return nil, err
		}
		ads = append(ads, a)
	}
	plan, err := Prepare(mb.Source, ads, o)
	if err != nil {
		return nil, err
	}
	defer plan.Close()
	for _, a := range ads {
		for _, w := range a.Warnings() {
			o.Warn("%s: %s", a.Path, w)
		}
	}
	return plan.Run(ctx, out)
}

// contribKind is what an adapter does to one base tensor.
type contribKind uint8

const (
	cLoRA     contribKind = iota // low-rank delta (linear, fan_in_fan_out, embedding)
	cDoRA                        // DoRA: rescaled W + delta
	cIA3                         // IA³: scale rows or columns
	cLoRABias                    // lora_B.bias added to the bias
	cReplace                     // full replacement (modules_to_save, saved embeddings, biases)
	cTokens                      // trainable-token rows replaced
)

// contrib is one adapter's contribution to one output tensor.
type contrib struct {
	kind   contribKind
	ad     *Adapter
	mod    *peft.Module
	key    string  // adapter tensor (replacement, bias, IA³ vector, token delta)
	weight float64 // --weight
	scale  float32 // cLoRA and cLoRABias: f32(w·s); cDoRA: f32(s)
	// transposed: the stored weight's rows are the module's input features
	// (fan_in_fan_out, embeddings): L = Aᵀ, R = Bᵀ.
	transposed bool
	// colScale: DoRA norms and IA³ factors apply to stored columns.
	colScale bool
	tokens   []int64
}

// baseTensor is a tensor of the base model as the merge sees it.
type baseTensor struct {
	info  safetensors.TensorInfo // as stored (a 4-bit weight: the packed bytes)
	shape []int64                // logical shape
	dt    dtype.DType            // logical dtype (a 4-bit weight: its state's)
	quant *quantWeight
	shard int
}

// quantWeight is a 4-bit weight of the base: its parsed state and the
// names of its state tensors.
type quantWeight struct {
	state *nf4.QuantState
	names []string
}

// jobMode says how an output tensor is produced.
type jobMode uint8

const (
	modeCopy    jobMode = iota // the input bytes unchanged
	modeConvert                // the input converted to another dtype
	modeCompute                // merged, dequantized or both
	modeRequant                // merged and quantized to 4 bits again (several outputs)
)

// job produces one output tensor (modeRequant: a 4-bit weight's tensors).
type job struct {
	name     string
	input    string // base tensor to read
	in       *baseTensor
	out      dtype.DType
	shape    []int64
	contribs []*contrib
	mode     jobMode
	outputs  []string
}

// Plan is a checked merge of adapters into a base model, ready to Run.
type Plan struct {
	base     *checkpoint.Source
	adapters []*Adapter
	opts     Options

	tensors map[string]*baseTensor
	jobs    []*job
	byName  map[string]*job // output tensor name → job
	shards  []checkpoint.Shard
	files   map[string][]byte
	in      *pipeline.Input
	summary Summary
}

// Prepare matches every adapter tensor to its base tensor and checks shapes
// and dtypes before anything is written: an adapter key that finds no base
// tensor of the right shape is an error (ErrMismatch) listing the keys.
// base may be a stream: it is read through pipeline.Input, in the order the
// output needs, keeping what arrives early (in memory up to StreamMemory,
// then in a spill file in TempDir).
func Prepare(base *checkpoint.Source, adapters []*Adapter, opts Options) (*Plan, error) {
	if opts.DType != "" && opts.DType != dtype.F32 && opts.DType != dtype.BF16 && opts.DType != dtype.F16 {
		return nil, fmt.Errorf("%w: output dtype %s (want F32, BF16 or F16)", ErrUnsupported, opts.DType)
	}
	if len(adapters) == 0 {
		return nil, fmt.Errorf("%w: no adapter", ErrUnsupported)
	}
	if opts.Threads <= 0 {
		opts.Threads = runtime.GOMAXPROCS(0)
	}
	if opts.TempDir == "" {
		opts.TempDir = os.TempDir()
	}
	p := &Plan{base: base, adapters: adapters, opts: opts, tensors: map[string]*baseTensor{}, byName: map[string]*job{}}
	p.in = pipeline.NewInput(base, pipeline.InputOptions{TempDir: opts.TempDir, Memory: opts.StreamMemory})
	if err := p.build(); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Close releases what the plan holds of the base (a stream's kept tensors
// and spill file). It does not close the base or adapters.
func (p *Plan) Close() {
	p.in.Close()
}

// OutputBytes is the size of the output's tensor data (4-bit weights
// re-quantized count at their input size).
func (p *Plan) OutputBytes() int64 {
	var n int64
	for _, sh := range p.shards {
		for _, t := range sh.Tensors {
			n += num.Elements(t.Shape) * int64(t.DType.Size())
		}
	}
	return n
}

// problems collects mismatches to report together.
type problems struct{ list []string }

func (ps *problems) add(format string, args ...any) {
	ps.list = append(ps.list, fmt.Sprintf(format, args...))
}

func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	const show = 12
	l := ps.list
	more := ""
	if len(l) > show {
		more = fmt.Sprintf("; and %d more", len(l)-show)
		l = l[:show]
	}
	return fmt.Errorf("%w: %d adapter key(s) do not fit the base: %s%s", ErrMismatch, len(ps.list), strings.Join(l, "; "), more)
}

// build matches the adapters to the base, lays out the output and makes
// one job per output tensor.
func (p *Plan) build() error {
	base := p.base
	quantized := base.IsQuantized()
	if p.opts.Requantize && !quantized {
		return fmt.Errorf("%s: %w: --requantize needs a 4-bit base (quantize with lora-quantize instead)", base.Path, ErrUnsupported)
	}
	if p.opts.Requantize && p.opts.DType != "" {
		return fmt.Errorf("%w: --requantize keeps the base's dtypes; --dtype cannot be combined with it", ErrUnsupported)
	}
	// The base's tensors, 4-bit weights parsed.
	stateOf := map[string]string{} // state tensor → weight
	if quantized {
		for _, t := range base.Tensors {
			if w, _, ok := nf4.SplitStateKey(t.Name); ok {
				if _, has := base.Info(w); has {
					stateOf[t.Name] = w
				}
			}
		}
	}
	weights := map[string]*quantWeight{}
	for st, w := range stateOf {
		if weights[w] == nil {
			weights[w] = &quantWeight{}
		}
		weights[w].names = append(weights[w].names, st)
	}
	for _, w := range slices.Sorted(maps.Keys(weights)) {
		q := weights[w]
		slices.Sort(q.names)
		qs, err := p.in.QuantState(w)
		if err != nil {
			return err
		}
		q.state = qs
	}
	for si, sh := range base.Shards {
		for _, t := range sh.Tensors {
			bt := &baseTensor{info: t, shape: t.Shape, dt: t.DType, shard: si}
			if q := weights[t.Name]; q != nil {
				bt.quant, bt.shape, bt.dt = q, q.state.Shape, q.state.DType
			}
			p.tensors[t.Name] = bt
		}
	}

	// Tied embeddings (spec §7.5).
	tie, tiePresent := configTie(base.Files["config.json"])
	const lmName = "lm_head.weight"
	var embName string
	for _, t := range base.Tensors {
		if strings.HasSuffix(t.Name, "embed_tokens.weight") {
			embName = t.Name
			break
		}
	}
	_, hasLM := p.tensors[lmName]
	tied := embName != "" && (tie || (!tiePresent && !hasLM))
	virtualLM := tied && !hasLM

	contribs := map[string][]*contrib{} // base tensor (or lm_head.weight) → contributions
	var ps problems
	lookup := func(name string) (*baseTensor, bool) {
		if bt, ok := p.tensors[name]; ok && stateOf[name] == "" {
			return bt, true
		}
		if name == lmName && virtualLM {
			return p.tensors[embName], true
		}
		return nil, false
	}
	p.summary.Base = BaseSummary{Path: base.Path, Kind: "float"}
	for _, t := range base.Tensors { // the first 4-bit weight names the kind
		if q := weights[t.Name]; q != nil {
			p.summary.Base.Kind = q.state.Type.String() + "-dequantized"
			if p.opts.Requantize {
				p.summary.Base.Kind = q.state.Type.String() + "-requantized"
			}
			break
		}
	}

	for _, ad := range p.adapters {
		cfg := ad.Config
		as := AdapterSummary{Path: ad.Path, PEFTType: cfg.PeftType, Weight: ad.Weight, RSLoRA: cfg.UseRSLoRA}
		mismatch := func(keys []string, format string, args ...any) {
			ps.add("%s: %s: %s", ad.Path, strings.Join(keys, ", "), fmt.Sprintf(format, args...))
		}
		for mi := range ad.Analysis.Modules {
			m := &ad.Analysis.Modules[mi]
			keys := moduleKeys(m)
			target := m.Path + ".weight"
			bt, ok := lookup(target)
			if !ok {
				mismatch(keys, "no base tensor %q", target)
				continue
			}
			if !mergeableDType(bt) {
				mismatch(keys, "base tensor %q is %s: only F32, BF16, F16 and 4-bit (NF4/FP4) weights can be merged into", target, bt.info.DType)
				continue
			}
			if len(bt.shape) != 2 {
				mismatch(keys, "base tensor %q has shape %v, not a matrix", target, bt.shape)
				continue
			}
			rows, cols := bt.shape[0], bt.shape[1]
			fif := cfg.FanInFanOut
			switch m.Kind {
			case peft.KindIA3:
				c := &contrib{kind: cIA3, ad: ad, mod: m, key: m.IA3, weight: ad.Weight}
				// An ordinary vector (out, 1) scales output rows; a
				// feedforward one (1, in) scales input columns; the stored
				// weight is transposed with fan_in_fan_out.
				n, want := m.Out, rows
				c.colScale = fif
				if m.Feedforward {
					n, c.colScale = m.In, !fif
				}
				if c.colScale {
					want = cols
				}
				if n != want {
					mismatch(keys, "IA3 vector of %d values for base tensor %q of shape %v", n, target, bt.shape)
					continue
				}
				contribs[target] = append(contribs[target], c)
				if !m.Feedforward {
					if bb, ok := lookup(m.Path + ".bias"); ok && mergeableDType(bb) && len(bb.shape) == 1 && bb.shape[0] == n {
						contribs[m.Path+".bias"] = append(contribs[m.Path+".bias"], &contrib{kind: cIA3, ad: ad, mod: m, key: m.IA3, weight: ad.Weight, colScale: true})
					}
				}
				as.Modules++
				continue
			case peft.KindEmbedding:
				if want := m.BaseShape(false); rows != want[0] || cols != want[1] {
					mismatch(keys, "embedding LoRA for (%d, %d) but base tensor %q has shape %v", want[0], want[1], target, bt.shape)
					continue
				}
				fif = true // ΔW = (B·A)ᵀ, norm over the vocabulary
			default:
				if want := m.BaseShape(fif); rows != want[0] || cols != want[1] {
					mismatch(keys, "LoRA of shape (out %d, in %d) but base tensor %q has shape %v%s", m.Out, m.In, target, bt.shape, fifHint(fif))
					continue
				}
			}
			dora := m.DoRA() && cfg.UseDoRA
			if cfg.UseDoRA && !m.DoRA() {
				mismatch(keys, "use_dora is true but the module has no lora_magnitude_vector")
				continue
			}
			s := scaling64(m, cfg.UseRSLoRA)
			c := &contrib{kind: cLoRA, ad: ad, mod: m, weight: ad.Weight, scale: float32(ad.Weight * s), transposed: fif}
			if dora {
				c.kind, c.scale, c.colScale = cDoRA, float32(s), fif
				as.DoRA = true
			}
			contribs[target] = append(contribs[target], c)
			as.Modules++
			as.Rank = max(as.Rank, m.Rank)
			if m.BBias != "" {
				bn := m.Path + ".bias"
				bb, ok := lookup(bn)
				switch {
				case !ok:
					mismatch([]string{m.BBias}, "lora_B.bias but the base has no bias %q", bn)
				case !mergeableDType(bb) || len(bb.shape) != 1 || bb.shape[0] != m.Out:
					mismatch([]string{m.BBias}, "base bias %q is %s %v, want a float vector of %d", bn, bb.dt, bb.shape, m.Out)
				default:
					contribs[bn] = append(contribs[bn], &contrib{kind: cLoRABias, ad: ad, mod: m, key: m.BBias, weight: ad.Weight, scale: float32(ad.Weight * s)})
				}
			}
		}
		for oi := range ad.Analysis.Others {
			o := &ad.Analysis.Others[oi]
			switch o.Key.Role {
			case peft.RoleFull, peft.RoleBias:
				target := o.Key.BaseName()
				bt, ok := lookup(target)
				if !ok {
					mismatch([]string{o.Key.Name}, "no base tensor %q to replace", target)
					continue
				}
				if !slices.Equal(bt.shape, o.Shape) {
					mismatch([]string{o.Key.Name}, "shape %v but base tensor %q has shape %v (the adapter fits an identically resized base only)", o.Shape, target, bt.shape)
					continue
				}
				if !mergeableDType(bt) {
					mismatch([]string{o.Key.Name}, "base tensor %q is %s", target, bt.info.DType)
					continue
				}
				for _, prev := range contribs[target] {
					if prev.ad == ad && prev.kind == cReplace {
						return fmt.Errorf("%s: tensor %q: %w: %q also replaces base tensor %q", ad.Path, o.Key.Name, ErrUnsupported, prev.key, target)
					}
				}
				contribs[target] = append(contribs[target], &contrib{kind: cReplace, ad: ad, key: o.Key.Name, weight: ad.Weight})
				as.Replaced = append(as.Replaced, target)
			case peft.RoleTrainableTokens:
				target := o.Key.Module + ".weight"
				bt, ok := lookup(target)
				if !ok {
					mismatch([]string{o.Key.Name}, "no base embedding %q", target)
					continue
				}
				idx, err := ad.tokenIndices(o.Key.Module)
				if err != nil {
					return err
				}
				if len(bt.shape) != 2 || len(o.Shape) != 2 || o.Shape[0] != int64(len(idx)) || o.Shape[1] != bt.shape[1] || !mergeableDType(bt) {
					mismatch([]string{o.Key.Name}, "token delta %v for %d indices into base tensor %q of shape %v", o.Shape, len(idx), target, bt.shape)
					continue
				}
				bad := false
				for _, i := range idx {
					if i < 0 || i >= bt.shape[0] {
						mismatch([]string{o.Key.Name}, "token index %d outside the %d rows of %q", i, bt.shape[0], target)
						bad = true
						break
					}
				}
				if !bad {
					contribs[target] = append(contribs[target], &contrib{kind: cTokens, ad: ad, key: o.Key.Name, weight: ad.Weight, tokens: idx})
					as.Replaced = append(as.Replaced, target+" (token rows)")
				}
			default:
				mismatch([]string{o.Key.Name}, "%s tensors cannot be merged", o.Key.Role)
			}
		}
		as.Warnings = ad.Warnings()
		p.summary.Adapters = append(p.summary.Adapters, as)
	}
	if err := ps.err(); err != nil {
		return err
	}

	// Untie when a member of a tied pair changes (tokens keep the tie: PEFT
	// ties the lm_head rows to the embedding's).
	untie := false
	if tied {
		untie = len(contribs[lmName]) > 0
		for _, c := range contribs[embName] {
			untie = untie || c.kind != cTokens
		}
	}
	p.summary.Untied = untie

	// Output layout and jobs.
	outDType := func(bt *baseTensor) dtype.DType {
		if !bt.dt.IsFloat() || p.opts.DType == "" {
			return bt.dt
		}
		return p.opts.DType
	}
	addJob := func(name, input string, bt *baseTensor, cs []*contrib) *job {
		j := &job{name: name, input: input, in: bt, out: outDType(bt), shape: bt.shape, contribs: cs, outputs: []string{name}}
		switch {
		case bt.quant != nil && p.opts.Requantize && len(cs) > 0:
			j.mode = modeRequant
			j.out = bt.dt
			j.outputs = append([]string{name}, bt.quant.names...)
			slices.Sort(j.outputs)
		case bt.quant != nil && p.opts.Requantize:
			j.mode, j.out, j.shape = modeCopy, bt.info.DType, bt.info.Shape
		case bt.quant != nil || len(cs) > 0:
			j.mode = modeCompute
		case j.out != bt.info.DType:
			j.mode = modeConvert
		default:
			j.mode = modeCopy
		}
		p.jobs = append(p.jobs, j)
		for _, o := range j.outputs {
			p.byName[o] = j
		}
		return j
	}
	p.shards = make([]checkpoint.Shard, len(base.Shards))
	for si, sh := range base.Shards {
		out := &p.shards[si]
		out.Name = sh.Name
		if len(base.Shards) == 1 {
			out.Name = "model.safetensors"
		}
		for _, t := range sh.Tensors {
			bt := p.tensors[t.Name]
			if w := stateOf[t.Name]; w != "" {
				if p.opts.Requantize && len(contribs[w]) == 0 {
					addJob(t.Name, t.Name, bt, nil)
					out.Tensors = append(out.Tensors, t)
				} else if p.opts.Requantize {
					out.Tensors = append(out.Tensors, t) // shape fixed after quantizing
				}
				continue
			}
			j := addJob(t.Name, t.Name, bt, contribs[t.Name])
			switch j.mode {
			case modeRequant:
				out.Tensors = append(out.Tensors, t)
			default:
				out.Tensors = append(out.Tensors, safetensors.TensorInfo{Name: t.Name, DType: j.out, Shape: j.shape})
			}
			if t.Name == embName && untie && virtualLM {
				lj := addJob(lmName, embName, bt, contribs[lmName])
				if lj.mode == modeCopy && outDType(bt) != bt.info.DType {
					lj.mode = modeConvert
				}
				out.Tensors = append(out.Tensors, safetensors.TensorInfo{Name: lmName, DType: lj.out, Shape: lj.shape})
			}
		}
	}
	for _, j := range p.jobs {
		p.summary.count(j)
	}

	// Carried files and config.json.
	p.files = map[string][]byte{}
	for name, b := range base.Files {
		if name == "adapter_config.json" {
			continue
		}
		p.files[name] = b
	}
	if cb, ok := p.files["config.json"]; ok {
		e := configEdit{untie: untie, dropQuant: quantized && !p.opts.Requantize}
		if p.opts.DType != "" {
			e.dtype = p.opts.DType
		}
		nb, err := editConfig(cb, e)
		if err != nil {
			return fmt.Errorf("%s: config.json: %w", base.Path, err)
		}
		p.files["config.json"] = nb
	}
	p.summary.DType = "auto"
	if p.opts.DType != "" {
		p.summary.DType = string(p.opts.DType)
	}
	return nil
}

func fifHint(fif bool) string {
	if fif {
		return " (fan_in_fan_out: the base weight is stored (in, out))"
	}
	return ""
}

// moduleKeys lists a module's tensors for error messages.
func moduleKeys(m *peft.Module) []string {
	var out []string
	for _, k := range []string{m.A, m.B, m.Magnitude, m.BBias, m.IA3} {
		if k != "" {
			out = append(out, k)
		}
	}
	return out
}

// mergeableDType reports whether a base tensor's values can be merged into.
func mergeableDType(bt *baseTensor) bool {
	if bt.quant != nil {
		return true
	}
	switch bt.info.DType {
	case dtype.F32, dtype.BF16, dtype.F16, dtype.F64:
		return true
	}
	return false
}

// scaling64 is the module's scaling α/r (α/√r with rsLoRA) in float64, with
// r from the tensor shape and α resolved through alpha_pattern (§5, §6).
func scaling64(m *peft.Module, rslora bool) float64 {
	if rslora {
		return m.Alpha / math.Sqrt(float64(m.Rank))
	}
	return m.Alpha / float64(m.Rank)
}
