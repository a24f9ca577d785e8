package peft

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// ModuleKind is the kind of an adapted module.
type ModuleKind uint8

// Module kinds.
const (
	KindLinear    ModuleKind = iota // lora_A/lora_B on a Linear (or Conv1D with fan_in_fan_out)
	KindEmbedding                   // lora_embedding_A/B on an Embedding
	KindAdaLoRA                     // AdaLoRA lora_A/lora_B/lora_E
	KindIA3                         // IA3 ia3_l vector
)

// String names the kind.
func (k ModuleKind) String() string {
	switch k {
	case KindLinear:
		return "linear"
	case KindEmbedding:
		return "embedding"
	case KindAdaLoRA:
		return "adalora"
	case KindIA3:
		return "ia3"
	}
	return "ModuleKind(" + strconv.Itoa(int(k)) + ")"
}

// Module is one adapted module of an adapter file, its tensors (names as
// stored in the file) and its shapes, checked for consistency (spec §3.2).
type Module struct {
	Path  string // relative to the HF model, e.g. "model.layers.0.self_attn.q_proj"
	Type  string // last path segment, e.g. "q_proj"
	Layer int    // LayerIndex(Path), -1 when none
	Kind  ModuleKind

	Rank int   // lora_A.shape[0] (lora_embedding_A.shape[0]); 0 for IA3
	In   int64 // in_features (num_embeddings for an embedding)
	Out  int64 // out_features (embedding_dim for an embedding)

	A, B        string // lora_A/lora_B (lora_embedding_A/B, AdaLoRA A/B)
	BBias       string // lora_B.bias (lora_bias), "" when absent
	Magnitude   string // DoRA lora_magnitude_vector, "" when absent
	E           string // AdaLoRA lora_E
	IA3         string // IA3 vector
	Feedforward bool   // IA3 vector of shape (1, in)
	Transposed  bool   // MLX layout: A is (in, r), B is (r, out)

	Params int64 // elements of the module's adapter tensors

	// Set by Analyze when a config is given.
	ConfigRank int     // rank the config gives the module (rank_pattern or r)
	Alpha      float64 // alpha_pattern or lora_alpha
	Scaling    float32 // Alpha/Rank (or /√Rank with rsLoRA), Rank from the shape
}

// BaseName returns the base-model weight the module adapts ("<path>.weight").
func (m Module) BaseName() string { return m.Path + ".weight" }

// DoRA reports whether the module has a DoRA magnitude vector.
func (m Module) DoRA() bool { return m.Magnitude != "" }

// BaseShape returns the shape the base weight must have: (out, in), or
// (in, out) with fan_in_fan_out (GPT-2 Conv1D); an embedding's weight is
// (num_embeddings, embedding_dim) = (In, Out).
func (m Module) BaseShape(fanInFanOut bool) [2]int64 {
	if m.Kind == KindEmbedding || fanInFanOut {
		return [2]int64{m.In, m.Out}
	}
	return [2]int64{m.Out, m.In}
}

// Other is a tensor that is not part of a low-rank module: a
// modules_to_save copy, saved embedding, bias, trainable-token delta or
// prompt embedding.
type Other struct {
	Key   Key
	Shape []int64
}

// Adapter is the analysis of an adapter's tensors.
type Adapter struct {
	Modules   []Module  // sorted by path (numeric segments in numeric order)
	Others    []Other   // sorted by name
	Trainable int64     // Σ numel of every tensor: PEFT's trainable parameter count
	Adapter   string    // adapter name found left in keys, "" when none
	Warnings  []Warning // deduplicated key warnings, then config warnings
}

// Modules groups tensors into adapted modules (Analyze without a config).
func Modules(tensors []Tensor) ([]Module, error) {
	a, err := Analyze(tensors, nil)
	if err != nil {
		return nil, err
	}
	return a.Modules, nil
}

type entry struct {
	key   Key
	shape []int64
	numel int64
}

type group struct {
	roles map[Role]*entry
}

// Analyze normalises every tensor name, groups low-rank tensors by module,
// checks shapes, counts parameters and, when cfg is not nil, resolves each
// module's rank, alpha and scaling from the config and warns where config
// and file disagree (rank, targets, DoRA, modules_to_save, bias). Errors
// name the tensor at fault.
func Analyze(tensors []Tensor, cfg *Config) (*Adapter, error) {
	a := &Adapter{}
	groups := map[string]*group{}
	var order []string
	type agg struct {
		first Warning
		n     int
	}
	keyWarn := map[string]*agg{}
	var keyWarnOrder []string
	for _, t := range tensors {
		k, ws, err := ParseKey(t.Name)
		if err != nil {
			return nil, err
		}
		n, err := t.NumElements()
		if err != nil {
			return nil, err
		}
		a.Trainable += n
		for _, w := range ws {
			if g := keyWarn[w.Code]; g != nil {
				g.n++
				continue
			}
			keyWarn[w.Code] = &agg{first: w, n: 1}
			keyWarnOrder = append(keyWarnOrder, w.Code)
		}
		if k.Adapter != "" {
			if a.Adapter != "" && a.Adapter != k.Adapter {
				return nil, fmt.Errorf("tensor %q: adapter name %q, others have %q (several adapters in one file): %w", t.Name, k.Adapter, a.Adapter, ErrUnsupportedKey)
			}
			a.Adapter = k.Adapter
		}
		if !k.Role.IsLoRA() {
			a.Others = append(a.Others, Other{Key: k, Shape: t.Shape})
			continue
		}
		g := groups[k.Module]
		if g == nil {
			g = &group{roles: map[Role]*entry{}}
			groups[k.Module] = g
			order = append(order, k.Module)
		}
		if prev := g.roles[k.Role]; prev != nil {
			return nil, fmt.Errorf("tensor %q: same module and role (%s) as tensor %q: %w", t.Name, k.Role, prev.key.Name, ErrDuplicateTensor)
		}
		g.roles[k.Role] = &entry{key: k, shape: t.Shape, numel: n}
	}
	for _, code := range keyWarnOrder {
		g := keyWarn[code]
		w := g.first
		if g.n > 1 {
			w.Msg += fmt.Sprintf(" (and %d more tensors)", g.n-1)
		}
		a.Warnings = append(a.Warnings, w)
	}
	for _, path := range order {
		m, err := buildModule(path, groups[path])
		if err != nil {
			return nil, err
		}
		a.Modules = append(a.Modules, m)
	}
	sort.Slice(a.Modules, func(i, j int) bool { return naturalLess(a.Modules[i].Path, a.Modules[j].Path) })
	sort.SliceStable(a.Others, func(i, j int) bool { return naturalLess(a.Others[i].Key.Name, a.Others[j].Key.Name) })
	for _, o := range a.Others {
		if err := checkOther(o); err != nil {
			return nil, err
		}
	}
	if cfg != nil {
		if err := a.resolve(cfg); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func checkOther(o Other) error {
	if o.Key.Role == RoleTrainableTokens && len(o.Shape) != 2 {
		return fmt.Errorf("tensor %q: trainable_tokens_delta shape %v is not (tokens, dim): %w", o.Key.Name, o.Shape, ErrShape)
	}
	return nil
}

func shapeErr(e *entry, format string, args ...any) error {
	return fmt.Errorf("tensor %q: shape %v: %s: %w", e.key.Name, e.shape, fmt.Sprintf(format, args...), ErrShape)
}

func buildModule(path string, g *group) (Module, error) {
	m := Module{Path: path, Layer: LayerIndex(path)}
	m.Type = path[strings.LastIndexByte(path, '.')+1:]
	r := g.roles
	for _, e := range r {
		m.Params += e.numel
	}
	first := func() *entry { // a deterministic tensor to name in errors
		for _, role := range []Role{RoleLoraA, RoleLoraB, RoleEmbeddingA, RoleEmbeddingB, RoleAdaLoraA, RoleAdaLoraB, RoleAdaLoraE, RoleIA3, RoleMagnitude, RoleLoraBBias} {
			if e := r[role]; e != nil {
				return e
			}
		}
		return nil
	}
	kinds := 0
	if r[RoleLoraA] != nil || r[RoleLoraB] != nil {
		kinds++
		m.Kind = KindLinear
	}
	if r[RoleEmbeddingA] != nil || r[RoleEmbeddingB] != nil {
		kinds++
		m.Kind = KindEmbedding
	}
	if r[RoleAdaLoraA] != nil || r[RoleAdaLoraB] != nil || r[RoleAdaLoraE] != nil {
		kinds++
		m.Kind = KindAdaLoRA
	}
	if r[RoleIA3] != nil {
		kinds++
		m.Kind = KindIA3
	}
	if kinds == 0 {
		e := first()
		return m, fmt.Errorf("tensor %q: %s without lora_A/lora_B: %w", e.key.Name, e.key.Role, ErrMissingTensor)
	}
	if kinds > 1 {
		return m, fmt.Errorf("tensor %q: module %q mixes adapter kinds: %w", first().key.Name, path, ErrBadKey)
	}
	var ea, eb *entry
	switch m.Kind {
	case KindLinear:
		ea, eb = r[RoleLoraA], r[RoleLoraB]
	case KindEmbedding:
		ea, eb = r[RoleEmbeddingA], r[RoleEmbeddingB]
	case KindAdaLoRA:
		ea, eb = r[RoleAdaLoraA], r[RoleAdaLoraB]
	case KindIA3:
		e := r[RoleIA3]
		m.IA3 = e.key.Name
		if len(r) > 1 {
			return m, fmt.Errorf("tensor %q: IA3 module with LoRA tensors: %w", e.key.Name, ErrBadKey)
		}
		if len(e.shape) != 2 || e.shape[0] < 1 || e.shape[1] < 1 || (e.shape[0] != 1 && e.shape[1] != 1) {
			return m, shapeErr(e, "IA3 vector must be (out, 1) or (1, in)")
		}
		if e.shape[1] == 1 {
			m.Out = e.shape[0]
		} else {
			m.In, m.Feedforward = e.shape[1], true
		}
		return m, nil
	}
	if ea == nil || eb == nil {
		e := first()
		missing := "lora_B"
		if ea == nil {
			missing = "lora_A"
		}
		return m, fmt.Errorf("tensor %q: module %q has no %s: %w", e.key.Name, path, missing, ErrMissingTensor)
	}
	if ea.key.Transposed != eb.key.Transposed {
		return m, fmt.Errorf("tensor %q: mixes MLX and PEFT layouts with %q: %w", ea.key.Name, eb.key.Name, ErrBadKey)
	}
	m.A, m.B, m.Transposed = ea.key.Name, eb.key.Name, ea.key.Transposed
	if len(eb.shape) == 3 && eb.shape[2] == 1 && m.Kind == KindLinear {
		return m, fmt.Errorf("tensor %q: shape %v: fused qkv lora_B of an old MergedLinear adapter: %w", eb.key.Name, eb.shape, ErrMergedLinear)
	}
	if len(ea.shape) == 4 || len(eb.shape) == 4 {
		return m, shapeErr(ea, "Conv2d LoRA is not supported")
	}
	if len(ea.shape) != 2 {
		return m, shapeErr(ea, "want 2 dimensions")
	}
	if len(eb.shape) != 2 {
		return m, shapeErr(eb, "want 2 dimensions")
	}
	var rank, bRank int64
	if m.Transposed {
		rank, m.In, bRank, m.Out = ea.shape[1], ea.shape[0], eb.shape[0], eb.shape[1]
	} else {
		rank, m.In, m.Out, bRank = ea.shape[0], ea.shape[1], eb.shape[0], eb.shape[1]
	}
	if rank < 1 || m.In < 1 || m.Out < 1 {
		return m, shapeErr(ea, "zero rank or feature dimension (B has %v)", eb.shape)
	}
	if rank > 1<<30 {
		return m, shapeErr(ea, "rank %d too large", rank)
	}
	if bRank != rank {
		return m, shapeErr(eb, "rank %d, but %s has rank %d", bRank, ea.key.Name, rank)
	}
	m.Rank = int(rank)
	if e := r[RoleLoraBBias]; e != nil {
		if len(e.shape) != 1 || e.shape[0] != m.Out {
			return m, shapeErr(e, "lora_B bias must be (%d,)", m.Out)
		}
		m.BBias = e.key.Name
	}
	if e := r[RoleMagnitude]; e != nil {
		if m.Kind == KindAdaLoRA {
			return m, fmt.Errorf("tensor %q: DoRA magnitude on an AdaLoRA module: %w", e.key.Name, ErrBadKey)
		}
		if len(e.shape) != 1 || e.shape[0] != m.Out {
			return m, shapeErr(e, "DoRA magnitude must be (%d,) like lora_B's out dimension", m.Out)
		}
		m.Magnitude = e.key.Name
	}
	if m.Kind == KindAdaLoRA {
		e := r[RoleAdaLoraE]
		if e == nil {
			return m, fmt.Errorf("tensor %q: AdaLoRA module %q has no lora_E: %w", ea.key.Name, path, ErrMissingTensor)
		}
		if len(e.shape) != 2 || e.shape[0] != rank || e.shape[1] != 1 {
			return m, shapeErr(e, "lora_E must be (%d, 1)", rank)
		}
		m.E = e.key.Name
	}
	return m, nil
}

// resolve applies the config to the modules and collects config warnings.
func (a *Adapter) resolve(cfg *Config) error {
	mt, err := NewMatcher(cfg)
	if err != nil {
		return err
	}
	warn := func(code, tensor, format string, args ...any) {
		a.Warnings = append(a.Warnings, Warning{code, tensor, fmt.Sprintf(format, args...)})
	}
	for i := range a.Modules {
		m := &a.Modules[i]
		if m.Kind == KindIA3 {
			continue
		}
		m.ConfigRank = mt.Rank(m.Path)
		m.Alpha = mt.Alpha(m.Path)
		m.Scaling = Scaling(m.Alpha, m.Rank, cfg.UseRSLoRA)
		if m.ConfigRank != m.Rank {
			warn(WarnRankMismatch, m.A, "rank %d from the shape, but the config gives %d (r/rank_pattern); using the shape", m.Rank, m.ConfigRank)
		}
		if cfg.TargetModules.Kind != SelectNull && !mt.Target(m.Path, m.Kind != KindEmbedding) {
			warn(WarnNotTargeted, m.A, "module %q has adapter tensors but target_modules does not select it", m.Path)
		}
		if m.DoRA() && !cfg.UseDoRA {
			warn(WarnDoRAMismatch, m.Magnitude, "DoRA magnitude present but use_dora is false (PEFT ignores it and applies plain LoRA)")
		}
		if !m.DoRA() && cfg.UseDoRA && m.Kind != KindAdaLoRA {
			warn(WarnDoRAMismatch, m.A, "use_dora is true but the module has no lora_magnitude_vector")
		}
	}
	for _, o := range a.Others {
		switch o.Key.Role {
		case RoleBias:
			if cfg.Bias == BiasNone && !mt.saved(o.Key.Module) {
				warn(WarnBiasMode, o.Key.Name, "bias tensor in the file but the config has bias=\"none\"")
			}
		case RoleFull:
			last := o.Key.Module[strings.LastIndexByte(o.Key.Module, '.')+1:]
			if !mt.saved(o.Key.Module) && last != "embed_tokens" && last != "lm_head" {
				warn(WarnExtraTensor, o.Key.Name, "full tensor not listed in modules_to_save")
			}
		}
	}
	return nil
}

// saved reports whether a module matches a modules_to_save entry.
func (m *Matcher) saved(module string) bool {
	for _, re := range m.savedRes {
		if re.MatchString(module) {
			return true
		}
	}
	return false
}

// naturalLess orders dotted names segment by segment, all-digit segments
// numerically ("layers.2" < "layers.10").
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		var sa, sb string
		sa, a, _ = strings.Cut(a, ".")
		sb, b, _ = strings.Cut(b, ".")
		if sa == sb {
			continue
		}
		if allDigits(sa) && allDigits(sb) {
			ta, tb := strings.TrimLeft(sa, "0"), strings.TrimLeft(sb, "0")
			if len(ta) != len(tb) {
				return len(ta) < len(tb)
			}
			if ta != tb {
				return ta < tb
			}
			return sa < sb
		}
		return sa < sb
	}
	return a == "" && b != ""
}

// Count returns PEFT's trainable-parameter count of a module type per
// module: r·(in+out), plus out for DoRA and for lora_bias (spec §9).
func Count(rank int, in, out int64, dora, loraBias bool) int64 {
	n := int64(rank) * (in + out)
	if dora {
		n += out
	}
	if loraBias {
		n += out
	}
	return n
}
