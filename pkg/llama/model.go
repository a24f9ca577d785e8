package llama

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/lorakit/lorakit/pkg/compute"
)

// Loader returns the tensor called name (a Hugging Face name such as
// "model.norm.weight") as float32 values in row-major order, with its shape.
// A loader that has no such tensor returns an error wrapping ErrNotFound.
type Loader func(name string) (data []float32, shape []int, err error)

// Options tune how the model is held and run; the zero value is valid.
type Options struct {
	// WeightDType is the storage of the frozen matrices (embedding,
	// projections, lm_head): compute.F32 (default) or compute.BF16. Norm
	// weights and adapters are always F32, and arithmetic is f32.
	WeightDType compute.DType
	// LossChunk is the number of token rows whose logits exist at one time
	// while computing the loss (0: as many as fit in 16 Mi floats).
	LossChunk int
	// GradCheckpoint keeps only each layer's input during a training forward
	// and recomputes the layer in the backward pass.
	GradCheckpoint bool
	// Quantized, when set, is asked first for each projection weight
	// (q/k/v/o/gate/up/down_proj): one it returns is held on the backend in
	// its 4-bit form (QLoRA) and dequantized, exactly as bitsandbytes'
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
	// statistics, the attention softmax and its log-sum-exp, the logits and
	// the cross-entropy stay f32, and so do the adapters' master weights,
	// their gradients and the optimizer state: an adapter weight is rounded
	// to bf16 where it enters a product, as autocast rounds lora_A and
	// lora_B. The gradient of the residual stream is accumulated in f32.
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
// matrices uniform in [−Scale, Scale), norms 1. With NF4 the seven
// projections are held as random bitsandbytes NF4 codes with double
// quantization (blocks of 64, nested blocks of 256), dequantized like a
// QLoRA checkpoint's.
type Synthetic struct {
	Seed  uint64
	Scale float32
	NF4   bool
}

// Adapter describes the adapter of one projection: LoRA, DoRA or (IA)³.
type Adapter struct {
	Layer   int
	Target  Target
	Rank    int
	Scale   float32 // s = α/r, or α/√r with rsLoRA
	DoRA    bool
	Dropout float32 // probability of the dropout on the adapter input (training only)
	// IA3 makes this an (IA)³ adapter: a learned vector scaling the
	// projection's output, or its input with FeedForward (PEFT's
	// feedforward_modules). Rank, Scale, DoRA and Dropout must be zero.
	IA3         bool
	FeedForward bool
}

// Names of an adapter's tensors, relative to its ModulePath.
const (
	SuffixA         = ".lora_A.weight"
	SuffixB         = ".lora_B.weight"
	SuffixMagnitude = ".lora_magnitude_vector"
	SuffixIA3       = ".ia3_l"
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
	out, in    int
	a, b, mag  compute.Buffer // [rank, in], [out, rank], [out] (DoRA)
	ga, gb, gm compute.Buffer
	norm       compute.Buffer // DoRA: detached ‖W + s·B·A‖ of the last forward
	l, gl      compute.Buffer // (IA)³ vector [out] or [in] and its gradient
	stream     uint64         // dropout stream
}

type linear struct {
	w       compute.Buffer // [out, in]; nil when q holds the weight
	q       *quantWeight   // 4-bit form (QLoRA), or nil
	out, in int
	ad      *adapter
}

type layer struct {
	attnNorm, mlpNorm compute.Buffer
	proj              [numTargets]linear
}

// Model is a Llama decoder with adapters on a backend. It is not safe for
// concurrent use.
type Model struct {
	be        compute.Backend
	cfg       Config
	opt       Options
	hd        int
	embed     compute.Buffer
	lmHead    compute.Buffer
	finalNorm compute.Buffer
	layers    []layer
	adapters  []*adapter // in PEFT parameter order
	owned     []compute.Buffer
	invFreq   []float32
	dq        map[compute.DType]compute.Buffer // dequantization scratch by dtype
	ws        *workspace
	// keepNorms is the running ForwardBackward's Step.KeepDoRANorms.
	keepNorms bool
}

// New builds the model from cfg, reading every base weight through load.
func New(be compute.Backend, cfg Config, load Loader, opt Options) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var err error
	if opt.Precision, err = ParsePrecision(string(opt.Precision)); err != nil {
		return nil, err
	}
	bf16 := opt.Precision == PrecisionBF16
	switch opt.WeightDType {
	case 0:
		opt.WeightDType = compute.F32
		if bf16 {
			opt.WeightDType = compute.BF16
		}
	case compute.F32, compute.BF16:
	default:
		return nil, fmt.Errorf("%w: weight dtype %v", ErrConfig, opt.WeightDType)
	}
	if bf16 && opt.WeightDType != compute.BF16 {
		return nil, fmt.Errorf("%w: bf16 precision with %v weights", ErrConfig, opt.WeightDType)
	}
	if load == nil && opt.Synthetic == nil {
		return nil, fmt.Errorf("%w: no weights (a nil Loader without Synthetic)", ErrConfig)
	}
	m := &Model{be: be, cfg: cfg, opt: opt, hd: cfg.headDim(), invFreq: cfg.RopeInvFreq()}
	if err := m.loadBase(load, opt.Quantized); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// Config returns the model's configuration.
func (m *Model) Config() Config { return m.cfg }

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

// tensor loads name, checks its shape and uploads it as dt.
func (m *Model) tensor(load Loader, name string, dt compute.DType, shape ...int) (compute.Buffer, error) {
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
	b, err := m.alloc(dt, n)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	m.be.Upload(b, data)
	return b, nil
}

// baseTensor is tensor for a base weight: made on the backend under
// Options.Synthetic.
func (m *Model) baseTensor(load Loader, name string, dt compute.DType, shape ...int) (compute.Buffer, error) {
	if b, ok, err := m.syntheticTensor(name, dt, shape); ok || err != nil {
		return b, err
	}
	return m.tensor(load, name, dt, shape...)
}

func (m *Model) loadBase(load Loader, qload QuantLoader) error {
	c, wdt := &m.cfg, m.opt.WeightDType
	var err error
	if m.embed, err = m.baseTensor(load, "model.embed_tokens.weight", wdt, c.Vocab, c.Hidden); err != nil {
		return err
	}
	if c.TieEmbeddings {
		m.lmHead = m.embed
	} else if m.lmHead, err = m.baseTensor(load, "lm_head.weight", wdt, c.Vocab, c.Hidden); err != nil {
		return err
	}
	if m.finalNorm, err = m.baseTensor(load, "model.norm.weight", compute.F32, c.Hidden); err != nil {
		return err
	}
	m.layers = make([]layer, c.Layers)
	for l := range m.layers {
		L := &m.layers[l]
		pre := fmt.Sprintf("model.layers.%d.", l)
		if L.attnNorm, err = m.baseTensor(load, pre+"input_layernorm.weight", compute.F32, c.Hidden); err != nil {
			return err
		}
		if L.mlpNorm, err = m.baseTensor(load, pre+"post_attention_layernorm.weight", compute.F32, c.Hidden); err != nil {
			return err
		}
		for t := range numTargets {
			out, in := c.shape(t)
			name := ModulePath(l, t) + ".weight"
			L.proj[t] = linear{out: out, in: in}
			if L.proj[t].q, err = m.quantTensor(qload, name, out, in); err != nil {
				return err
			}
			if L.proj[t].q != nil {
				continue
			}
			if L.proj[t].w, err = m.baseTensor(load, name, wdt, out, in); err != nil {
				return err
			}
		}
	}
	return m.allocDequantScratch()
}

// AddAdapters attaches adapters, reading their tensors through load under
// ModulePath(layer, target) plus a suffix:
//
//   - LoRA: SuffixA [rank, in] and SuffixB [out, rank];
//   - DoRA: also SuffixMagnitude [out]; one the loader does not have
//     (ErrNotFound) is initialised as PEFT does, to ‖W + s·B·A‖ per row;
//   - (IA)³: SuffixIA3 [out, 1], or [1, in] with FeedForward; one the loader
//     does not have is initialised to ones.
//
// Nothing is attached unless every adapter loads. Params lists adapters in
// layer order, then projection order.
func (m *Model) AddAdapters(specs []Adapter, load Loader) error {
	var added []*adapter
	taken := map[[2]int]bool{}
	for _, s := range specs {
		ad, err := m.newAdapter(s, load)
		if err != nil {
			return err
		}
		key := [2]int{s.Layer, int(s.Target)}
		if m.layers[s.Layer].proj[s.Target].ad != nil || taken[key] {
			return fmt.Errorf("%w: %s has two adapters", ErrAdapter, ModulePath(s.Layer, s.Target))
		}
		taken[key] = true
		added = append(added, ad)
	}
	for _, ad := range added {
		m.layers[ad.Layer].proj[ad.Target].ad = ad
		m.adapters = append(m.adapters, ad)
	}
	slices.SortStableFunc(m.adapters, func(x, y *adapter) int {
		if x.Layer != y.Layer {
			return x.Layer - y.Layer
		}
		return int(x.Target) - int(y.Target)
	})
	if m.ws != nil {
		m.ws.free()
		m.ws = nil
	}
	return nil
}

// newAdapter validates s and loads its tensors.
func (m *Model) newAdapter(s Adapter, load Loader) (*adapter, error) {
	if s.Layer < 0 || s.Layer >= m.cfg.Layers || s.Target >= numTargets {
		return nil, fmt.Errorf("%w: layer %d, target %v", ErrAdapter, s.Layer, s.Target)
	}
	path := ModulePath(s.Layer, s.Target)
	lin := &m.layers[s.Layer].proj[s.Target]
	ad := &adapter{Adapter: s, out: lin.out, in: lin.in, stream: uint64(s.Layer)*uint64(numTargets) + uint64(s.Target)}
	grad := func(n int) (compute.Buffer, error) { return m.alloc(compute.F32, n) }
	var err error
	if s.IA3 {
		if s.Rank != 0 || s.Scale != 0 || s.DoRA || s.Dropout != 0 {
			return nil, fmt.Errorf("%w: %s: (IA)³ takes no rank, scale, DoRA or dropout", ErrAdapter, path)
		}
		shape := []int{lin.out, 1}
		n := lin.out
		if s.FeedForward {
			shape, n = []int{1, lin.in}, lin.in
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
	if s.FeedForward {
		return nil, fmt.Errorf("%w: %s: FeedForward is an (IA)³ setting", ErrAdapter, path)
	}
	if s.Rank <= 0 || s.Rank > 1<<16 || math.IsNaN(float64(s.Scale)) || math.IsInf(float64(s.Scale), 0) {
		return nil, fmt.Errorf("%w: %s: rank %d, scale %g", ErrAdapter, path, s.Rank, s.Scale)
	}
	if !(s.Dropout >= 0 && s.Dropout < 1) {
		return nil, fmt.Errorf("%w: %s: dropout %g", ErrAdapter, path, s.Dropout)
	}
	if ad.a, err = m.tensor(load, path+SuffixA, compute.F32, s.Rank, lin.in); err != nil {
		return nil, err
	}
	if ad.b, err = m.tensor(load, path+SuffixB, compute.F32, lin.out, s.Rank); err != nil {
		return nil, err
	}
	if ad.ga, err = grad(s.Rank * lin.in); err != nil {
		return nil, err
	}
	if ad.gb, err = grad(lin.out * s.Rank); err != nil {
		return nil, err
	}
	if !s.DoRA {
		return ad, nil
	}
	if ad.norm, err = m.alloc(compute.F32, lin.out); err != nil {
		return nil, err
	}
	ad.mag, err = m.tensor(load, path+SuffixMagnitude, compute.F32, lin.out)
	if errors.Is(err, ErrNotFound) {
		if ad.mag, err = m.alloc(compute.F32, lin.out); err == nil {
			m.be.DoRANorm(ad.mag, m.weight(lin), ad.a, ad.b, lin.out, lin.in, s.Rank, s.Scale)
		}
	}
	if err != nil {
		return nil, err
	}
	if ad.gm, err = grad(lin.out); err != nil {
		return nil, err
	}
	return ad, nil
}

// Params returns the trainable tensors with their gradient buffers: for
// each adapter lora_A, lora_B and, for DoRA, the magnitude; for (IA)³ ia3_l.
func (m *Model) Params() []Param {
	var ps []Param
	for _, ad := range m.adapters {
		path := ModulePath(ad.Layer, ad.Target)
		if ad.IA3 {
			shape := []int{ad.out, 1}
			if ad.FeedForward {
				shape = []int{1, ad.in}
			}
			ps = append(ps, Param{Name: path + SuffixIA3, Shape: shape, Value: ad.l, Grad: ad.gl})
			continue
		}
		ps = append(ps,
			Param{Name: path + SuffixA, Shape: []int{ad.Rank, ad.in}, Value: ad.a, Grad: ad.ga},
			Param{Name: path + SuffixB, Shape: []int{ad.out, ad.Rank}, Value: ad.b, Grad: ad.gb})
		if ad.DoRA {
			ps = append(ps, Param{Name: path + SuffixMagnitude, Shape: []int{ad.out}, Value: ad.mag, Grad: ad.gm})
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
