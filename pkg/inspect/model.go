package inspect

import (
	"sort"
	"strings"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// partOf classifies a model tensor by name.
func partOf(name string) string {
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

func summarizeConfig(c *checkpoint.Config) *ConfigSummary {
	s := &ConfigSummary{Hidden: c.HiddenSize, Intermediate: c.IntermediateSize, Layers: c.NumLayers,
		Heads: c.NumHeads, KVHeads: c.NumKVHeads, HeadDim: c.HeadDim, Vocab: c.VocabSize,
		Tied: c.TieWordEmbeddings, RopeTheta: c.RopeTheta}
	if c.RopeScaling != nil {
		s.RopeScaling = c.RopeScaling.Type
	}
	return s
}

// Model reports a (possibly 4-bit) HF checkpoint from its headers alone.
func Model(src *checkpoint.Source, withTensors bool) (*Report, error) {
	r := &Report{Schema: Schema, Kind: "model", Path: src.Path, Source: src.Kind.String(), Bytes: src.Bytes,
		Breakdown: &Breakdown{}, DTypes: map[string]int64{}}
	if cfg, err := src.Config(); err == nil {
		r.Config = summarizeConfig(cfg)
		r.ModelType = cfg.ModelType
		if len(cfg.Architectures) > 0 {
			r.Architecture = cfg.Architectures[0]
		}
	} else if _, has := src.Files["config.json"]; has {
		r.Warnings = append(r.Warnings, err.Error())
	} else {
		r.Warnings = append(r.Warnings, "no config.json (architecture unknown)")
	}
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
		r.Breakdown.add(partOf(t.Name), n)
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
