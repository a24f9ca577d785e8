package inspect

import (
	"fmt"
	"sort"
	"strings"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// partOf classifies a model tensor: by the registry's role when the config
// is an architecture it knows (a name outside its layout is "other"), else
// by its name.
func partOf(cfg *arch.Config, name string) string {
	if cfg != nil {
		if n, ok := cfg.TextName(name); ok {
			if t, ok := cfg.Tensor(n); ok {
				return roleParts[t.Role]
			}
		}
		return "other"
	}
	switch {
	case strings.Contains(name, "embed_tokens"):
		return "embeddings"
	case strings.Contains(name, "lm_head"):
		return "lm_head"
	case strings.Contains(name, "norm"):
		return "norms"
	case strings.Contains(name, ".self_attn."):
		return "attention"
	case strings.Contains(name, ".mlp."):
		return "mlp"
	}
	return "other"
}

// roleParts names the breakdown part of each registry role.
var roleParts = map[arch.Role]string{arch.RoleEmbedding: "embeddings", arch.RoleAttention: "attention",
	arch.RoleMLP: "mlp", arch.RoleNorm: "norms", arch.RoleLMHead: "lm_head"}

func (b *Breakdown) add(part string, n int64) {
	switch part {
	case "embeddings":
		b.Embeddings += n
	case "lm_head":
		b.LMHead += n
	case "norms":
		b.Norms += n
	case "attention":
		b.Attention += n
	case "mlp":
		b.MLP += n
	default:
		b.Other += n
	}
}

// summarizeConfig is the report's view of a config the registry describes.
func summarizeConfig(c *arch.Config) *ConfigSummary {
	s := &ConfigSummary{Family: c.Arch.Name, Hidden: c.Hidden, Intermediate: c.Intermediate, Layers: c.Layers,
		Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim, Vocab: c.Vocab, MaxPositions: c.MaxPositions,
		Tied: c.TiedEmbeddings, Specifics: c.Specifics()}
	for i, r := range c.Ropes() {
		if i == 0 {
			s.RopeTheta = r.Theta
			if r.Type != arch.RopeDefault {
				s.RopeScaling = r.Type.String()
			}
		}
		s.Ropes = append(s.Ropes, ropeText(c, r))
	}
	return s
}

// ropeText describes a rope and, when layers differ, which layers use it.
func ropeText(c *arch.Config, r *arch.Rope) string {
	if len(c.Ropes()) == 1 {
		return r.String()
	}
	for _, a := range c.Attention {
		if a.Rope == r {
			kind := "global"
			if a.Sliding {
				kind = "sliding"
			}
			return kind + " layers: " + r.String()
		}
	}
	return r.String()
}

// basicSummary is the report's view of a config the registry does not know.
func basicSummary(b *arch.Basics) *ConfigSummary {
	s := &ConfigSummary{Hidden: b.Hidden, Intermediate: b.Intermediate, Layers: b.Layers, Heads: b.Heads,
		KVHeads: b.KVHeads, HeadDim: b.HeadDim, Vocab: b.Vocab, MaxPositions: b.MaxPositions, RopeTheta: b.RopeTheta}
	if b.Tied != nil {
		s.Tied = *b.Tied
	}
	return s
}

// describeConfig fills a model report from config.json. Any readable file
// gives architecture, model_type and what is known of the shape; a warning
// is added only where a tool refuses the model, and names the tool.
func describeConfig(r *Report, src *checkpoint.Source) *arch.Config {
	raw, has := src.Files["config.json"]
	if !has {
		r.Warnings = append(r.Warnings, "no config.json: lora-gguf and lora-train need one (the architecture is unknown)")
		return nil
	}
	basics, err := arch.ReadBasics(raw)
	if err != nil {
		r.Warnings = append(r.Warnings, fmt.Sprintf("lora-gguf and lora-train cannot read config.json: %v", err))
		return nil
	}
	r.ModelType = basics.ModelType
	if len(basics.Architectures) > 0 {
		r.Architecture = basics.Architectures[0]
	}
	cfg, err := arch.ParseConfig(raw)
	if err != nil {
		r.Config = basicSummary(basics)
		if _, unknown := arch.Lookup(basics.ModelType); unknown == nil || basics.ModelType == "" {
			// A known architecture with a setting lorakit does not compute or
			// a malformed value, or no model_type at all: the tools that
			// need the config refuse it. An architecture outside the
			// registry is no problem for inspect, quantize and merge.
			r.Warnings = append(r.Warnings, fmt.Sprintf("lora-gguf and lora-train cannot use this config.json: %v", err))
		}
		return nil
	}
	r.Config = summarizeConfig(cfg)
	r.Config.GGUF = cfg.Arch.GGUFArch
	if g, err := cfg.GGUF(); err != nil {
		r.Warnings = append(r.Warnings, "lora-gguf cannot export this model: "+refusals(g))
	}
	return cfg
}

// refusals joins a GGUF plan's refused divergences: "field: why; ...".
func refusals(g *arch.GGUF) string {
	var out []string
	for _, d := range g.Divergences {
		if d.Remedy == arch.RemedyRefuse {
			out = append(out, d.Field+": "+d.Action)
		}
	}
	return strings.Join(out, "; ")
}

// Model reports a (possibly 4-bit) HF checkpoint from its headers alone.
func Model(src *checkpoint.Source, withTensors bool) (*Report, error) {
	r := &Report{Schema: Schema, Kind: "model", Path: src.Path, Source: src.Kind.String(), Bytes: src.Bytes,
		Breakdown: &Breakdown{}, DTypes: map[string]int64{}}
	cfg := describeConfig(r, src)
	var quant *quantSummary
	if src.IsQuantized() {
		q, err := quantized(src)
		if err != nil {
			return nil, err
		}
		quant = q
		r.Kind = "quantized-model"
		r.QuantType, r.Blocksize, r.DoubleQuant = q.quantType, q.blocksize, &q.doubleQuant
		r.QuantizedParams = q.params
		if q.params > 0 {
			r.BitsPerParam = float64(q.bytes*8) / float64(q.params)
		}
	}
	for _, t := range src.Tensors {
		n := t.NumElements()
		dt := string(t.DType)
		if quant != nil {
			if q, ok := quant.weights[t.Name]; ok {
				n, dt = q.params, q.quantType
			} else if quant.aux[t.Name] {
				if withTensors {
					r.Tensors = append(r.Tensors, row(t, 0))
				}
				continue // quantization state, not parameters
			}
		}
		r.TotalParams += n
		r.DTypes[dt] += n
		r.Breakdown.add(partOf(cfg, t.Name), n)
		if withTensors {
			r.Tensors = append(r.Tensors, row(t, n))
		}
	}
	return r, nil
}

func row(t safetensors.TensorInfo, params int64) TensorRow {
	return TensorRow{Name: t.Name, DType: string(t.DType), Shape: t.Shape, Bytes: t.NumBytes(), Params: params}
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
