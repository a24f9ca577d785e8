package peft

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/lorakit/lorakit/internal/pyjson"
)

// PEFT method names (peft_type).
const (
	TypeLoRA         = "LORA"
	TypeAdaLoRA      = "ADALORA"
	TypeIA3          = "IA3"
	TypePrefixTuning = "PREFIX_TUNING"
	TypePromptTuning = "PROMPT_TUNING"
	TypePTuning      = "P_TUNING"
)

// Values of the bias field.
const (
	BiasNone     = "none"
	BiasAll      = "all"
	BiasLoraOnly = "lora_only"
)

// TaskCausalLM is the task_type lorakit writes.
const TaskCausalLM = "CAUSAL_LM"

// taskTypes are the task_type values PEFT accepts (besides null).
var taskTypes = map[string]bool{
	"SEQ_CLS": true, "SEQ_2_SEQ_LM": true, "CAUSAL_LM": true, "TOKEN_CLS": true,
	"QUESTION_ANS": true, "FEATURE_EXTRACTION": true,
}

// SelectorKind tells which JSON form a Selector has.
type SelectorKind uint8

// Selector forms.
const (
	SelectNull   SelectorKind = iota // JSON null
	SelectString                     // one string (a regex, or "all-linear")
	SelectList                       // a list of strings
)

// Selector is a config value that is null, one string or a list of strings:
// target_modules, exclude_modules, layers_pattern, feedforward_modules.
type Selector struct {
	Kind   SelectorKind
	String string   // SelectString
	List   []string // SelectList
}

// Names returns a list Selector.
func Names(names ...string) Selector {
	return Selector{Kind: SelectList, List: append([]string{}, names...)}
}

// Pattern returns a string Selector (a regex for re.fullmatch, or "all-linear").
func Pattern(s string) Selector { return Selector{Kind: SelectString, String: s} }

// IsAllLinear reports whether s is PEFT's "all-linear" shorthand (any case).
func (s Selector) IsAllLinear() bool {
	return s.Kind == SelectString && strings.ToLower(s.String) == "all-linear"
}

// truthy is Python's bool() of the value.
func (s Selector) truthy() bool {
	switch s.Kind {
	case SelectString:
		return s.String != ""
	case SelectList:
		return len(s.List) > 0
	}
	return false
}

func (s Selector) json() pyjson.Value {
	switch s.Kind {
	case SelectString:
		return pyjson.String(s.String)
	case SelectList:
		if s.List == nil {
			return pyjson.Array()
		}
		return jstrList(s.List)
	}
	return pyjson.Null
}

// Init is the init_lora_weights value: InitTrue / InitFalse for the JSON
// booleans, otherwise the string as written ("gaussian", "pissa_niter_4", ...).
type Init string

// init_lora_weights values.
const (
	InitTrue       Init = "true" // JSON true: kaiming-uniform A, zero B (the default)
	InitFalse      Init = "false"
	InitGaussian   Init = "gaussian"
	InitOrthogonal Init = "orthogonal"
	InitEVA        Init = "eva"
	InitPiSSA      Init = "pissa"
	InitOLoRA      Init = "olora"
	InitCorDA      Init = "corda"
	InitLoftQ      Init = "loftq"
	InitLoraGA     Init = "lora_ga"
	InitMiCA       Init = "mica"
)

func (i Init) json() pyjson.Value {
	switch i {
	case InitTrue:
		return pyjson.Bool(true)
	case InitFalse:
		return pyjson.Bool(false)
	}
	return pyjson.String(string(i))
}

// MutatesBase reports whether the init subtracts s·B·A (or a quantization
// residual) from the base weights, so that the adapter only fits the
// mutated base (spec §7.8).
func (i Init) MutatesBase() bool {
	l := strings.ToLower(string(i))
	switch {
	case strings.HasPrefix(l, "pissa"):
		return true
	case l == "olora", l == "corda", l == "loftq", l == "lora_ga":
		return true
	}
	return false
}

// RankEntry is one rank_pattern entry.
type RankEntry struct {
	Pattern string
	Rank    int
}

// AlphaEntry is one alpha_pattern entry.
type AlphaEntry struct {
	Pattern string
	Alpha   float64
	float   bool // written as a float literal (16.0) in the source
}

// Field is a config key this package does not model, with its raw value:
// compact JSON in source order (Python's NaN/Infinity literals included).
type Field struct {
	Key   string
	Value json.RawMessage
}

// Config is an adapter_config.json. For LORA (and ADALORA) every field of
// PEFT 0.21's LoraConfig is typed; keys this package does not know are kept
// in Extra in source order and written back by Marshal. Nullable strings use
// "" for null. Fields typed as json.RawMessage are carried verbatim (nil is
// null).
//
// For peft types other than LORA and ADALORA only the PeftConfig fields and
// the type's own typed fields (IA3: target/exclude/feedforward modules,
// fan_in_fan_out, modules_to_save; prompt learning: num_virtual_tokens,
// token_dim, ...) are decoded; Marshal writes back exactly the keys that
// were present, plus Extra.
type Config struct {
	// PeftConfigMixin / PeftConfig.
	PeftType            string
	TaskType            string // "" = null
	BaseModelNameOrPath string // "" = null
	Revision            string // "" = null
	InferenceMode       bool
	AutoMapping         json.RawMessage
	PeftVersion         string // "" = absent (never written empty)

	// LoraConfig.
	R                     int
	LoraAlpha             float64
	TargetModules         Selector
	ExcludeModules        Selector
	LoraDropout           float64
	FanInFanOut           bool
	Bias                  string
	UseRSLoRA             bool
	ModulesToSave         []string // nil = null
	InitLoraWeights       Init
	LayersToTransform     []int // nil = null
	LayersPattern         Selector
	RankPattern           []RankEntry  // in JSON order (first match wins)
	AlphaPattern          []AlphaEntry // in JSON order (first match wins)
	MegatronConfig        json.RawMessage
	MegatronCore          string // "" = null
	LoftQConfig           json.RawMessage
	UseDoRA               bool
	LayerReplication      json.RawMessage
	LoraBias              bool
	EvaConfig             json.RawMessage
	CordaConfig           json.RawMessage
	TrainableTokenIndices json.RawMessage
	TargetParameters      []string // nil = null
	UseQALoRA             bool
	QALoRAGroupSize       int
	AloraInvocationTokens json.RawMessage
	VeloraConfig          json.RawMessage
	MonteCLoRAConfig      json.RawMessage
	UseBDLoRA             json.RawMessage
	ArrowConfig           json.RawMessage
	KasaConfig            json.RawMessage
	LoraGAConfig          json.RawMessage
	EnsureWeightTying     bool

	// IA3Config.
	FeedforwardModules Selector

	// Prompt learning (PREFIX_TUNING, PROMPT_TUNING, P_TUNING).
	NumVirtualTokens         int
	TokenDim                 int
	NumTransformerSubmodules int
	NumAttentionHeads        int
	NumLayers                int

	// Extra holds unknown keys in source order.
	Extra []Field

	alphaFloat   bool            // lora_alpha was written as a float literal
	dropoutInt   bool            // lora_dropout was written as an int literal
	layersScalar bool            // layers_to_transform was a single int
	present      map[string]bool // typed keys seen by Parse
}

// PeftConfig keys (all peft types).
var commonKeys = []string{
	"peft_type", "task_type", "base_model_name_or_path", "revision",
	"inference_mode", "auto_mapping", "peft_version",
}

// loraKeys is the key set PEFT 0.21 writes for a LoraConfig.
var loraKeys = append(append([]string{}, commonKeys...),
	"r", "lora_alpha", "target_modules", "exclude_modules", "lora_dropout",
	"fan_in_fan_out", "bias", "use_rslora", "modules_to_save", "init_lora_weights",
	"layers_to_transform", "layers_pattern", "rank_pattern", "alpha_pattern",
	"megatron_config", "megatron_core", "loftq_config", "use_dora",
	"layer_replication", "lora_bias", "eva_config", "corda_config",
	"trainable_token_indices", "target_parameters", "use_qalora",
	"qalora_group_size", "alora_invocation_tokens", "velora_config",
	"monteclora_config", "use_bdlora", "arrow_config", "kasa_config",
	"lora_ga_config", "ensure_weight_tying",
)

// compatKeys is the §2.3 key set, always written by MarshalCompat.
var compatKeys = []string{
	"alpha_pattern", "base_model_name_or_path", "bias", "fan_in_fan_out",
	"inference_mode", "init_lora_weights", "layers_pattern",
	"layers_to_transform", "lora_alpha", "lora_dropout", "modules_to_save",
	"peft_type", "r", "rank_pattern", "revision", "target_modules", "task_type",
}

// typedKeys returns the keys decoded into typed fields for a peft type.
func typedKeys(peftType string) map[string]bool {
	m := map[string]bool{}
	add := func(ks ...string) {
		for _, k := range ks {
			m[k] = true
		}
	}
	switch peftType {
	case TypeLoRA:
		add(loraKeys...)
	case TypeAdaLoRA:
		add(loraKeys...)
		delete(m, "rank_pattern") // AdaLoRA: {name: [bool, ...]}
	case TypeIA3:
		add(commonKeys...)
		add("target_modules", "exclude_modules", "feedforward_modules", "fan_in_fan_out", "modules_to_save")
	case TypePrefixTuning, TypePromptTuning, TypePTuning:
		add(commonKeys...)
		add("num_virtual_tokens", "token_dim", "num_transformer_submodules",
			"num_attention_heads", "num_layers", "modules_to_save")
	default:
		add(commonKeys...)
	}
	return m
}

// defaultLora returns PEFT's LoraConfig defaults.
func defaultLora() Config {
	return Config{
		PeftType:        TypeLoRA,
		R:               8,
		LoraAlpha:       8,
		Bias:            BiasNone,
		InitLoraWeights: InitTrue,
		RankPattern:     []RankEntry{},
		AlphaPattern:    []AlphaEntry{},
		MegatronCore:    "megatron.core",
		LoftQConfig:     json.RawMessage("{}"),
		QALoRAGroupSize: 16,
	}
}

// NewLoraConfig returns a LoRA config as lora-train writes it: PEFT's
// defaults with the given rank, alpha and targets, task_type CAUSAL_LM and
// inference_mode true. Callers set further fields before marshalling.
func NewLoraConfig(r int, alpha float64, targets Selector) *Config {
	c := defaultLora()
	c.R = r
	c.LoraAlpha = alpha
	c.TargetModules = targets
	c.TaskType = TaskCausalLM
	c.InferenceMode = true
	return &c
}

// Parse decodes adapter_config.json. It checks JSON types of the typed
// fields and fills PEFT's defaults for absent LoRA keys; the refuse rules
// are in Validate.
func Parse(data []byte) (*Config, error) {
	root, err := pyjson.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrInvalidConfig)
	}
	if root.Kind != pyjson.KindObject {
		return nil, fmt.Errorf("top-level value is not an object: %w", ErrInvalidConfig)
	}
	var peftType string
	found := false
	for _, m := range root.Obj {
		if m.Key == "peft_type" {
			if m.Value.Kind != pyjson.KindString {
				return nil, fmt.Errorf("key %q: want a string: %w", "peft_type", ErrInvalidConfig)
			}
			peftType, found = m.Value.Str, true
		}
	}
	if !found {
		return nil, fmt.Errorf("key %q: missing: %w", "peft_type", ErrInvalidConfig)
	}
	var c Config
	if peftType == TypeLoRA || peftType == TypeAdaLoRA {
		c = defaultLora()
	}
	c.PeftType = peftType
	c.present = map[string]bool{}
	typed := typedKeys(peftType)
	for _, m := range root.Obj {
		if !typed[m.Key] {
			c.Extra = append(c.Extra, Field{Key: m.Key, Value: rawOf(m.Value)})
			continue
		}
		if err := c.decodeField(m.Key, m.Value); err != nil {
			return nil, fmt.Errorf("key %q: %v: %w", m.Key, err, ErrInvalidConfig)
		}
		c.present[m.Key] = true
	}
	return &c, nil
}

func (c *Config) decodeField(key string, v pyjson.Value) error {
	var err error
	switch key {
	case "peft_type":
		c.PeftType, err = asString(v, false)
	case "task_type":
		c.TaskType, err = asString(v, true)
	case "base_model_name_or_path":
		c.BaseModelNameOrPath, err = asString(v, true)
	case "revision":
		c.Revision, err = asString(v, true)
	case "inference_mode":
		c.InferenceMode, err = asBool(v)
	case "auto_mapping":
		c.AutoMapping = rawOf(v)
	case "peft_version":
		c.PeftVersion, err = asString(v, true)
	case "r":
		c.R, err = asInt(v)
	case "lora_alpha":
		c.LoraAlpha, c.alphaFloat, err = asFloat(v)
	case "target_modules":
		c.TargetModules, err = asSelector(v)
	case "exclude_modules":
		c.ExcludeModules, err = asSelector(v)
	case "lora_dropout":
		var isFloat bool
		c.LoraDropout, isFloat, err = asFloat(v)
		c.dropoutInt = !isFloat
	case "fan_in_fan_out":
		c.FanInFanOut, err = asBool(v)
	case "bias":
		c.Bias, err = asString(v, false)
	case "use_rslora":
		c.UseRSLoRA, err = asBool(v)
	case "modules_to_save":
		c.ModulesToSave, err = asStringList(v)
	case "init_lora_weights":
		switch v.Kind {
		case pyjson.KindBool:
			c.InitLoraWeights = InitFalse
			if v.Bool {
				c.InitLoraWeights = InitTrue
			}
		case pyjson.KindString:
			c.InitLoraWeights = Init(v.Str)
		default:
			err = errors.New("want a bool or a string")
		}
	case "layers_to_transform":
		c.LayersToTransform, c.layersScalar, err = asIntOrList(v)
	case "layers_pattern":
		c.LayersPattern, err = asSelector(v)
	case "rank_pattern":
		c.RankPattern, err = asRankPattern(v)
	case "alpha_pattern":
		c.AlphaPattern, err = asAlphaPattern(v)
	case "megatron_config":
		c.MegatronConfig = rawOf(v)
	case "megatron_core":
		c.MegatronCore, err = asString(v, true)
	case "loftq_config":
		c.LoftQConfig = rawOf(v)
	case "use_dora":
		c.UseDoRA, err = asBool(v)
	case "layer_replication":
		c.LayerReplication = rawOf(v)
	case "lora_bias":
		c.LoraBias, err = asBool(v)
	case "eva_config":
		c.EvaConfig = rawOf(v)
	case "corda_config":
		c.CordaConfig = rawOf(v)
	case "trainable_token_indices":
		c.TrainableTokenIndices = rawOf(v)
	case "target_parameters":
		c.TargetParameters, err = asStringList(v)
	case "use_qalora":
		c.UseQALoRA, err = asBool(v)
	case "qalora_group_size":
		c.QALoRAGroupSize, err = asInt(v)
	case "alora_invocation_tokens":
		c.AloraInvocationTokens = rawOf(v)
	case "velora_config":
		c.VeloraConfig = rawOf(v)
	case "monteclora_config":
		c.MonteCLoRAConfig = rawOf(v)
	case "use_bdlora":
		c.UseBDLoRA = rawOf(v)
	case "arrow_config":
		c.ArrowConfig = rawOf(v)
	case "kasa_config":
		c.KasaConfig = rawOf(v)
	case "lora_ga_config":
		c.LoraGAConfig = rawOf(v)
	case "ensure_weight_tying":
		c.EnsureWeightTying, err = asBool(v)
	case "feedforward_modules":
		c.FeedforwardModules, err = asSelector(v)
	case "num_virtual_tokens":
		c.NumVirtualTokens, err = asIntOrNull(v)
	case "token_dim":
		c.TokenDim, err = asIntOrNull(v)
	case "num_transformer_submodules":
		c.NumTransformerSubmodules, err = asIntOrNull(v)
	case "num_attention_heads":
		c.NumAttentionHeads, err = asIntOrNull(v)
	case "num_layers":
		c.NumLayers, err = asIntOrNull(v)
	default:
		err = errors.New("no decoder") // unreachable: typedKeys and this switch agree
	}
	return err
}

func asString(v pyjson.Value, nullable bool) (string, error) {
	if v.Kind == pyjson.KindString {
		return v.Str, nil
	}
	if nullable && v.Kind == pyjson.KindNull {
		return "", nil
	}
	if nullable {
		return "", errors.New("want a string or null")
	}
	return "", errors.New("want a string")
}

func asBool(v pyjson.Value) (bool, error) {
	if v.Kind != pyjson.KindBool {
		return false, errors.New("want true or false")
	}
	return v.Bool, nil
}

func asInt(v pyjson.Value) (int, error) {
	if v.Kind != pyjson.KindNumber || !pyjson.IsIntLiteral(v.Str) {
		return 0, errors.New("want an integer")
	}
	n, err := strconv.ParseInt(v.Str, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("integer %s out of range", v.Str)
	}
	return int(n), nil
}

func asIntOrNull(v pyjson.Value) (int, error) {
	if v.Kind == pyjson.KindNull {
		return 0, nil
	}
	return asInt(v)
}

// asFloat accepts an int or float literal; isFloat reports a float literal.
func asFloat(v pyjson.Value) (f float64, isFloat bool, err error) {
	if v.Kind != pyjson.KindNumber {
		return 0, false, errors.New("want a number")
	}
	f, err = strconv.ParseFloat(v.Str, 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, false, fmt.Errorf("number %s out of range", v.Str)
	}
	return f, !pyjson.IsIntLiteral(v.Str), nil
}

func asSelector(v pyjson.Value) (Selector, error) {
	switch v.Kind {
	case pyjson.KindNull:
		return Selector{}, nil
	case pyjson.KindString:
		return Pattern(v.Str), nil
	case pyjson.KindArray:
		l, err := asStringList(v)
		return Selector{Kind: SelectList, List: l}, err
	}
	return Selector{}, errors.New("want null, a string or a list of strings")
}

func asStringList(v pyjson.Value) ([]string, error) {
	if v.Kind == pyjson.KindNull {
		return nil, nil
	}
	if v.Kind != pyjson.KindArray {
		return nil, errors.New("want a list of strings or null")
	}
	l := make([]string, 0, len(v.Arr))
	for i, e := range v.Arr {
		if e.Kind != pyjson.KindString {
			return nil, fmt.Errorf("element %d: want a string", i)
		}
		l = append(l, e.Str)
	}
	return l, nil
}

func asIntOrList(v pyjson.Value) (l []int, scalar bool, err error) {
	switch v.Kind {
	case pyjson.KindNull:
		return nil, false, nil
	case pyjson.KindNumber:
		n, err := asInt(v)
		return []int{n}, true, err
	case pyjson.KindArray:
		l = make([]int, 0, len(v.Arr))
		for i, e := range v.Arr {
			n, err := asInt(e)
			if err != nil {
				return nil, false, fmt.Errorf("element %d: %v", i, err)
			}
			l = append(l, n)
		}
		return l, false, nil
	}
	return nil, false, errors.New("want an integer, a list of integers or null")
}

func asRankPattern(v pyjson.Value) ([]RankEntry, error) {
	if v.Kind == pyjson.KindNull {
		return []RankEntry{}, nil
	}
	if v.Kind != pyjson.KindObject {
		return nil, errors.New("want an object {pattern: int}")
	}
	l := make([]RankEntry, 0, len(v.Obj))
	for _, m := range v.Obj {
		n, err := asInt(m.Value)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %v", m.Key, err)
		}
		l = append(l, RankEntry{Pattern: m.Key, Rank: n})
	}
	return l, nil
}

func asAlphaPattern(v pyjson.Value) ([]AlphaEntry, error) {
	if v.Kind == pyjson.KindNull {
		return []AlphaEntry{}, nil
	}
	if v.Kind != pyjson.KindObject {
		return nil, errors.New("want an object {pattern: number}")
	}
	l := make([]AlphaEntry, 0, len(v.Obj))
	for _, m := range v.Obj {
		f, isFloat, err := asFloat(m.Value)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %v", m.Key, err)
		}
		l = append(l, AlphaEntry{Pattern: m.Key, Alpha: f, float: isFloat})
	}
	return l, nil
}

// numberJSON writes an int-valued number as an int unless asFloat is set.
func numberJSON(f float64, asFloat bool) pyjson.Value {
	if !asFloat && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return pyjson.Int(int64(f))
	}
	return pyjson.Float(f)
}

// encodeField returns the JSON value of a typed key.
func (c *Config) encodeField(key string) (pyjson.Value, error) {
	switch key {
	case "peft_type":
		return pyjson.String(c.PeftType), nil
	case "task_type":
		return jstrOrNull(c.TaskType), nil
	case "base_model_name_or_path":
		return jstrOrNull(c.BaseModelNameOrPath), nil
	case "revision":
		return jstrOrNull(c.Revision), nil
	case "inference_mode":
		return pyjson.Bool(c.InferenceMode), nil
	case "auto_mapping":
		return fromRaw(c.AutoMapping)
	case "peft_version":
		return jstrOrNull(c.PeftVersion), nil
	case "r":
		return pyjson.Int(int64(c.R)), nil
	case "lora_alpha":
		return numberJSON(c.LoraAlpha, c.alphaFloat), nil
	case "target_modules":
		return c.TargetModules.json(), nil
	case "exclude_modules":
		return c.ExcludeModules.json(), nil
	case "lora_dropout":
		return numberJSON(c.LoraDropout, !c.dropoutInt), nil
	case "fan_in_fan_out":
		return pyjson.Bool(c.FanInFanOut), nil
	case "bias":
		return pyjson.String(c.Bias), nil
	case "use_rslora":
		return pyjson.Bool(c.UseRSLoRA), nil
	case "modules_to_save":
		return jstrList(c.ModulesToSave), nil
	case "init_lora_weights":
		return c.InitLoraWeights.json(), nil
	case "layers_to_transform":
		if c.LayersToTransform == nil {
			return pyjson.Null, nil
		}
		if c.layersScalar && len(c.LayersToTransform) == 1 {
			return pyjson.Int(int64(c.LayersToTransform[0])), nil
		}
		v := pyjson.Array()
		for _, n := range c.LayersToTransform {
			v.Arr = append(v.Arr, pyjson.Int(int64(n)))
		}
		return v, nil
	case "layers_pattern":
		return c.LayersPattern.json(), nil
	case "rank_pattern":
		v := pyjson.Object()
		for _, e := range c.RankPattern {
			v.Obj = append(v.Obj, pyjson.Member{Key: e.Pattern, Value: pyjson.Int(int64(e.Rank))})
		}
		return v, nil
	case "alpha_pattern":
		v := pyjson.Object()
		for _, e := range c.AlphaPattern {
			v.Obj = append(v.Obj, pyjson.Member{Key: e.Pattern, Value: numberJSON(e.Alpha, e.float)})
		}
		return v, nil
	case "megatron_config":
		return fromRaw(c.MegatronConfig)
	case "megatron_core":
		return jstrOrNull(c.MegatronCore), nil
	case "loftq_config":
		return fromRaw(c.LoftQConfig)
	case "use_dora":
		return pyjson.Bool(c.UseDoRA), nil
	case "layer_replication":
		return fromRaw(c.LayerReplication)
	case "lora_bias":
		return pyjson.Bool(c.LoraBias), nil
	case "eva_config":
		return fromRaw(c.EvaConfig)
	case "corda_config":
		return fromRaw(c.CordaConfig)
	case "trainable_token_indices":
		return fromRaw(c.TrainableTokenIndices)
	case "target_parameters":
		return jstrList(c.TargetParameters), nil
	case "use_qalora":
		return pyjson.Bool(c.UseQALoRA), nil
	case "qalora_group_size":
		return pyjson.Int(int64(c.QALoRAGroupSize)), nil
	case "alora_invocation_tokens":
		return fromRaw(c.AloraInvocationTokens)
	case "velora_config":
		return fromRaw(c.VeloraConfig)
	case "monteclora_config":
		return fromRaw(c.MonteCLoRAConfig)
	case "use_bdlora":
		return fromRaw(c.UseBDLoRA)
	case "arrow_config":
		return fromRaw(c.ArrowConfig)
	case "kasa_config":
		return fromRaw(c.KasaConfig)
	case "lora_ga_config":
		return fromRaw(c.LoraGAConfig)
	case "ensure_weight_tying":
		return pyjson.Bool(c.EnsureWeightTying), nil
	case "feedforward_modules":
		return c.FeedforwardModules.json(), nil
	case "num_virtual_tokens":
		return pyjson.Int(int64(c.NumVirtualTokens)), nil
	case "token_dim":
		return pyjson.Int(int64(c.TokenDim)), nil
	case "num_transformer_submodules":
		return pyjson.Int(int64(c.NumTransformerSubmodules)), nil
	case "num_attention_heads":
		return pyjson.Int(int64(c.NumAttentionHeads)), nil
	case "num_layers":
		return pyjson.Int(int64(c.NumLayers)), nil
	}
	return pyjson.Value{}, fmt.Errorf("key %q: not a typed field: %w", key, ErrInvalidConfig)
}

// Marshal writes the config as PEFT 0.21 does (json.dumps indent=2,
// sort_keys, ASCII, no trailing newline). For LORA it writes PEFT 0.21's
// full key set (peft_version only when set) plus Extra; for other types the
// keys that Parse saw plus Extra. Parsing a PEFT-written file and
// marshalling it reproduces the file byte for byte.
func Marshal(c *Config) ([]byte, error) {
	var keys []string
	if c.PeftType == TypeLoRA {
		for _, k := range loraKeys {
			if k == "peft_version" && c.PeftVersion == "" {
				continue
			}
			keys = append(keys, k)
		}
	} else {
		keys = append(keys, "peft_type")
		for k := range c.present {
			if k != "peft_type" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys[1:])
	}
	return c.marshalKeys(keys, true, false)
}

// MarshalCompat writes a LoRA config with the compatible key set of spec
// §2.3: the fixed keys every loader since PEFT 0.6 accepts, plus a newer key
// only when its feature is used (use_rslora, use_dora, lora_bias,
// exclude_modules, layer_replication, the variant fields, ...). peft_version
// and Extra are never written; target_modules and exclude_modules lists are
// written sorted and de-duplicated (PEFT holds them as sets).
func MarshalCompat(c *Config) ([]byte, error) {
	if c.PeftType != TypeLoRA {
		return nil, fmt.Errorf("key %q: %q: compatible output is for LORA configs: %w", "peft_type", c.PeftType, ErrUnsupportedType)
	}
	keys := append([]string{}, compatKeys...)
	opt := func(k string, set bool) {
		if set {
			keys = append(keys, k)
		}
	}
	opt("use_rslora", c.UseRSLoRA)
	opt("use_dora", c.UseDoRA)
	opt("lora_bias", c.LoraBias)
	opt("exclude_modules", c.ExcludeModules.Kind != SelectNull)
	opt("auto_mapping", rawTruthy(c.AutoMapping))
	opt("layer_replication", rawTruthy(c.LayerReplication))
	opt("megatron_config", rawTruthy(c.MegatronConfig))
	opt("megatron_core", rawTruthy(c.MegatronConfig))
	opt("loftq_config", rawTruthy(c.LoftQConfig))
	opt("eva_config", rawTruthy(c.EvaConfig))
	opt("corda_config", rawTruthy(c.CordaConfig))
	opt("trainable_token_indices", rawTruthy(c.TrainableTokenIndices))
	opt("target_parameters", c.TargetParameters != nil)
	opt("use_qalora", c.UseQALoRA)
	opt("qalora_group_size", c.UseQALoRA)
	opt("alora_invocation_tokens", rawTruthy(c.AloraInvocationTokens))
	opt("velora_config", rawTruthy(c.VeloraConfig))
	opt("monteclora_config", rawTruthy(c.MonteCLoRAConfig))
	opt("use_bdlora", rawTruthy(c.UseBDLoRA))
	opt("arrow_config", rawTruthy(c.ArrowConfig))
	opt("kasa_config", rawTruthy(c.KasaConfig))
	opt("lora_ga_config", rawTruthy(c.LoraGAConfig))
	opt("ensure_weight_tying", c.EnsureWeightTying)
	return c.marshalKeys(keys, false, true)
}

func sortedSet(l []string) []string {
	out := append([]string{}, l...)
	sort.Strings(out)
	w := 0
	for i, s := range out {
		if i == 0 || s != out[w-1] {
			out[w] = s
			w++
		}
	}
	return out[:w]
}

func (c *Config) marshalKeys(keys []string, withExtra, sortSets bool) ([]byte, error) {
	obj := pyjson.Object()
	seen := map[string]bool{}
	for _, k := range keys {
		v, err := c.encodeField(k)
		if err != nil {
			return nil, fmt.Errorf("key %q: %v: %w", k, err, ErrInvalidConfig)
		}
		if sortSets && v.Kind == pyjson.KindArray {
			switch k {
			case "target_modules":
				v = jstrList(sortedSet(c.TargetModules.List))
			case "exclude_modules":
				v = jstrList(sortedSet(c.ExcludeModules.List))
			}
		}
		seen[k] = true
		obj.Obj = append(obj.Obj, pyjson.Member{Key: k, Value: v})
	}
	if withExtra {
		for _, f := range c.Extra {
			if seen[f.Key] {
				return nil, fmt.Errorf("key %q: appears twice (typed field and Extra): %w", f.Key, ErrInvalidConfig)
			}
			seen[f.Key] = true
			v, err := fromRaw(f.Value)
			if err != nil {
				return nil, fmt.Errorf("key %q: %v: %w", f.Key, err, ErrInvalidConfig)
			}
			obj.Obj = append(obj.Obj, pyjson.Member{Key: f.Key, Value: v})
		}
	}
	return configDumps.Marshal(obj), nil
}

// ExtraValue returns the raw value of an unknown key kept in Extra.
func (c *Config) ExtraValue(key string) (json.RawMessage, bool) {
	for _, f := range c.Extra {
		if f.Key == key {
			return f.Value, true
		}
	}
	return nil, false
}

// ValidateOptions relaxes Validate's refuse rules.
type ValidateOptions struct {
	// AllowMutatedBase accepts pissa/olora/corda/loftq/lora_ga adapters: the
	// user states the base is the mutated one (spec §7.8).
	AllowMutatedBase bool
	// AllowIA3 accepts peft_type IA3 (spec §7.4).
	AllowIA3 bool
	// AllowPromptLearning accepts PROMPT_TUNING and PREFIX_TUNING (without
	// prefix_projection): adapters a model applies at run time.
	AllowPromptLearning bool
}

// PromptLearningReason is why a prompt-learning adapter cannot be merged
// into weights (or exported as a GGUF adapter); "" for other types.
func PromptLearningReason(peftType string) string {
	switch peftType {
	case TypePromptTuning:
		return "prompt-tuning adapters add tokens at run time; they cannot be merged into weights"
	case TypePrefixTuning:
		return "prefix-tuning adapters add keys and values to every layer's attention at run time; they cannot be merged into weights"
	case TypePTuning:
		return "p-tuning adapters add tokens from a prompt encoder at run time; they cannot be merged into weights"
	}
	return ""
}

// Validate applies spec §2.4's refuse rules and the checks PEFT itself
// makes when it loads a LoraConfig. It returns nil or all problems joined
// (errors.Is works on each), every one naming its key.
func (c *Config) Validate() error { return c.ValidateWith(ValidateOptions{}) }

// ValidateWith is Validate with options.
func (c *Config) ValidateWith(o ValidateOptions) error {
	var errs []error
	bad := func(key string, sentinel error, format string, args ...any) {
		errs = append(errs, fmt.Errorf("key %q: %s: %w", key, fmt.Sprintf(format, args...), sentinel))
	}
	switch c.PeftType {
	case TypeLoRA:
	case TypeIA3:
		if !o.AllowIA3 {
			bad("peft_type", ErrUnsupportedType, "%q", c.PeftType)
			return errors.Join(errs...)
		}
		if _, err := NewMatcher(c); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	case TypePromptTuning, TypePrefixTuning:
		if !o.AllowPromptLearning {
			bad("peft_type", ErrUnsupportedType, "%q: %s", c.PeftType, PromptLearningReason(c.PeftType))
			return errors.Join(errs...)
		}
		if c.NumVirtualTokens <= 0 {
			bad("num_virtual_tokens", ErrInvalidConfig, "%d (must be positive)", c.NumVirtualTokens)
		}
		if c.NumTransformerSubmodules > 1 {
			bad("num_transformer_submodules", ErrUnsupportedType, "%d (an encoder-decoder adapter; causal LM adapters have 1)", c.NumTransformerSubmodules)
		}
		if v, ok := c.ExtraValue("prefix_projection"); ok && rawTruthy(v) {
			bad("prefix_projection", ErrUnsupportedType, "true (the prefix comes from a trained MLP re-parametrization, which is not supported)")
		}
		return errors.Join(errs...)
	default:
		if r := PromptLearningReason(c.PeftType); r != "" {
			bad("peft_type", ErrUnsupportedType, "%q: %s", c.PeftType, r)
		} else {
			bad("peft_type", ErrUnsupportedType, "%q (LORA and IA3 are supported)", c.PeftType)
		}
		return errors.Join(errs...)
	}

	if v, ok := c.ExtraValue("enable_lora"); ok && rawTruthy(v) {
		bad("enable_lora", ErrMergedLinear, "fused MergedLinear adapter from PEFT <= 0.2")
	}
	// Variant fields (a LoraVariant class changes forward and merge).
	if c.UseQALoRA {
		bad("use_qalora", ErrUnsupportedVariant, "QA-LoRA")
	}
	for _, f := range []struct {
		key string
		raw json.RawMessage
	}{
		{"alora_invocation_tokens", c.AloraInvocationTokens},
		{"velora_config", c.VeloraConfig},
		{"monteclora_config", c.MonteCLoRAConfig},
		{"use_bdlora", c.UseBDLoRA},
		{"arrow_config", c.ArrowConfig},
		{"kasa_config", c.KasaConfig},
	} {
		if rawTruthy(f.raw) {
			bad(f.key, ErrUnsupportedVariant, "set")
		}
	}
	initLower := Init(strings.ToLower(string(c.InitLoraWeights)))
	switch {
	case initLower == InitMiCA:
		bad("init_lora_weights", ErrUnsupportedVariant, "%q", c.InitLoraWeights)
	case c.InitLoraWeights.MutatesBase():
		if !o.AllowMutatedBase {
			bad("init_lora_weights", ErrMutatedBase, "%q adapters only fit the base mutated at init; convert it to plain LoRA or state the base is the mutated one", c.InitLoraWeights)
		}
	case c.InitLoraWeights == InitTrue, c.InitLoraWeights == InitFalse,
		initLower == InitGaussian, initLower == InitOrthogonal, initLower == InitEVA:
	default:
		bad("init_lora_weights", ErrInvalidConfig, "unknown initialization %q", c.InitLoraWeights)
	}
	if len(c.TargetParameters) > 0 {
		bad("target_parameters", ErrUnsupportedFeature, "MoE parameter LoRA")
	}
	if rawTruthy(c.LayerReplication) {
		bad("layer_replication", ErrUnsupportedFeature, "layer replication cannot be merged")
	}

	// Values PEFT rejects.
	if c.R <= 0 {
		bad("r", ErrInvalidConfig, "rank %d must be positive", c.R)
	}
	if math.IsNaN(c.LoraAlpha) || math.IsInf(c.LoraAlpha, 0) {
		bad("lora_alpha", ErrInvalidConfig, "%v is not finite", c.LoraAlpha)
	}
	if !(c.LoraDropout >= 0 && c.LoraDropout <= 1) {
		bad("lora_dropout", ErrInvalidConfig, "%v is not in [0, 1]", c.LoraDropout)
	}
	switch c.Bias {
	case BiasNone, BiasAll, BiasLoraOnly:
	default:
		bad("bias", ErrInvalidConfig, "%q is not none, all or lora_only", c.Bias)
	}
	if c.TaskType != "" && !taskTypes[c.TaskType] {
		bad("task_type", ErrInvalidConfig, "unknown task type %q", c.TaskType)
	}
	if c.LoraBias {
		if c.InitLoraWeights != InitTrue && c.InitLoraWeights != InitFalse {
			bad("lora_bias", ErrInvalidConfig, "requires init_lora_weights true or false, not %q", c.InitLoraWeights)
		}
		if c.UseDoRA {
			bad("lora_bias", ErrInvalidConfig, "not supported with use_dora")
		}
	}
	if c.UseDoRA && rawTruthy(c.MegatronConfig) {
		bad("use_dora", ErrInvalidConfig, "DoRA does not support Megatron")
	}
	if c.TargetModules.Kind == SelectString {
		if c.LayersToTransform != nil {
			bad("layers_to_transform", ErrInvalidConfig, "cannot be used when target_modules is a string")
		}
		if c.LayersPattern.Kind != SelectNull {
			bad("layers_pattern", ErrInvalidConfig, "cannot be used when target_modules is a string")
		}
	}
	layersSet := len(c.LayersToTransform) > 0 && !(c.layersScalar && c.LayersToTransform[0] == 0)
	if c.LayersPattern.truthy() && !layersSet {
		bad("layers_pattern", ErrInvalidConfig, "requires layers_to_transform")
	}
	for _, e := range c.RankPattern {
		if e.Rank <= 0 {
			bad("rank_pattern", ErrInvalidConfig, "pattern %q: rank %d must be positive", e.Pattern, e.Rank)
		}
	}
	for _, e := range c.AlphaPattern {
		if math.IsNaN(e.Alpha) || math.IsInf(e.Alpha, 0) {
			bad("alpha_pattern", ErrInvalidConfig, "pattern %q: %v is not finite", e.Pattern, e.Alpha)
		}
	}
	if _, err := NewMatcher(c); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
