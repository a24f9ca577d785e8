package arch

import (
	"fmt"
	"math"
	"strings"
)

// Basics is what a config.json states in the keys most decoders share, read
// without the registry: all that can be said of an architecture it does not
// know (lora-inspect shows it; the generic tools work by tensor names).
// Absent, null or malformed keys leave a field 0 (RopeTheta too, Tied nil).
// A multimodal wrapper's text_config, when it has one, gives the sizes.
type Basics struct {
	ModelType                                                                  string
	Architectures                                                              []string
	Hidden, Intermediate, Layers, Heads, KVHeads, HeadDim, Vocab, MaxPositions int
	RopeTheta                                                                  float64
	Tied                                                                       *bool
}

// ReadBasics reads the common keys of a config.json; only a file that is not
// a JSON object is an error (wrapping ErrConfig).
func ReadBasics(b []byte) (*Basics, error) {
	if len(b) > MaxConfigSize {
		return nil, fmt.Errorf("%w: config.json is %d bytes (limit %d)", ErrConfig, len(b), MaxConfigSize)
	}
	top, err := parseObject("config.json", b)
	if err != nil {
		return nil, err
	}
	s := &Basics{}
	s.ModelType, _ = top.str("model_type", "")
	s.Architectures, _ = top.strs("architectures", 16)
	o := top
	if tc, err := top.sub("text_config"); err == nil && tc != nil {
		o = tc
	}
	for _, f := range []struct {
		key string
		dst *int
		max int
	}{
		{"hidden_size", &s.Hidden, maxHidden}, {"intermediate_size", &s.Intermediate, maxIntermediate},
		{"num_hidden_layers", &s.Layers, maxLayers}, {"num_attention_heads", &s.Heads, maxHeads},
		{"num_key_value_heads", &s.KVHeads, maxHeads}, {"head_dim", &s.HeadDim, maxHeadDim},
		{"vocab_size", &s.Vocab, maxVocab}, {"max_position_embeddings", &s.MaxPositions, maxPositions},
	} {
		*f.dst, _ = o.integer(f.key, 0, 0, f.max)
	}
	s.RopeTheta, _ = o.float("rope_theta", 0, 0, math.MaxFloat64)
	if s.RopeTheta == 0 {
		if rp, err := o.sub("rope_parameters"); err == nil && rp != nil {
			s.RopeTheta, _ = rp.float("rope_theta", 0, 0, math.MaxFloat64)
		}
	}
	for _, src := range []*object{o, top} {
		if t, err := src.boolean("tie_word_embeddings", false); err == nil && src.present("tie_word_embeddings") && s.Tied == nil {
			s.Tied = &t
		}
	}
	return s, nil
}

// Specifics lists, in words for reports, what the config computes beyond
// the Llama decoder (pre-norm layers, w·x RMSNorm, SiLU-gated MLP, global
// attention, rotary over every head dimension); empty for a plain Llama.
// The rope itself is described by Rope.String.
func (c *Config) Specifics() []string {
	f := c.Features
	var out []string
	add := func(cond bool, format string, a ...any) {
		if cond {
			out = append(out, fmt.Sprintf(format, a...))
		}
	}
	var bias []string
	for _, b := range []struct {
		on   bool
		name string
	}{{f.QKVBias, "q/k/v"}, {f.OBias, "o"}, {f.MLPBias, "mlp"}} {
		if b.on {
			bias = append(bias, b.name)
		}
	}
	add(len(bias) > 0, "%s bias", strings.Join(bias, ", "))
	add(f.FusedQKV, "fused qkv_proj")
	add(f.FusedGateUp, "fused gate_up_proj")
	add(f.QKNorm, "q/k norms")
	add(f.Norm != NormLlama, "%s norms", f.Norm)
	add(f.Act != ActSiLU, "%s MLP", f.Act)
	add(f.EmbedScale, "embeddings × √hidden")
	add(f.SandwichNorms, "sandwich norms")
	add(f.QueryPreAttnScalar != 0, "attention scale query_pre_attn_scalar^-0.5 = 1/√%g", f.QueryPreAttnScalar)
	add(f.AttnSoftcap != 0, "attention soft-cap %g", f.AttnSoftcap)
	add(f.FinalSoftcap != 0, "final logit soft-cap %g", f.FinalSoftcap)
	if n := c.SlidingLayers(); n > 0 {
		out = append(out, fmt.Sprintf("sliding window %d on %d of %d layers", c.firstWindow(), n, c.Layers))
	}
	for _, r := range c.Ropes() {
		add(r.Dims != c.HeadDim, "rotary on %d of %d head dims", r.Dims, c.HeadDim)
	}
	return out
}

// moduleOrder is every module name the registry knows, in decoder order.
var moduleOrder = []string{"embed_tokens", "q_proj", "k_proj", "v_proj", "qkv_proj", "o_proj", "q_norm", "k_norm",
	"gate_proj", "up_proj", "gate_up_proj", "down_proj", "lm_head"}

// ModuleOrder ranks a module name for listings in decoder order (q_proj
// before o_proj before gate_proj ...), whatever the architecture; names the
// registry does not know rank after all others.
func ModuleOrder(module string) int {
	for i, m := range moduleOrder {
		if m == module {
			return i
		}
	}
	return len(moduleOrder)
}
