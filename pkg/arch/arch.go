package arch

import (
	"fmt"
	"github.com/lorakit/lorakit/pkg/errclass"
	"sort"
	"strings"
)

// Sentinel errors; test with errors.Is. Messages name the config field or
// tensor at fault; callers add the file name.
var (
	// ErrConfig reports a config.json value that is malformed or out of range.
	ErrConfig = errclass.New(errclass.Invalid, "arch: invalid config")
	// ErrUnsupported reports a model_type, or a config option that changes the
	// math, that lorakit does not implement.
	ErrUnsupported = errclass.New(errclass.Invalid, "arch: unsupported")
	// ErrTarget reports a LoRA target that is not a module of the architecture.
	ErrTarget = errclass.New(errclass.Invalid, "arch: unknown LoRA target")
	// ErrTensor reports a tensor name or shape that is not part of the
	// architecture's checkpoint layout.
	ErrTensor = errclass.New(errclass.Invalid, "arch: unexpected tensor")
	// ErrGGUF reports a model or adapter that llama.cpp cannot be made to
	// compute as transformers does.
	ErrGGUF = errclass.New(errclass.Invalid, "arch: not representable in GGUF")
)

// Arch is one supported architecture: a transformers model_type and what
// every tool needs to know about it. The entries live one per file
// (llama.go, qwen2.go, ...); the rest of the package is shared.
type Arch struct {
	// ModelType is config.json's model_type, e.g. "qwen2".
	ModelType string
	// Name is the human name of the family, e.g. "Qwen2 / Qwen2.5".
	Name string
	// Classes are the transformers classes of config.json "architectures"
	// whose layout this is.
	Classes []string
	// GGUFArch is llama.cpp's general.architecture for it, e.g. "qwen2".
	GGUFArch string
	// Summary says in a few words what sets the architecture apart; the
	// supported-architectures table prints it.
	Summary string

	// parse fills the architecture-specific part of c from the config
	// object (the sizes common to all are read before).
	parse func(o *object, c *Config) error
	// defaults are the config class's defaults for the common fields.
	defaults defaults
	// gguf adds the architecture's llama.cpp rules to a GGUF plan.
	gguf func(c *Config, g *GGUF)
}

// defaults are a transformers config class's default values for the fields
// every decoder has. KVHeads < 0 means "num_attention_heads"; HeadDim 0 means
// hidden_size / num_attention_heads.
type defaults struct {
	Vocab, Hidden, Intermediate, Layers, Heads, KVHeads, HeadDim int
	MaxPositions                                                 int
	NormEps                                                      float64
	Tied                                                         bool
	Theta                                                        float64
	Act                                                          string // hidden_act
}

var registry = map[string]*Arch{}

// register adds an architecture; each architecture file calls it from init.
func register(a *Arch) {
	if _, dup := registry[a.ModelType]; dup {
		panic("arch: " + a.ModelType + " registered twice")
	}
	registry[a.ModelType] = a
}

// order is the order in which tables list the architectures.
var order = []string{"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3"}

// All returns the supported architectures in a fixed order.
func All() []*Arch {
	out := make([]*Arch, 0, len(registry))
	for _, t := range order {
		if a, ok := registry[t]; ok {
			out = append(out, a)
		}
	}
	rest := []string{}
	for t := range registry {
		if !contains(order, t) {
			rest = append(rest, t)
		}
	}
	sort.Strings(rest)
	for _, t := range rest {
		out = append(out, registry[t])
	}
	return out
}

// Lookup returns the architecture of a model_type, or Unsupported(modelType).
// "gemma3" (Gemma3ForConditionalGeneration) resolves to its text model,
// gemma3_text.
func Lookup(modelType string) (*Arch, error) {
	if modelType == multimodalGemma3 {
		modelType = "gemma3_text"
	}
	if a, ok := registry[modelType]; ok {
		return a, nil
	}
	return nil, Unsupported(modelType)
}

// Supported lists the model_type values ParseConfig accepts, in table order.
func Supported() []string {
	var out []string
	for _, a := range All() {
		out = append(out, a.ModelType)
		if a.ModelType == "gemma3_text" {
			out = append(out, multimodalGemma3)
		}
	}
	return out
}

// SupportedList is Supported joined for a message: "llama, mistral, ...".
func SupportedList() string { return strings.Join(Supported(), ", ") }

// Unsupported is the one refusal every tool gives for an architecture it
// cannot run: `model_type "X" is not supported (supported: llama, ...)`,
// wrapping ErrUnsupported. Tools prefix it with their name.
func Unsupported(modelType string) error {
	if modelType == "" {
		return fmt.Errorf("%w: config.json has no model_type (supported: %s)", ErrUnsupported, SupportedList())
	}
	return fmt.Errorf("%w: model_type %q is not supported (supported: %s)", ErrUnsupported, modelType, SupportedList())
}

// Table renders the supported architectures as an aligned text table for
// the README and --help: model_type, transformers classes, llama.cpp
// architecture and what sets each apart.
func Table() string {
	rows := [][]string{{"model_type", "family", "GGUF", "specifics"}}
	for _, a := range All() {
		mt := a.ModelType
		if mt == "gemma3_text" {
			mt = "gemma3_text, gemma3"
		}
		rows = append(rows, []string{mt, a.Name, a.GGUFArch, a.Summary})
	}
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", width[i]-len([]rune(c))+2))
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// TargetTable lists, one architecture a line, the LoRA targets each accepts
// (for --help): "llama        q_proj, k_proj, ..., all-linear".
func TargetTable() string {
	var b strings.Builder
	width := 0
	for _, a := range All() {
		width = max(width, len(a.ModelType))
	}
	for _, a := range All() {
		fmt.Fprintf(&b, "%-*s  %s\n", width, a.ModelType, strings.Join(a.Targets(), ", "))
	}
	return b.String()
}

// Targets lists the LoRA target names the architecture accepts, as
// Config.Targets gives them for its default config (for --help).
func (a *Arch) Targets() []string {
	c, err := ParseConfig([]byte(`{"model_type":"` + a.ModelType + `"}`))
	if err != nil {
		return nil
	}
	return c.Targets()
}

// checkClasses refuses task heads other than causal LM and notes an
// unfamiliar class name, whose layout is then assumed to be the family's.
func (c *Config) checkClasses() error {
	known := false
	for _, cls := range c.Architectures {
		for _, head := range []string{"ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering"} {
			if strings.HasSuffix(cls, head) {
				return fmt.Errorf("%w: architectures %q: only causal language models are supported (%s)", ErrUnsupported, cls, strings.Join(c.Arch.Classes, ", "))
			}
		}
		known = known || contains(c.Arch.Classes, cls)
	}
	if !known && len(c.Architectures) > 0 {
		c.note("architectures %v is none of %s; the checkpoint is read as %s's layout", c.Architectures, strings.Join(c.Arch.Classes, ", "), c.Arch.Classes[0])
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
