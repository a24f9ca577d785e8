package arch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/lorakit/lorakit/pkg/dtype"
)

// MaxConfigSize bounds config.json.
const MaxConfigSize = 4 << 20

// Bounds on the sizes a config may declare; they keep every product the
// package computes far from overflow and every allocation small.
const (
	maxHidden       = 1 << 20
	maxIntermediate = 1 << 22
	maxLayers       = 1 << 12
	maxHeads        = 1 << 12
	maxHeadDim      = 1 << 12
	maxVocab        = 1 << 24
	maxPositions    = 1 << 26
)

// Config is a decoder's config.json as one common description: the sizes,
// the Features the forward pass needs, and the attention of every layer.
// It is what transformers builds from the file, class defaults included,
// for the transformers v4 (rope_theta + rope_scaling) and v5
// (rope_parameters) layouts alike.
type Config struct {
	// Arch is the registry entry of the architecture.
	Arch *Arch
	// ModelType is config.json's model_type ("gemma3" for the multimodal
	// wrapper, whose text model is described here).
	ModelType string
	// Architectures is config.json's "architectures" (transformers classes).
	Architectures []string
	// Multimodal is set when the file describes a multimodal model whose
	// language model this Config describes (Gemma3ForConditionalGeneration,
	// text under text_config); nil otherwise.
	Multimodal *Multimodal

	Hidden       int // hidden_size
	Intermediate int // intermediate_size
	Layers       int // num_hidden_layers
	Heads        int // num_attention_heads
	KVHeads      int // num_key_value_heads
	HeadDim      int // head_dim (explicit, the class default, or hidden/heads)
	Vocab        int // vocab_size
	MaxPositions int // max_position_embeddings

	Features

	// Attention describes each layer's attention: global or sliding window,
	// and its rotary embedding. Layers of one kind share one *Rope.
	Attention []LayerAttention

	// DType is torch_dtype (v4) or dtype (v5) when it names a float type
	// (bfloat16, float16, float32), "" otherwise; DTypeName is the raw value.
	DType     dtype.DType
	DTypeName string
	// BOS and EOS are bos_token_id and eos_token_id (an int or a list).
	BOS, EOS []int

	// Notes record interpretations of the file a user may want to know about
	// (a field transformers versions read differently, defaults taken).
	Notes []string

	// Quantization is the raw quantization_config block, if any.
	Quantization json.RawMessage
	// Raw is the file as it was, for writers that carry it on.
	Raw []byte
}

// LayerAttention is one layer's attention.
type LayerAttention struct {
	// Sliding: query i attends to keys i−Window+1 … i only (transformers'
	// sliding_window_overlay: kv_idx > q_idx − window), on top of causality
	// and packing boundaries. Otherwise the layer attends to every earlier key.
	Sliding bool
	// Window is the sliding window in tokens (0 for global layers).
	Window int
	// Rope is the layer's rotary embedding.
	Rope *Rope
}

// Multimodal describes the wrapper around a language model.
type Multimodal struct {
	// Class is the wrapper's transformers class.
	Class string
}

const multimodalGemma3 = "gemma3"

// ParseConfig parses a config.json. A model_type outside the registry gives
// Unsupported (wrapping ErrUnsupported); a malformed value an error wrapping
// ErrConfig; an option lorakit does not compute an error wrapping
// ErrUnsupported that names the field.
func ParseConfig(b []byte) (*Config, error) {
	if len(b) > MaxConfigSize {
		return nil, fmt.Errorf("%w: config.json is %d bytes (limit %d)", ErrConfig, len(b), MaxConfigSize)
	}
	top, err := parseObject("config.json", b)
	if err != nil {
		return nil, err
	}
	mt, err := top.str("model_type", "")
	if err != nil {
		return nil, err
	}
	a, err := Lookup(mt)
	if err != nil {
		return nil, err
	}
	c := &Config{Arch: a, ModelType: mt, Raw: bytes.Clone(b)}
	if c.Architectures, err = top.strs("architectures", 16); err != nil {
		return nil, err
	}
	if q, ok := top.raw("quantization_config"); ok {
		c.Quantization = bytes.Clone(q)
	}
	o := top
	if mt == multimodalGemma3 {
		// Gemma3ForConditionalGeneration: the language model is text_config
		// (a Gemma3TextConfig, defaults and all); its tensors live under
		// language_model (see TextName). Vision tower and projector are not
		// part of this Config.
		class := "Gemma3ForConditionalGeneration"
		if len(c.Architectures) > 0 {
			class = c.Architectures[0]
		}
		c.Multimodal = &Multimodal{Class: class}
		if o, err = top.sub("text_config"); err != nil {
			return nil, err
		}
		if o == nil {
			o = &object{where: "text_config", m: map[string]json.RawMessage{}}
		}
		if tt, err := o.str("model_type", "gemma3_text"); err != nil {
			return nil, err
		} else if tt != "gemma3_text" {
			return nil, fmt.Errorf("%w: text_config.model_type %q (want gemma3_text)", ErrUnsupported, tt)
		}
		c.note("multimodal %s: only the language model (text_config, tensors under language_model) is described; the vision tower and projector are not trained or exported, and PEFT's all-linear would also select their linear layers", class)
	}
	if err := c.checkClasses(); err != nil {
		return nil, err
	}
	if err := c.readCommon(o, top); err != nil {
		return nil, err
	}
	if err := a.parse(o, c); err != nil {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// readCommon reads the fields every decoder has, with the class defaults.
func (c *Config) readCommon(o, top *object) error {
	d := c.Arch.defaults
	var err error
	if c.Hidden, err = o.integer("hidden_size", d.Hidden, 1, maxHidden); err != nil {
		return err
	}
	if c.Intermediate, err = o.integer("intermediate_size", d.Intermediate, 1, maxIntermediate); err != nil {
		return err
	}
	if c.Layers, err = o.integer("num_hidden_layers", d.Layers, 1, maxLayers); err != nil {
		return err
	}
	if c.Heads, err = o.integer("num_attention_heads", d.Heads, 1, maxHeads); err != nil {
		return err
	}
	kv := d.KVHeads
	if kv < 0 || o.isNull("num_key_value_heads") {
		kv = c.Heads
	}
	if c.KVHeads, err = o.integer("num_key_value_heads", kv, 1, maxHeads); err != nil {
		return err
	}
	if c.Heads%c.KVHeads != 0 {
		return o.errorf("num_key_value_heads", "%d does not divide num_attention_heads %d", c.KVHeads, c.Heads)
	}
	hd := d.HeadDim
	if hd == 0 || o.isNull("head_dim") {
		hd = c.Hidden / c.Heads
	}
	if c.HeadDim, err = o.integer("head_dim", hd, 1, maxHeadDim); err != nil {
		return err
	}
	if c.HeadDim < 1 {
		return o.errorf("hidden_size", "%d is smaller than num_attention_heads %d", c.Hidden, c.Heads)
	}
	if c.Vocab, err = o.integer("vocab_size", d.Vocab, 1, maxVocab); err != nil {
		return err
	}
	if c.MaxPositions, err = o.integer("max_position_embeddings", d.MaxPositions, 1, maxPositions); err != nil {
		return err
	}
	if c.NormEps, err = o.float("rms_norm_eps", d.NormEps, 0, 1); err != nil {
		return err
	}
	if !(c.NormEps > 0) {
		return o.errorf("rms_norm_eps", "must be positive")
	}
	if c.TiedEmbeddings, err = o.boolean("tie_word_embeddings", d.Tied); err != nil {
		return err
	}
	if top != o && !o.present("tie_word_embeddings") {
		if c.TiedEmbeddings, err = top.boolean("tie_word_embeddings", c.TiedEmbeddings); err != nil {
			return err
		}
	}
	for _, k := range []string{"dtype", "torch_dtype"} { // v5 name first
		for _, src := range []*object{o, top} {
			if c.DTypeName == "" {
				if c.DTypeName, err = src.str(k, ""); err != nil {
					return err
				}
			}
		}
	}
	if t, err := dtype.ParseName(c.DTypeName); err == nil && t.IsFloat() {
		c.DType = t
	}
	for _, f := range []struct {
		key string
		dst *[]int
	}{{"bos_token_id", &c.BOS}, {"eos_token_id", &c.EOS}} {
		src := o
		if top != o && top.present(f.key) {
			src = top // the wrapper's generation ids (Gemma 3: eos [1, 106])
		}
		if *f.dst, err = src.tokenIDs(f.key); err != nil {
			return err
		}
	}
	if err := noDropout(o, "attention_dropout"); err != nil {
		return err
	}
	if b, err := o.boolean("use_bidirectional_attention", false); err != nil {
		return err
	} else if b {
		return fmt.Errorf("%w: %s is true: bidirectional (embedding-model) attention is not implemented", ErrUnsupported, o.key("use_bidirectional_attention"))
	}
	c.AttnScale = 1 / math.Sqrt(float64(c.HeadDim))
	return nil
}

// activation reads the MLP activation from key (the class's default when
// absent), refusing what is not implemented.
func (c *Config) activation(o *object, key string) error {
	name, err := o.str(key, c.Arch.defaults.Act)
	if err != nil {
		return err
	}
	act, ok := parseActivation(name)
	if !ok {
		return fmt.Errorf("%w: %s %q (supported: silu, gelu_pytorch_tanh, gelu)", ErrUnsupported, o.key(key), name)
	}
	c.Act = act
	return nil
}

// noDropout refuses non-zero dropout probabilities: they change the training
// math and are not implemented.
func noDropout(o *object, keys ...string) error {
	for _, k := range keys {
		p, err := o.float(k, 0, 0, 1)
		if err != nil {
			return err
		}
		if p != 0 {
			return fmt.Errorf("%w: %s = %v: dropout inside the model is not implemented (set it to 0.0; LoRA dropout is separate)", ErrUnsupported, o.key(k), p)
		}
	}
	return nil
}

// uniformAttention gives every layer the same attention.
func (c *Config) uniformAttention(window int, r *Rope) {
	c.Attention = make([]LayerAttention, c.Layers)
	for i := range c.Attention {
		c.Attention[i] = LayerAttention{Sliding: window > 0, Window: window, Rope: r}
	}
}

// attentionBias reads attention_bias: a bias on q, k, v and o.
func (c *Config) attentionBias(o *object) error {
	bias, err := o.boolean("attention_bias", false)
	c.QKVBias, c.OBias = bias, bias
	return err
}

// slidingPattern reads layer_types, or applies the class's default rule.
func slidingPattern(o *object, layers int, def func(l int) bool) ([]bool, error) {
	sliding, err := layerTypes(o, layers)
	if err != nil || sliding != nil {
		return sliding, err
	}
	sliding = make([]bool, layers)
	for l := range sliding {
		sliding[l] = def(l)
	}
	return sliding, nil
}

// layerTypes reads layer_types, transformers' per-layer "full_attention" or
// "sliding_attention"; nil when absent.
func layerTypes(o *object, layers int) ([]bool, error) {
	types, err := o.strs("layer_types", maxLayers)
	if err != nil || types == nil {
		return nil, err
	}
	if len(types) != layers {
		return nil, o.errorf("layer_types", "has %d entries for %d layers", len(types), layers)
	}
	sliding := make([]bool, layers)
	for i, t := range types {
		switch t {
		case "full_attention":
		case "sliding_attention":
			sliding[i] = true
		default:
			return nil, fmt.Errorf("%w: %s[%d] = %q (supported: full_attention, sliding_attention)", ErrUnsupported, o.key("layer_types"), i, t)
		}
	}
	return sliding, nil
}

// singleRope reads the rope of an architecture whose layers share one.
func singleRope(o *object, c *Config, opt ropeOptions) (*Rope, error) {
	block, _, nested, err := ropeBlock(o)
	if err != nil {
		return nil, err
	}
	if nested {
		return nil, fmt.Errorf("%w: %s: per-layer-type rope_parameters are only supported for gemma3_text", ErrUnsupported, block.where)
	}
	opt.headDim, opt.maxPos = c.HeadDim, c.MaxPositions
	theta, err := o.float("rope_theta", c.Arch.defaults.Theta, 0, math.MaxFloat32)
	if err != nil {
		return nil, err
	}
	return parseRope(o, block, opt, theta)
}

// validate checks what every architecture's math relies on.
func (c *Config) validate() error {
	if len(c.Attention) != c.Layers {
		return fmt.Errorf("%w: %d layer attentions for %d layers", ErrConfig, len(c.Attention), c.Layers)
	}
	for i, a := range c.Attention {
		if a.Rope == nil || a.Rope.Dims <= 0 || a.Rope.Dims > c.HeadDim {
			return fmt.Errorf("%w: layer %d: rotary dims out of range", ErrConfig, i)
		}
		if a.Sliding && a.Window < 1 {
			return fmt.Errorf("%w: layer %d: sliding window %d", ErrConfig, i, a.Window)
		}
	}
	if int64(c.Heads)*int64(c.HeadDim) > maxHidden*4 {
		return fmt.Errorf("%w: num_attention_heads·head_dim = %d is too large", ErrConfig, c.Heads*c.HeadDim)
	}
	if !(c.AttnScale > 0) || math.IsInf(c.AttnScale, 0) {
		return fmt.Errorf("%w: attention scale %v", ErrConfig, c.AttnScale)
	}
	return nil
}

func (c *Config) note(format string, a ...any) {
	c.Notes = append(c.Notes, fmt.Sprintf(format, a...))
}

// Layer returns layer l's attention.
func (c *Config) Layer(l int) LayerAttention { return c.Attention[l] }

// RopeInvFreq returns layer l's inverse frequencies for a batch whose largest
// position id is seqLen−1 (see Rope.InvFreq).
func (c *Config) RopeInvFreq(l, seqLen int) []float32 { return c.Attention[l].Rope.InvFreq(seqLen) }

// Ropes returns the distinct rotary embeddings in layer order (one for most
// models; global then local, or local then global, for Gemma 3).
func (c *Config) Ropes() []*Rope {
	var out []*Rope
	for _, a := range c.Attention {
		found := false
		for _, r := range out {
			found = found || r == a.Rope
		}
		if !found {
			out = append(out, a.Rope)
		}
	}
	return out
}

// SlidingLayers counts the layers with a sliding window.
func (c *Config) SlidingLayers() int {
	n := 0
	for _, a := range c.Attention {
		if a.Sliding {
			n++
		}
	}
	return n
}

// TextName maps a checkpoint tensor name to the name it has in the text
// model this Config describes. For a multimodal wrapper it strips the
// language model's prefix, in both of transformers' layouts
// ("language_model.model.layers.0…" before 4.52, "model.language_model.layers.0…"
// after) and reports ok = false for the vision tower and projector; names
// that already are the text model's ("model.layers.0…", as Tensors lists
// them) and other models' names are returned unchanged.
func (c *Config) TextName(name string) (string, bool) {
	if c.Multimodal == nil || strings.HasPrefix(name, "model.layers.") || name == "model.embed_tokens.weight" || name == "model.norm.weight" {
		return name, true
	}
	for _, p := range [][2]string{
		{"language_model.model.", "model."},
		{"model.language_model.", "model."},
		{"language_model.lm_head.", "lm_head."},
		{"lm_head.", "lm_head."},
	} {
		if rest, ok := strings.CutPrefix(name, p[0]); ok {
			return p[1] + rest, true
		}
	}
	return "", false
}

// Describe is a one-paragraph summary for reports: sizes, attention, rope.
func (c *Config) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): hidden %d, intermediate %d, %d layers, %d heads (%d kv) × %d, vocab %d, context %d",
		c.Arch.ModelType, c.Arch.Name, c.Hidden, c.Intermediate, c.Layers, c.Heads, c.KVHeads, c.HeadDim, c.Vocab, c.MaxPositions)
	if n := c.SlidingLayers(); n > 0 {
		fmt.Fprintf(&b, "; %d sliding-window layers (window %d)", n, c.firstWindow())
	}
	for _, r := range c.Ropes() {
		fmt.Fprintf(&b, "; rope %s", r)
	}
	return b.String()
}

func (c *Config) firstWindow() int {
	for _, a := range c.Attention {
		if a.Sliding {
			return a.Window
		}
	}
	return 0
}
