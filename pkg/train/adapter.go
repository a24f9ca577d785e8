package train

import (
	"cmp"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/llama"
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/output"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// Adapter methods (lora-train --method).
const (
	MethodLoRA = "lora" // LoRA, or DoRA with AdapterOptions.DoRA
	MethodIA3  = "ia3"  // (IA)³: learned scaling vectors, PEFT's IA3Config defaults
)

// hasBias reports whether a module of the architecture's layers has a bias.
func hasBias(cfg *arch.Config, module string) bool {
	for _, t := range cfg.Tensors() {
		if t.Layer == 0 && t.Bias && t.Module == module {
			return true
		}
	}
	return false
}

// IA3Targets returns the modules of PEFT's IA3Config defaults for an
// architecture (TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING) and
// which of them are feed-forward (input scaling, ia3_l (1, in)); the others
// scale their output (ia3_l (out, 1)). Llama and Mistral: k_proj, v_proj,
// down_proj; Qwen2/3 and Gemma 1/2/3: q_proj, v_proj, down_proj. PEFT has
// no default for Phi-3 (it asks for target_modules); lorakit takes the fused
// qkv_proj and down_proj, the same attention-and-MLP pattern.
func IA3Targets(cfg *arch.Config) (targets, feedForward []string) {
	switch cfg.Arch.ModelType {
	case "llama", "mistral":
		return []string{"k_proj", "v_proj", "down_proj"}, []string{"down_proj"}
	case "phi3":
		return []string{"qkv_proj", "down_proj"}, []string{"down_proj"}
	}
	return []string{"q_proj", "v_proj", "down_proj"}, []string{"down_proj"}
}

// AdapterOptions describe a fresh LoRA or DoRA adapter.
type AdapterOptions struct {
	Rank    int
	Alpha   float64
	Targets []string // module names ("q_proj", "qkv_proj", ...) or "all-linear"
	DoRA    bool
	RSLoRA  bool
	Dropout float64
	// Bias is PEFT's bias option: "none" (default: every bias frozen),
	// "all" (every bias of the model's Linears trains), or "lora_only" (the
	// biases of the adapted modules train). Trained biases are saved as
	// PEFT saves them (Adapter.Specs' Bias; llama.SuffixBaseBias).
	Bias string
}

// Adapter is the structure of an adapter on a model: its PEFT config and
// one llama.Adapter per adapted module (a module whose bias alone trains
// has a spec with Rank 0 and Bias set).
type Adapter struct {
	Config *peft.Config
	Specs  []llama.Adapter
	// Warnings are findings about a loaded adapter's keys and config.
	Warnings []peft.Warning
	// Rename maps the model's tensor and module names to the base
	// checkpoint's layout (Base.CheckpointName: a multimodal wrapper's
	// language model) when the adapter is written; nil keeps them.
	Rename func(string) string
	// Virtual is a prompt-learning adapter's virtual tokens (zero for
	// module adapters); PromptInit ("RANDOM" or "TEXT"), PromptInitText and
	// TokenizerPath its initialisation, as adapter_config.json records it.
	Virtual                                   llama.Virtual
	PromptInit, PromptInitText, TokenizerPath string
}

// NewAdapter describes a fresh adapter on every layer of a model of
// configuration cfg: the targets are resolved by the registry
// (cfg.ResolveTargets; "all-linear" is every Linear of a layer). Adapters
// on lm_head and embed_tokens are not supported.
func NewAdapter(cfg *arch.Config, o AdapterOptions) (*Adapter, error) {
	if o.Rank <= 0 || o.Rank > 1<<16 {
		return nil, fmt.Errorf("%w: rank %d", ErrSettings, o.Rank)
	}
	if !(o.Alpha > 0) || math.IsInf(o.Alpha, 0) {
		return nil, fmt.Errorf("%w: alpha %g", ErrSettings, o.Alpha)
	}
	if !(o.Dropout >= 0 && o.Dropout < 1) {
		return nil, fmt.Errorf("%w: dropout %g must be in [0, 1)", ErrSettings, o.Dropout)
	}
	bias := o.Bias
	switch bias {
	case "":
		bias = peft.BiasNone
	case peft.BiasNone, peft.BiasAll, peft.BiasLoraOnly:
	default:
		return nil, fmt.Errorf("%w: bias %q (none, all, lora_only)", ErrSettings, o.Bias)
	}
	var names []string
	for _, t := range o.Targets {
		names = append(names, strings.TrimSpace(t))
	}
	lins, err := cfg.ResolveTargets(names)
	if err != nil {
		return nil, fmt.Errorf("%w: --targets: %w", ErrSettings, err)
	}
	names = names[:0]
	for _, l := range lins {
		if l.Module == "lm_head" || l.Embedding {
			return nil, fmt.Errorf("%w: --targets: %s adapters are not supported (the layers' projections are: %s)",
				ErrSettings, l.Module, strings.Join(cfg.AllLinear(), ", "))
		}
		names = append(names, l.Module)
	}
	pc := peft.NewLoraConfig(o.Rank, o.Alpha, peft.Names(names...))
	pc.UseDoRA, pc.UseRSLoRA, pc.LoraDropout, pc.Bias = o.DoRA, o.RSLoRA, o.Dropout, bias
	scale := peft.Scaling(o.Alpha, o.Rank, o.RSLoRA)
	lora := llama.Adapter{Rank: o.Rank, Scale: scale, DoRA: o.DoRA, Dropout: float32(o.Dropout)}
	return &Adapter{Config: pc, Specs: llama.LoRASpecs(cfg, names, lora, bias != peft.BiasNone, bias == peft.BiasAll)}, nil
}

// NewIA3Adapter describes a fresh (IA)³ adapter on every layer of a model,
// on IA3Targets as PEFT's IA3Config defaults (spec §7.4).
func NewIA3Adapter(cfg *arch.Config) (*Adapter, error) {
	targets, ff := IA3Targets(cfg)
	a := &Adapter{}
	for l := range cfg.Layers {
		for _, m := range targets {
			a.Specs = append(a.Specs, llama.Adapter{Layer: l, Module: m, IA3: true, FeedForward: slices.Contains(ff, m)})
		}
	}
	raw, err := ia3ConfigJSON(a.Specs, "")
	if err != nil {
		return nil, err
	}
	if a.Config, err = peft.Parse(raw); err != nil {
		return nil, err
	}
	return a, nil
}

// ia3ConfigJSON returns the adapter_config.json of an (IA)³ adapter with
// the long-standing IA3Config keys, as PEFT writes it (json.dumps with
// indent 2 and sorted keys; module lists sorted): target_modules and
// feedforward_modules are the specs' projection names.
func ia3ConfigJSON(specs []llama.Adapter, base string) ([]byte, error) {
	targets, ff := []string{}, []string{}
	for _, s := range specs {
		n := s.Module
		if !slices.Contains(targets, n) {
			targets = append(targets, n)
		}
		if s.FeedForward && !slices.Contains(ff, n) {
			ff = append(ff, n)
		}
	}
	slices.Sort(targets)
	slices.Sort(ff)
	var bp any
	if base != "" {
		bp = base
	}
	raw, err := json.Marshal(map[string]any{
		"peft_type": peft.TypeIA3, "task_type": peft.TaskCausalLM, "target_modules": targets,
		"feedforward_modules": ff, "fan_in_fan_out": false, "init_ia3_weights": true, "modules_to_save": nil,
		"base_model_name_or_path": bp, "inference_mode": true, "revision": nil,
	})
	if err != nil {
		return nil, err
	}
	pc, err := peft.Parse(raw)
	if err != nil {
		return nil, err
	}
	return peft.Marshal(pc)
}

// IsIA3 reports whether the adapter is an (IA)³ adapter.
func (a *Adapter) IsIA3() bool { return a.Config != nil && a.Config.PeftType == peft.TypeIA3 }

// InitLoader returns PEFT's default initialisation (spec §8) of the
// adapters specs on a model of configuration cfg: lora_A ~ U(−1/√in, 1/√in),
// lora_B = 0, rounded to round (the dtype PEFT moves a fresh adapter to and
// back, §7.6). It has no DoRA magnitude, which the model then initialises
// to the weight-row norms as PEFT does, and no trainable bias, which starts
// from the base's. (IA)³ vectors are ones (init_ia3_weights). Each tensor
// draws from its own stream of (seed, name), so the values do not depend on
// the order of requests.
func InitLoader(cfg *arch.Config, specs []llama.Adapter, seed uint64, round dtype.DType) llama.Loader {
	shapes := map[string][]int{}
	lin := map[string]arch.Linear{}
	for _, l := range cfg.Linears() {
		lin[l.Module] = l
	}
	for _, s := range specs {
		out, in := int(lin[s.Module].Out), int(lin[s.Module].In)
		p := cfg.ModulePath(s.Layer, s.Module)
		switch {
		case s.IA3:
			shapes[p+llama.SuffixIA3] = []int{out, 1}
			if s.FeedForward {
				shapes[p+llama.SuffixIA3] = []int{1, in}
			}
		case s.Rank > 0:
			shapes[p+llama.SuffixA] = []int{s.Rank, in}
			shapes[p+llama.SuffixB] = []int{out, s.Rank}
		}
	}
	return func(name string) ([]float32, []int, error) {
		shape, ok := shapes[name]
		if !ok {
			return nil, nil, fmt.Errorf("%q: %w", name, llama.ErrNotFound)
		}
		v := make([]float32, shape[0]*shape[1])
		if strings.HasSuffix(name, llama.SuffixIA3) {
			for i := range v {
				v[i] = 1
			}
			return v, shape, nil
		}
		if strings.HasSuffix(name, llama.SuffixB) {
			return v, shape, nil
		}
		h := fnv.New64a()
		io.WriteString(h, name)
		r := rand.New(rand.NewPCG(seed, h.Sum64()))
		bound := 1 / math.Sqrt(float64(shape[1]))
		for i := range v {
			v[i] = float32(bound * (2*r.Float64() - 1))
		}
		if round == dtype.BF16 || round == dtype.F16 {
			raw := make([]byte, len(v)*2)
			dtype.FromF32(raw, v, round)
			dtype.ToF32(v, raw, round)
		}
		return v, shape, nil
	}
}

// OpenAdapter reads a PEFT LoRA, DoRA, IA3 or prompt-tuning adapter (folder, file or "-")
// for the model cfg: its structure and a loader of its tensors (held in
// memory). Modules are matched by the registry's names (in a multimodal
// wrapper's layout too, cfg.TextName); biases the adapter carries (PEFT's
// bias "all" or "lora_only") replace the base's and train. dropout is the
// dropout to train a LoRA/DoRA adapter with.
func OpenAdapter(path string, stdin io.Reader, cfg *arch.Config, dropout float64) (*Adapter, llama.Loader, error) {
	ma, err := model.OpenAdapter(path, stdin, model.AdapterOptions{Validate: peft.ValidateOptions{AllowIA3: true,
		AllowPromptLearning: true}})
	if err != nil {
		return nil, nil, err
	}
	defer ma.Close()
	pc, an := ma.Config, ma.Analysis
	if peft.PromptLearningReason(pc.PeftType) != "" {
		return openVirtual(path, ma, cfg)
	}
	ia3 := pc.PeftType == peft.TypeIA3
	if pc.PeftType != peft.TypeLoRA && !ia3 {
		return nil, nil, fmt.Errorf("%s: %w: peft_type %s (LORA, IA3 and PROMPT_TUNING only)", path, ErrAdapter, pc.PeftType)
	}
	if ia3 && pc.FanInFanOut {
		return nil, nil, fmt.Errorf("%s: %w: IA3 with fan_in_fan_out (Conv1D layout)", path, ErrAdapter)
	}
	mt, err := peft.NewMatcher(pc)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: adapter_config.json: %w", path, err)
	}
	tensors, err := ma.Load()
	if err != nil {
		return nil, nil, err
	}
	src := ma.Source
	if len(an.Modules) == 0 {
		return nil, nil, fmt.Errorf("%s: %w: no adapter modules", path, ErrAdapter)
	}
	adaptable := cfg.AllLinear()
	// module returns the layer and registry name of a stored module path.
	module := func(p string) (int, string, bool) {
		text, ok := cfg.TextName(p + ".weight")
		if !ok {
			return 0, "", false
		}
		t, ok := cfg.Tensor(text)
		if !ok || !slices.Contains(adaptable, t.Module) || t.Layer < 0 {
			return 0, "", false
		}
		return t.Layer, t.Module, true
	}
	a := &Adapter{Config: pc, Warnings: an.Warnings}
	stored := map[string]string{} // llama tensor name → stored name
	for _, m := range an.Modules {
		if (m.Kind == peft.KindIA3) != ia3 {
			return nil, nil, fmt.Errorf("%s: %w: module %s is %s in a %s adapter", path, ErrAdapter, m.Path, m.Kind, pc.PeftType)
		}
		l, name, ok := module(m.Path)
		if !ok {
			return nil, nil, fmt.Errorf("%s: %w: module %s is not a projection of this %s model (%s)", path, ErrAdapter, m.Path,
				cfg.Arch.ModelType, strings.Join(adaptable, ", "))
		}
		mp := cfg.ModulePath(l, name)
		if ia3 {
			if mt.Feedforward(m.Path) != m.Feedforward {
				return nil, nil, fmt.Errorf("%s: %w: IA3 module %s: feedforward_modules disagrees with the shape of %q", path, ErrAdapter, m.Path, m.IA3)
			}
			a.Specs = append(a.Specs, llama.Adapter{Layer: l, Module: name, IA3: true, FeedForward: m.Feedforward})
			stored[mp+llama.SuffixIA3] = m.IA3
			continue
		}
		if m.Kind != peft.KindLinear || m.Transposed || m.BBias != "" {
			return nil, nil, fmt.Errorf("%s: %w: module %s (%s%s) is not a plain LoRA/DoRA linear", path, ErrAdapter, m.Path, m.Kind, map[bool]string{true: ", MLX layout"}[m.Transposed])
		}
		a.Specs = append(a.Specs, llama.Adapter{Layer: l, Module: name, Rank: m.Rank, Scale: m.Scaling,
			DoRA: m.DoRA(), Dropout: float32(dropout)})
		stored[mp+llama.SuffixA] = m.A
		stored[mp+llama.SuffixB] = m.B
		if m.Magnitude != "" {
			stored[mp+llama.SuffixMagnitude] = m.Magnitude
		}
	}
	// trainBias marks the bias of a module trainable and returns the name
	// the model asks the loader for.
	trainBias := func(l int, name string) string {
		i := slices.IndexFunc(a.Specs, func(s llama.Adapter) bool { return s.Layer == l && s.Module == name })
		suffix := llama.SuffixBaseBias
		if i < 0 {
			a.Specs = append(a.Specs, llama.Adapter{Layer: l, Module: name})
			i, suffix = len(a.Specs)-1, llama.SuffixBias
		}
		a.Specs[i].Bias = true
		return cfg.ModulePath(l, name) + suffix
	}
	for _, o := range an.Others {
		l, name, ok := module(o.Key.Module)
		if o.Key.Role != peft.RoleBias || !ok || ia3 || !hasBias(cfg, name) {
			return nil, nil, fmt.Errorf("%s: %w: tensor %q is not an adapter tensor or a bias of an adapted model's projection (modules_to_save and token deltas are not supported)", path, ErrAdapter, o.Key.Name)
		}
		stored[trainBias(l, name)] = o.Key.Name
	}
	if !ia3 && (pc.Bias == peft.BiasAll || pc.Bias == peft.BiasLoraOnly) {
		// PEFT's _mark_only_adapters_as_trainable: every bias, or those of
		// the adapted modules, train (from the base's values unless the file
		// has them).
		for _, s := range slices.Clone(a.Specs) {
			if s.Rank > 0 && hasBias(cfg, s.Module) {
				trainBias(s.Layer, s.Module)
			}
		}
		if pc.Bias == peft.BiasAll {
			for l := range cfg.Layers {
				for _, name := range adaptable {
					if hasBias(cfg, name) {
						trainBias(l, name)
					}
				}
			}
		}
	}
	order := func(m string) int { return slices.Index(adaptable, m) }
	slices.SortFunc(a.Specs, func(x, y llama.Adapter) int { // the model's order, as NewAdapter
		return cmp.Or(cmp.Compare(x.Layer, y.Layer), cmp.Compare(order(x.Module), order(y.Module)))
	})
	first := slices.IndexFunc(a.Specs, func(s llama.Adapter) bool { return s.Rank > 0 })
	for _, s := range a.Specs {
		if first >= 0 && s.Rank > 0 && s.DoRA != a.Specs[first].DoRA {
			return nil, nil, fmt.Errorf("%s: %w: some modules have a DoRA magnitude and some do not", path, ErrAdapter)
		}
	}
	load := func(name string) ([]float32, []int, error) {
		sn, ok := stored[name]
		if !ok {
			return nil, nil, fmt.Errorf("%s: %q: %w", path, name, llama.ErrNotFound)
		}
		info, _ := src.Info(sn)
		if !info.DType.IsFloat() {
			return nil, nil, fmt.Errorf("%s: tensor %q: %w: dtype %s", path, sn, ErrAdapter, info.DType)
		}
		v := make([]float32, info.NumElements())
		if err := dtype.ToF32(v, tensors[sn], info.DType); err != nil {
			return nil, nil, fmt.Errorf("%s: tensor %q: %w", path, sn, err)
		}
		shape := shapeInts(info.Shape)
		if strings.HasSuffix(name, llama.SuffixMagnitude) && len(shape) == 2 && shape[1] == 1 {
			shape = shape[:1]
		}
		return v, shape, nil
	}
	return a, load, nil
}

// ConfigJSON returns adapter_config.json with the compatible key set
// (spec §2.3); for (IA)³, the long-standing IA3Config keys with the
// adapter's modules; for prompt tuning, PromptTuningConfig's.
func (a *Adapter) ConfigJSON() ([]byte, error) {
	if a.IsVirtual() {
		return a.virtualConfigJSON()
	}
	if a.IsIA3() {
		return ia3ConfigJSON(a.Specs, a.Config.BaseModelNameOrPath)
	}
	c := *a.Config
	c.InferenceMode = true
	return peft.MarshalCompat(&c)
}

// namedTensor is an F32 tensor to write.
type namedTensor struct {
	name  string
	shape []int
	data  []float32
}

// adapterTensors downloads the model's adapter tensors under PEFT's names,
// in the base checkpoint's layout (rename: Adapter.Rename, or nil).
func adapterTensors(m *llama.Model, rename func(string) string) ([]namedTensor, error) {
	var out []namedTensor
	for _, p := range m.Params() {
		v := make([]float32, p.Value.Len())
		if err := m.Backend().Download(v, p.Value); err != nil {
			return nil, err
		}
		out = append(out, namedTensor{name: savedName(p.Name, rename), shape: p.Shape, data: v})
	}
	return out, nil
}

// savedName is the key of a model parameter in the adapter file, as
// get_peft_model_state_dict names it: "prompt_embeddings" for prompt
// tuning, else the parameter under "base_model.model." (its module path
// renamed by rename, when not nil).
func savedName(name string, rename func(string) string) string {
	if name == llama.PromptEmbeddings {
		return name
	}
	if rename != nil {
		// The module path is renamed; the parameter's suffix stays.
		mod, suffix := splitParam(name)
		name = rename(mod) + suffix
	}
	return peft.Prefix + name
}

// splitParam splits a parameter name into its module path and the suffix
// after it (".lora_A.weight", ".base_layer.bias", ...).
func splitParam(name string) (module, suffix string) {
	for _, s := range []string{llama.SuffixA, llama.SuffixB, llama.SuffixMagnitude, llama.SuffixIA3, llama.SuffixBaseBias,
		llama.SuffixBias} {
		if m, ok := strings.CutSuffix(name, s); ok {
			return m, s
		}
	}
	return name, ""
}

// writeTensors writes tensors and files to path (folder, file or "-")
// through checkpoint.CreateWith: atomic, reference layout, "format": "pt".
func writeTensors(path, file string, files map[string][]byte, ts []namedTensor, o output.Options) error {
	infos := make([]safetensors.TensorInfo, len(ts))
	byName := map[string][]float32{}
	for i, t := range ts {
		shape := make([]int64, len(t.shape))
		for j, d := range t.shape {
			shape[j] = int64(d)
		}
		infos[i] = safetensors.TensorInfo{Name: t.name, DType: dtype.F32, Shape: shape}
		byName[t.name] = t.data
	}
	w, err := checkpoint.CreateWith(path, files, []checkpoint.Shard{{Name: file, Tensors: infos}}, o)
	if err != nil {
		return err
	}
	for _, t := range w.Order() {
		if err := w.WriteTensor(t.Name, num.F32Bytes(byName[t.Name])); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Commit()
}

// WriteAdapter writes the model's adapter as a PEFT adapter: a folder
// (adapter_config.json + adapter_model.safetensors), one .safetensors file
// or "-" (o.Stdout; both carrying adapter_config.json in __metadata__).
func WriteAdapter(path string, a *Adapter, m *llama.Model, o output.Options) error {
	cfg, err := a.ConfigJSON()
	if err != nil {
		return err
	}
	ts, err := adapterTensors(m, a.Rename)
	if err != nil {
		return err
	}
	return writeTensors(path, "adapter_model.safetensors", map[string][]byte{"adapter_config.json": cfg}, ts, o)
}
