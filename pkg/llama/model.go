package llama

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/dtype"
)

// Loader returns the tensor called name (a Hugging Face name such as
// "model.norm.weight") as float32 values in row-major order, with its shape.
// A loader that has no such tensor returns an error wrapping ErrNotFound.
type Loader func(name string) (data []float32, shape []int, err error)

// Options tune how the model is held and run; the zero value is valid.
type Options struct {
	// WeightDType is the storage of the frozen matrices (embedding,
	// projections, lm_head): compute.F32 (default) or compute.BF16. Norm
	// weights, biases and adapters are always F32, and arithmetic is f32.
	WeightDType compute.DType
	// LossChunk is the number of token rows whose logits exist at one time
	// while computing the loss (0: as many as fit in 16 Mi floats).
	LossChunk int
	// GradCheckpoint keeps only each layer's input during a training forward
	// and recomputes the layer in the backward pass.
	GradCheckpoint bool
	// Quantized, when set, is asked first for each projection weight (every
	// Linear of a layer): one it returns is held on the backend in its 4-bit
	// form (QLoRA) and dequantized, exactly as bitsandbytes'
	// dequantize_4bit, into a scratch buffer shared by all projections just
	// before each use (forward, input gradient, DoRA norm). It decodes to
	// BF16 when the weight's original dtype is bfloat16 or WeightDType is
	// BF16, to F32 otherwise. The other tensors come from the Loader.
	Quantized QuantLoader
	// Precision is the arithmetic of the passes: PrecisionF32 (the default,
	// the exact reference) or PrecisionBF16 (mixed precision; frozen
	// weights are then BF16: WeightDType must be 0 or BF16).
	Precision Precision
	// Synthetic, when set, fills the model with random weights on the
	// backend instead of reading them (benchmarks; the Loader may be nil).
	Synthetic *Synthetic
}

// Precision is the arithmetic of a model's forward and backward passes.
type Precision string

const (
	// PrecisionF32 keeps activations, gradients and every product in f32
	// (BF16 weights are widened exactly): the reference.
	PrecisionF32 Precision = "f32"
	// PrecisionBF16 is mixed precision as torch.autocast runs a bf16 model
	// with PEFT's f32 adapters: frozen weights and activations (the
	// residual stream, the norms' and projections' outputs, q, k, v,
	// attention, the MLP) are stored in bf16 and every matrix product takes
	// bf16 operands with f32 accumulation (the tensor cores). The RMSNorm
	// statistics (q/k norms and sandwich norms included), the attention
	// softmax, its soft-cap and log-sum-exp, the logits, their soft-cap and
	// the cross-entropy stay f32, and so do the adapters' master weights
	// (trainable biases too), their gradients and the optimizer state: an
	// adapter weight or a bias is rounded to bf16 where it enters a product,
	// as autocast rounds lora_A and lora_B. The embedding scale of Gemma is
	// rounded to bf16. The gradient of the residual stream is accumulated
	// in f32.
	PrecisionBF16 Precision = "bf16"
)

// ParsePrecision parses "f32" or "bf16" ("" is f32).
func ParsePrecision(s string) (Precision, error) {
	switch Precision(s) {
	case "", PrecisionF32:
		return PrecisionF32, nil
	case PrecisionBF16:
		return PrecisionBF16, nil
	}
	return "", fmt.Errorf("%w: precision %q (f32 or bf16)", ErrConfig, s)
}

// Synthetic describes random weights made on the backend (FillUniform):
// matrices and biases uniform in [−Scale, Scale), norms 1. With NF4 the
// projections are held as random bitsandbytes NF4 codes with double
// quantization (blocks of 64, nested blocks of 256), dequantized like a
// QLoRA checkpoint's.
type Synthetic struct {
	Seed  uint64
	Scale float32
	NF4   bool
}

// Adapter describes what is trained on one Linear module of a layer: a
// LoRA, DoRA or (IA)³ adapter, and/or its bias.
type Adapter struct {
	Layer int
	// Module is the registry's module name: "q_proj", ..., "down_proj",
	// or Phi-3's fused "qkv_proj" and "gate_up_proj" (arch.Config.Linears).
	// A LoRA on a fused module has one A and one B over the fused output,
	// as PEFT's.
	Module  string
	Rank    int
	Scale   float32 // s = α/r, or α/√r with rsLoRA
	DoRA    bool
	Dropout float32 // probability of the dropout on the adapter input (training only)
	// IA3 makes this an (IA)³ adapter: a learned vector scaling the
	// projection's output, or its input with FeedForward (PEFT's
	// feedforward_modules). Rank, Scale, DoRA and Dropout must be zero.
	IA3         bool
	FeedForward bool
	// Bias makes the module's bias trainable (PEFT's bias "all" or
	// "lora_only"); with Rank 0 and no IA3 the spec trains the bias alone.
	// The module must have a bias.
	Bias bool
}

// LoRASpecs lays out an adapter on every layer of cfg, in PEFT's
// parameter order: lora (its Rank, Scale, DoRA and Dropout) on each of the
// modules, and with PEFT's bias option the biases trained: with
// adaptedBiases those of the adapted modules ("lora_only"), with allBiases
// every bias of the layers' Linears ("all"; a module without an adapter
// then gets a spec that trains its bias alone). It is what lora-train
// trains and what a memory plan (PlanMemory) counts.
func LoRASpecs(cfg *arch.Config, modules []string, lora Adapter, adaptedBiases, allBiases bool) []Adapter {
	biased := map[string]bool{}
	for _, t := range cfg.Tensors() {
		if t.Layer == 0 && t.Bias {
			biased[t.Module] = true
		}
	}
	var specs []Adapter
	for l := range cfg.Layers {
		for _, m := range cfg.AllLinear() {
			adapted := slices.Contains(modules, m)
			bias := biased[m] && (allBiases || adaptedBiases && adapted)
			switch {
			case adapted:
				s := lora
				s.Layer, s.Module, s.Bias = l, m, bias
				specs = append(specs, s)
			case bias:
				specs = append(specs, Adapter{Layer: l, Module: m, Bias: true})
			}
		}
	}
	return specs
}

// lora reports a LoRA or DoRA adapter.
func (s *Adapter) lora() bool { return s.Rank > 0 }

// Names of an adapter's tensors, relative to its module path.
const (
	SuffixA         = ".lora_A.weight"
	SuffixB         = ".lora_B.weight"
	SuffixMagnitude = ".lora_magnitude_vector"
	SuffixIA3       = ".ia3_l"
	// SuffixBias is a trainable bias of a module without an adapter, and
	// SuffixBaseBias one of a module with a LoRA/DoRA adapter, as PEFT's
	// state dict names them (the adapter wraps the Linear as base_layer).
	SuffixBias     = ".bias"
	SuffixBaseBias = ".base_layer.bias"
)

// Param is one trainable tensor and its gradient.
type Param struct {
	Name  string // e.g. "model.layers.0.self_attn.q_proj.lora_A.weight"
	Shape []int
	Value compute.Buffer
	Grad  compute.Buffer
}

type adapter struct {
	Adapter
	path        string
	out, in     int
	a, b, mag   compute.Buffer // [rank, in], [out, rank], [out] (DoRA)
	ga, gb, gm  compute.Buffer
	norm        compute.Buffer // DoRA: detached ‖W + s·B·A‖ of the last forward
	l, gl       compute.Buffer // (IA)³ vector [out] or [in] and its gradient
	bias, gbias compute.Buffer // trainable bias [out] and its gradient
	stream      uint64         // dropout stream
}

// biasName is the trainable bias's name (PEFT's state dict).
func (ad *adapter) biasName() string {
	if ad.lora() {
		return ad.path + SuffixBaseBias
	}
	return ad.path + SuffixBias
}

// module is one Linear of a layer: its frozen weight (one buffer; a fused
// module's projections are row slices of it), bias and adapter.
type module struct {
	*modulePlan
	path string
	w    compute.Buffer // [out, in]; nil when q holds the weight
	q    *quantWeight   // 4-bit form (QLoRA), or nil
	bias compute.Buffer // frozen bias [out] (F32), or nil
	ad   *adapter
}

// biasBuf returns the bias in use: the trainable one, the frozen one, or nil.
func (mod *module) biasBuf() compute.Buffer {
	if mod.ad != nil && mod.ad.Bias {
		return mod.ad.bias
	}
	return mod.bias
}

// trains reports whether anything of the module receives a gradient.
func (mod *module) trains() bool { return mod.ad != nil }

type layer struct {
	// The norms: input_layernorm; the attention output's (sandwich only);
	// before the MLP (post_attention_layernorm, or pre_feedforward_layernorm
	// with sandwich norms); the MLP output's (sandwich only); q and k per
	// head (QKNorm). Nil where absent; weights include the norm's offset.
	inNorm, attnOutNorm, ffInNorm, ffOutNorm, qNorm, kNorm compute.Buffer
	mods                                                   []module
	// of[p] is the module computing projection p and the part of its output.
	of [numProj]struct{ mod, part int }
}

// trains reports whether a module computing one of ps trains.
func (L *layer) trains(ps ...proj) bool {
	for _, p := range ps {
		if L.mods[L.of[p].mod].trains() {
			return true
		}
	}
	return false
}

// Model is a decoder with adapters on a backend. It is not safe for
// concurrent use.
type Model struct {
	be         compute.Backend
	cfg        *arch.Config
	pl         *plan
	opt        Options
	embed      compute.Buffer
	embedScale float32 // 0: none
	lmHead     compute.Buffer
	finalNorm  compute.Buffer
	layers     []layer
	adapters   []*adapter // in PEFT parameter order
	virt       *virtual   // virtual tokens (prompt learning), or nil
	owned      []compute.Buffer
	dq         map[compute.DType]compute.Buffer // dequantization scratch by dtype
	ws         *workspace
	// keepNorms is the running ForwardBackward's Step.KeepDoRANorms.
	keepNorms bool
}

// New builds the model of cfg, a registry configuration (arch.ParseConfig
// of the checkpoint's config.json), reading every base weight through load
// by the text model's names (cfg.Tensors).
func New(be compute.Backend, cfg *arch.Config, load Loader, opt Options) (*Model, error) {
	pl, err := newPlan(cfg)
	if err != nil {
		return nil, err
	}
	if opt, err = opt.resolve(); err != nil {
		return nil, err
	}
	if load == nil && opt.Synthetic == nil {
		return nil, fmt.Errorf("%w: no weights (a nil Loader without Synthetic)", ErrConfig)
	}
	m := newModel(be, pl, opt)
	if err := m.loadBase(load, opt.Quantized); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// newModel is the Model of a plan without weights (New loads them;
// PlanMemory only sizes them).
func newModel(be compute.Backend, pl *plan, opt Options) *Model {
	m := &Model{be: be, cfg: pl.cfg, pl: pl, opt: opt, layers: make([]layer, pl.cfg.Layers)}
	if pl.cfg.EmbedScale {
		dt := dtype.F32
		if opt.Precision == PrecisionBF16 {
			dt = dtype.BF16
		}
		m.embedScale = arch.EmbedScaleValue(pl.cfg.Hidden, dt)
	}
	for l := range m.layers {
		L := &m.layers[l]
		L.mods = make([]module, len(pl.modules))
		for i := range pl.modules {
			mp := &pl.modules[i]
			L.mods[i] = module{modulePlan: mp, path: pl.cfg.ModulePath(l, mp.name)}
			for j, pt := range mp.parts {
				L.of[pt.p].mod, L.of[pt.p].part = i, j
			}
		}
	}
	return m
}

// resolve checks opt and fills in the defaults (Precision, WeightDType).
func (opt Options) resolve() (Options, error) {
	var err error
	if opt.Precision, err = ParsePrecision(string(opt.Precision)); err != nil {
		return opt, err
	}
	bf := opt.Precision == PrecisionBF16
	switch opt.WeightDType {
	case 0:
		opt.WeightDType = compute.F32
		if bf {
			opt.WeightDType = compute.BF16
		}
	case compute.F32, compute.BF16:
	default:
		return opt, fmt.Errorf("%w: weight dtype %v", ErrConfig, opt.WeightDType)
	}
	if bf && opt.WeightDType != compute.BF16 {
		return opt, fmt.Errorf("%w: bf16 precision with %v weights", ErrConfig, opt.WeightDType)
	}
	return opt, nil
}

// Config returns the model's configuration.
func (m *Model) Config() *arch.Config { return m.cfg }

// Options returns the model's options, with the defaults filled in
// (Precision, WeightDType).
func (m *Model) Options() Options { return m.opt }

// Backend returns the backend the model runs on.
func (m *Model) Backend() compute.Backend { return m.be }

// Close frees every buffer the model allocated.
func (m *Model) Close() {
	if m.ws != nil {
		m.ws.free()
		m.ws = nil
	}
	for _, b := range m.owned {
		m.be.Free(b)
	}
	m.owned = nil
}

func (m *Model) alloc(dt compute.DType, n int) (compute.Buffer, error) {
	b, err := m.be.Alloc(dt, n)
	if err != nil {
		return nil, err
	}
	m.owned = append(m.owned, b)
	return b, nil
}

// read loads name and checks its shape.
func read(load Loader, name string, shape ...int) ([]float32, error) {
	data, got, err := load(name)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	if !slices.Equal(got, shape) {
		return nil, fmt.Errorf("%w: tensor %q has shape %v, want %v", ErrWeight, name, got, shape)
	}
	n := 1
	for _, d := range shape {
		n *= d
	}
	if len(data) != n {
		return nil, fmt.Errorf("%w: tensor %q has %d values for shape %v", ErrWeight, name, len(data), shape)
	}
	return data, nil
}

// upload allocates a dt buffer holding data.
func (m *Model) upload(name string, dt compute.DType, data []float32) (compute.Buffer, error) {
	b, err := m.alloc(dt, len(data))
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	m.be.Upload(b, data)
	return b, nil
}

// tensor loads name, checks its shape and uploads it as dt.
func (m *Model) tensor(load Loader, name string, dt compute.DType, shape ...int) (compute.Buffer, error) {
	data, err := read(load, name, shape...)
	if err != nil {
		return nil, err
	}
	return m.upload(name, dt, data)
}

// baseTensor is tensor for a base weight: made on the backend under
// Options.Synthetic.
func (m *Model) baseTensor(load Loader, name string, dt compute.DType, shape ...int) (compute.Buffer, error) {
	if b, ok, err := m.syntheticTensor(name, dt, shape); ok || err != nil {
		return b, err
	}
	return m.tensor(load, name, dt, shape...)
}

// normTensor loads a norm weight of n values as F32, with the norm style's
// offset added (Gemma's (1 + w), in f32 as GemmaRMSNorm adds it).
func (m *Model) normTensor(load Loader, name string, n int) (compute.Buffer, error) {
	data := make([]float32, n)
	if m.opt.Synthetic != nil {
		for i := range data {
			data[i] = 1
		}
		return m.upload(name, compute.F32, data)
	}
	data, err := read(load, name, n)
	if err != nil {
		return nil, err
	}
	if off := m.pl.offset; off != 0 {
		data = slices.Clone(data) // a loader may hand out its own memory
		for i := range data {
			data[i] += off
		}
	}
	return m.upload(name, compute.F32, data)
}

func (m *Model) loadBase(load Loader, qload QuantLoader) error {
	c, wdt := m.cfg, m.opt.WeightDType
	var err error
	if m.embed, err = m.baseTensor(load, "model.embed_tokens.weight", wdt, c.Vocab, c.Hidden); err != nil {
		return err
	}
	if c.TiedEmbeddings {
		m.lmHead = m.embed
	} else if m.lmHead, err = m.baseTensor(load, "lm_head.weight", wdt, c.Vocab, c.Hidden); err != nil {
		return err
	}
	if m.finalNorm, err = m.normTensor(load, "model.norm.weight", c.Hidden); err != nil {
		return err
	}
	for l := range m.layers {
		L := &m.layers[l]
		pre := arch.LayerPrefix(l)
		type norm struct {
			dst  *compute.Buffer
			name string
			n    int
		}
		norms := []norm{{&L.inNorm, "input_layernorm", c.Hidden}, {&L.ffInNorm, "post_attention_layernorm", c.Hidden}}
		if c.SandwichNorms {
			norms[1].dst = &L.attnOutNorm
			norms = append(norms, norm{&L.ffInNorm, "pre_feedforward_layernorm", c.Hidden},
				norm{&L.ffOutNorm, "post_feedforward_layernorm", c.Hidden})
		}
		if c.QKNorm {
			norms = append(norms, norm{&L.qNorm, "self_attn.q_norm", c.HeadDim}, norm{&L.kNorm, "self_attn.k_norm", c.HeadDim})
		}
		for _, n := range norms {
			if *n.dst, err = m.normTensor(load, pre+n.name+".weight", n.n); err != nil {
				return err
			}
		}
		for i := range L.mods {
			mod := &L.mods[i]
			name := mod.path + ".weight"
			if mod.hasBias {
				if mod.bias, err = m.baseTensor(load, mod.path+".bias", compute.F32, mod.out); err != nil {
					return err
				}
			}
			if mod.q, err = m.quantTensor(qload, name, mod.out, mod.in); err != nil {
				return err
			}
			if mod.q != nil {
				continue
			}
			if mod.w, err = m.baseTensor(load, name, wdt, mod.out, mod.in); err != nil {
				return err
			}
		}
	}
	return m.allocDequantScratch()
}

// findModule returns the module of a spec, or an error naming the modules
// the architecture has.
func (m *Model) findModule(s *Adapter) (*module, error) {
	if s.Layer < 0 || s.Layer >= m.cfg.Layers {
		return nil, fmt.Errorf("%w: layer %d of %d (module %s)", ErrAdapter, s.Layer, m.cfg.Layers, s.Module)
	}
	i := m.pl.module(s.Module)
	if i < 0 {
		return nil, fmt.Errorf("%w: %s: module %q is not an adaptable projection of %s (%s; adapters on lm_head and embed_tokens are not supported)",
			ErrAdapter, arch.LayerPrefix(s.Layer), s.Module, m.cfg.ModelType, strings.Join(m.pl.moduleNames(), ", "))
	}
	return &m.layers[s.Layer].mods[i], nil
}

// AddAdapters attaches adapters, reading their tensors through load under
// the module's path (arch.Config.ModulePath) plus a suffix:
//
//   - LoRA: SuffixA [rank, in] and SuffixB [out, rank];
//   - DoRA: also SuffixMagnitude [out]; one the loader does not have
//     (ErrNotFound) is initialised as PEFT does, to ‖W + s·B·A‖ per row;
//   - (IA)³: SuffixIA3 [out, 1], or [1, in] with FeedForward; one the loader
//     does not have is initialised to ones;
//   - a trainable bias (Adapter.Bias): SuffixBaseBias [out] for a module
//     with a LoRA/DoRA adapter, SuffixBias otherwise; one the loader does
//     not have starts from the base model's bias.
//
// Nothing is attached unless every adapter loads. Params lists adapters in
// layer order, then module order (arch.Config.Linears), as PEFT's
// named_parameters.
func (m *Model) AddAdapters(specs []Adapter, load Loader) error {
	var added []*adapter
	taken := map[string]bool{}
	for _, s := range specs {
		mod, err := m.findModule(&s)
		if err != nil {
			return err
		}
		if mod.ad != nil || taken[mod.path] {
			return fmt.Errorf("%w: %s has two adapters", ErrAdapter, mod.path)
		}
		taken[mod.path] = true
		ad, err := m.newAdapter(s, mod, load)
		if err != nil {
			return err
		}
		added = append(added, ad)
	}
	for _, ad := range added {
		L := &m.layers[ad.Layer]
		L.mods[m.pl.module(ad.Module)].ad = ad
		m.adapters = append(m.adapters, ad)
	}
	m.sortAdapters()
	if m.ws != nil {
		m.ws.free()
		m.ws = nil
	}
	return nil
}

// sortAdapters puts the adapters in PEFT's parameter order: layer, then
// module.
func (m *Model) sortAdapters() {
	slices.SortStableFunc(m.adapters, func(x, y *adapter) int {
		if x.Layer != y.Layer {
			return x.Layer - y.Layer
		}
		return m.pl.module(x.Module) - m.pl.module(y.Module)
	})
}

// checkSpec validates an adapter spec for mod.
func checkSpec(s *Adapter, mod *module) error {
	path := mod.path
	switch {
	case s.IA3:
		if s.Rank != 0 || s.Scale != 0 || s.DoRA || s.Dropout != 0 || s.Bias {
			return fmt.Errorf("%w: %s: (IA)³ takes no rank, scale, DoRA, dropout or trainable bias", ErrAdapter, path)
		}
	case s.FeedForward:
		return fmt.Errorf("%w: %s: FeedForward is an (IA)³ setting", ErrAdapter, path)
	case s.Rank == 0 && s.Bias:
		if s.Scale != 0 || s.DoRA || s.Dropout != 0 {
			return fmt.Errorf("%w: %s: a bias-only spec takes no scale, DoRA or dropout", ErrAdapter, path)
		}
	default:
		if s.Rank <= 0 || s.Rank > 1<<16 || math.IsNaN(float64(s.Scale)) || math.IsInf(float64(s.Scale), 0) {
			return fmt.Errorf("%w: %s: rank %d, scale %g", ErrAdapter, path, s.Rank, s.Scale)
		}
		if !(s.Dropout >= 0 && s.Dropout < 1) {
			return fmt.Errorf("%w: %s: dropout %g", ErrAdapter, path, s.Dropout)
		}
	}
	if s.Bias && !mod.hasBias {
		return fmt.Errorf("%w: %s has no bias to train", ErrAdapter, path)
	}
	return nil
}

// newAdapter validates s and loads its tensors.
func (m *Model) newAdapter(s Adapter, mod *module, load Loader) (*adapter, error) {
	if err := checkSpec(&s, mod); err != nil {
		return nil, err
	}
	path := mod.path
	idx := m.pl.module(s.Module)
	ad := &adapter{Adapter: s, path: path, out: mod.out, in: mod.in,
		stream: uint64(s.Layer)*uint64(maxModules) + uint64(idx)}
	grad := func(n int) (compute.Buffer, error) { return m.alloc(compute.F32, n) }
	var err error
	if s.Bias {
		ad.bias, err = m.tensor(load, ad.biasName(), compute.F32, mod.out)
		if errors.Is(err, ErrNotFound) {
			if ad.bias, err = m.alloc(compute.F32, mod.out); err == nil {
				m.be.Copy(ad.bias, mod.bias)
			}
		}
		if err != nil {
			return nil, err
		}
		if ad.gbias, err = grad(mod.out); err != nil {
			return nil, err
		}
	}
	if s.IA3 {
		shape := []int{mod.out, 1}
		n := mod.out
		if s.FeedForward {
			shape, n = []int{1, mod.in}, mod.in
		}
		ad.l, err = m.tensor(load, path+SuffixIA3, compute.F32, shape...)
		if errors.Is(err, ErrNotFound) {
			if ad.l, err = m.alloc(compute.F32, n); err == nil {
				ones := make([]float32, n)
				for i := range ones {
					ones[i] = 1
				}
				m.be.Upload(ad.l, ones)
			}
		}
		if err != nil {
			return nil, err
		}
		if ad.gl, err = grad(n); err != nil {
			return nil, err
		}
		return ad, nil
	}
	if !s.lora() {
		return ad, nil
	}
	if ad.a, err = m.tensor(load, path+SuffixA, compute.F32, s.Rank, mod.in); err != nil {
		return nil, err
	}
	if ad.b, err = m.tensor(load, path+SuffixB, compute.F32, mod.out, s.Rank); err != nil {
		return nil, err
	}
	if ad.ga, err = grad(s.Rank * mod.in); err != nil {
		return nil, err
	}
	if ad.gb, err = grad(mod.out * s.Rank); err != nil {
		return nil, err
	}
	if !s.DoRA {
		return ad, nil
	}
	if ad.norm, err = m.alloc(compute.F32, mod.out); err != nil {
		return nil, err
	}
	ad.mag, err = m.tensor(load, path+SuffixMagnitude, compute.F32, mod.out)
	if errors.Is(err, ErrNotFound) {
		if ad.mag, err = m.alloc(compute.F32, mod.out); err == nil {
			m.be.DoRANorm(ad.mag, m.weight(mod), ad.a, ad.b, mod.out, mod.in, s.Rank, s.Scale)
		}
	}
	if err != nil {
		return nil, err
	}
	if ad.gm, err = grad(mod.out); err != nil {
		return nil, err
	}
	return ad, nil
}

// Params returns the trainable tensors with their gradient buffers, in
// PEFT's named_parameters order: virtual tokens first; for each module a trainable bias, then
// lora_A, lora_B and, for DoRA, the magnitude; for (IA)³ ia3_l.
func (m *Model) Params() []Param {
	ps := m.virtualParams()
	for _, ad := range m.adapters {
		path := ad.path
		if ad.Bias {
			ps = append(ps, Param{Name: ad.biasName(), Shape: []int{ad.out}, Value: ad.bias, Grad: ad.gbias})
		}
		switch {
		case ad.IA3:
			shape := []int{ad.out, 1}
			if ad.FeedForward {
				shape = []int{1, ad.in}
			}
			ps = append(ps, Param{Name: path + SuffixIA3, Shape: shape, Value: ad.l, Grad: ad.gl})
		case ad.lora():
			ps = append(ps,
				Param{Name: path + SuffixA, Shape: []int{ad.Rank, ad.in}, Value: ad.a, Grad: ad.ga},
				Param{Name: path + SuffixB, Shape: []int{ad.out, ad.Rank}, Value: ad.b, Grad: ad.gb})
			if ad.DoRA {
				ps = append(ps, Param{Name: path + SuffixMagnitude, Shape: []int{ad.out}, Value: ad.mag, Grad: ad.gm})
			}
		}
	}
	return ps
}

// ZeroGrad clears every gradient buffer.
func (m *Model) ZeroGrad() {
	for _, p := range m.Params() {
		m.be.Zero(p.Grad)
	}
}
