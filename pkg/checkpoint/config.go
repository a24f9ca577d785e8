// Package checkpoint opens Hugging Face model checkpoints and PEFT adapters
// wherever they live — a folder (config.json, one safetensors file or shards
// with an index, tokenizer files), a single .safetensors file, or a stream
// ('-') — and reads the Llama-family config.json in both the transformers v4
// and v5 layouts. Single files and streams are self-describing: the files a
// later stage needs travel in the safetensors __metadata__ (see MetadataKey).
package checkpoint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"

	"github.com/lorakit/lorakit/pkg/errclass"
)

// Sentinel errors.
var (
	// ErrConfig reports a missing or invalid config.json field.
	ErrConfig = errclass.New(errclass.Invalid, "checkpoint: invalid config")
	// ErrUnsupported reports an architecture or layout lorakit does not handle.
	ErrUnsupported = errclass.New(errclass.Invalid, "checkpoint: unsupported")
	// ErrNotFound reports a path holding no checkpoint or adapter.
	ErrNotFound = errclass.New(errclass.Invalid, "checkpoint: no checkpoint found")
)

// RopeScaling is the rope scaling block (transformers v4 rope_scaling, or
// the scaling part of v5 rope_parameters).
type RopeScaling struct {
	Type                          string  `json:"rope_type"`
	Factor                        float64 `json:"factor"`
	LowFreqFactor                 float64 `json:"low_freq_factor"`
	HighFreqFactor                float64 `json:"high_freq_factor"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings"`
}

// Config is the part of a Llama-family config.json that lorakit uses. Raw
// keeps the file as it was, so that writers can carry it on unchanged.
type Config struct {
	Architectures          []string
	ModelType              string
	HiddenSize             int
	IntermediateSize       int
	NumLayers              int
	NumHeads               int
	NumKVHeads             int
	HeadDim                int
	VocabSize              int
	MaxPositionEmbeddings  int
	RMSNormEps             float64
	RopeTheta              float64
	RopeScaling            *RopeScaling // nil: no scaling ("default")
	TieWordEmbeddings      bool
	AttentionBias          bool
	MLPBias                bool
	DType                  string // torch_dtype (v4) or dtype (v5)
	BOSTokenID, EOSTokenID []int
	// Quantization is the raw quantization_config block, if any.
	Quantization json.RawMessage
	Raw          []byte
}

// supported lists the model types whose layout is the Llama decoder.
var supported = map[string]bool{"llama": true, "mistral": true, "qwen2": true}

type rawConfig struct {
	Architectures         []string        `json:"architectures"`
	ModelType             string          `json:"model_type"`
	HiddenSize            int             `json:"hidden_size"`
	IntermediateSize      int             `json:"intermediate_size"`
	NumLayers             int             `json:"num_hidden_layers"`
	NumHeads              int             `json:"num_attention_heads"`
	NumKVHeads            *int            `json:"num_key_value_heads"`
	HeadDim               *int            `json:"head_dim"`
	VocabSize             int             `json:"vocab_size"`
	MaxPositionEmbeddings int             `json:"max_position_embeddings"`
	RMSNormEps            *float64        `json:"rms_norm_eps"`
	RopeTheta             *float64        `json:"rope_theta"`
	RopeScaling           json.RawMessage `json:"rope_scaling"`
	RopeParameters        json.RawMessage `json:"rope_parameters"`
	TieWordEmbeddings     *bool           `json:"tie_word_embeddings"`
	AttentionBias         bool            `json:"attention_bias"`
	MLPBias               bool            `json:"mlp_bias"`
	TorchDType            string          `json:"torch_dtype"`
	DType                 string          `json:"dtype"`
	BOS                   json.RawMessage `json:"bos_token_id"`
	EOS                   json.RawMessage `json:"eos_token_id"`
	Quantization          json.RawMessage `json:"quantization_config"`
	TextConfig            json.RawMessage `json:"text_config"`
}

// MaxConfigSize bounds config.json.
const MaxConfigSize = 4 << 20

// ParseConfig parses a config.json. Unknown architectures are an error
// wrapping ErrUnsupported; missing sizes an error wrapping ErrConfig.
func ParseConfig(b []byte) (*Config, error) {
	if len(b) > MaxConfigSize {
		return nil, fmt.Errorf("%w: config.json is %d bytes (limit %d)", ErrConfig, len(b), MaxConfigSize)
	}
	var r rawConfig
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if !supported[r.ModelType] {
		if r.ModelType == "" {
			return nil, fmt.Errorf("%w: config.json has no model_type", ErrConfig)
		}
		return nil, fmt.Errorf("%w: model_type %q (supported: llama, mistral, qwen2)", ErrUnsupported, r.ModelType)
	}
	c := &Config{
		Architectures: r.Architectures, ModelType: r.ModelType,
		HiddenSize: r.HiddenSize, IntermediateSize: r.IntermediateSize, NumLayers: r.NumLayers,
		NumHeads: r.NumHeads, VocabSize: r.VocabSize, MaxPositionEmbeddings: r.MaxPositionEmbeddings,
		AttentionBias: r.AttentionBias || r.ModelType == "qwen2", MLPBias: r.MLPBias,
		DType: r.TorchDType, Quantization: r.Quantization, Raw: bytes.Clone(b),
		RMSNormEps: 1e-6, RopeTheta: 10000,
	}
	if r.DType != "" {
		c.DType = r.DType
	}
	for name, v := range map[string]int{"hidden_size": c.HiddenSize, "intermediate_size": c.IntermediateSize,
		"num_hidden_layers": c.NumLayers, "num_attention_heads": c.NumHeads, "vocab_size": c.VocabSize} {
		if v <= 0 || v > 1<<24 {
			return nil, fmt.Errorf("%w: %s = %d", ErrConfig, name, v)
		}
	}
	c.NumKVHeads = c.NumHeads
	if r.NumKVHeads != nil {
		c.NumKVHeads = *r.NumKVHeads
	}
	if c.NumKVHeads <= 0 || c.NumHeads%c.NumKVHeads != 0 {
		return nil, fmt.Errorf("%w: num_key_value_heads = %d does not divide num_attention_heads = %d", ErrConfig, c.NumKVHeads, c.NumHeads)
	}
	c.HeadDim = c.HiddenSize / c.NumHeads
	if r.HeadDim != nil && *r.HeadDim > 0 {
		c.HeadDim = *r.HeadDim
	}
	if c.HeadDim <= 0 || c.HeadDim%2 != 0 {
		return nil, fmt.Errorf("%w: head_dim = %d must be even and positive", ErrConfig, c.HeadDim)
	}
	if r.RMSNormEps != nil {
		c.RMSNormEps = *r.RMSNormEps
	}
	if r.TieWordEmbeddings != nil {
		c.TieWordEmbeddings = *r.TieWordEmbeddings
	}
	if r.RopeTheta != nil {
		c.RopeTheta = *r.RopeTheta
	}
	// v4: rope_theta + rope_scaling; v5: rope_parameters holds both.
	for _, block := range []json.RawMessage{r.RopeScaling, r.RopeParameters} {
		if len(block) == 0 || string(block) == "null" {
			continue
		}
		var p struct {
			RopeScaling
			LegacyType string   `json:"type"`
			Theta      *float64 `json:"rope_theta"`
		}
		if err := json.Unmarshal(block, &p); err != nil {
			return nil, fmt.Errorf("%w: rope scaling: %v", ErrConfig, err)
		}
		if p.Theta != nil {
			c.RopeTheta = *p.Theta
		}
		if p.Type == "" {
			p.Type = p.LegacyType
		}
		switch p.Type {
		case "", "default":
		case "llama3":
			s := p.RopeScaling
			if s.Factor <= 0 || s.LowFreqFactor <= 0 || s.HighFreqFactor <= s.LowFreqFactor || s.OriginalMaxPositionEmbeddings <= 0 {
				return nil, fmt.Errorf("%w: llama3 rope scaling needs factor, low_freq_factor < high_freq_factor and original_max_position_embeddings", ErrConfig)
			}
			c.RopeScaling = &s
		default:
			return nil, fmt.Errorf("%w: rope scaling type %q (supported: default, llama3)", ErrUnsupported, p.Type)
		}
	}
	if c.RopeTheta <= 0 || math.IsInf(c.RopeTheta, 0) {
		return nil, fmt.Errorf("%w: rope_theta = %v", ErrConfig, c.RopeTheta)
	}
	c.BOSTokenID = tokenIDs(r.BOS)
	c.EOSTokenID = tokenIDs(r.EOS)
	return c, nil
}

// tokenIDs reads a token id field that may be null, an int or a list.
func tokenIDs(raw json.RawMessage) []int {
	var one int
	if json.Unmarshal(raw, &one) == nil && len(raw) > 0 && string(raw) != "null" {
		return []int{one}
	}
	var many []int
	json.Unmarshal(raw, &many)
	return many
}

// Projection is one linear projection type of a decoder layer: its name,
// its input and output features, and how many the model has (one per layer).
type Projection struct {
	Type    string // "q_proj", ..., "down_proj"
	In, Out int64
	Count   int
}

// Projections returns the seven linear projections of a decoder layer
// (q, k, v, o, gate, up, down) with their feature sizes.
func (c *Config) Projections() []Projection {
	h, i := int64(c.HiddenSize), int64(c.IntermediateSize)
	q, kv := int64(c.NumHeads*c.HeadDim), int64(c.NumKVHeads*c.HeadDim)
	L := c.NumLayers
	return []Projection{
		{"q_proj", h, q, L}, {"k_proj", h, kv, L}, {"v_proj", h, kv, L}, {"o_proj", q, h, L},
		{"gate_proj", h, i, L}, {"up_proj", h, i, L}, {"down_proj", i, h, L},
	}
}

// ParamCounts is a model's parameter count by part.
type ParamCounts struct {
	Embeddings, Attention, MLP, Norms, LMHead, Other int64
}

// Total is the sum of all parts.
func (p ParamCounts) Total() int64 {
	return p.Embeddings + p.Attention + p.MLP + p.Norms + p.LMHead + p.Other
}

// Params computes the parameter count the config implies (biases included
// when the config has them; a tied lm_head counts once, as torch does).
func (c *Config) Params() ParamCounts {
	var p ParamCounts
	h := int64(c.HiddenSize)
	p.Embeddings = int64(c.VocabSize) * h
	if !c.TieWordEmbeddings {
		p.LMHead = int64(c.VocabSize) * h
	}
	for _, l := range c.Projections() {
		n := l.In * l.Out
		attn := l.Type == "q_proj" || l.Type == "k_proj" || l.Type == "v_proj" || l.Type == "o_proj"
		if attn && c.AttentionBias && l.Type != "o_proj" {
			n += l.Out
		}
		if !attn && c.MLPBias {
			n += l.Out
		}
		if attn {
			p.Attention += n * int64(c.NumLayers)
		} else {
			p.MLP += n * int64(c.NumLayers)
		}
	}
	p.Norms = h*2*int64(c.NumLayers) + h
	return p
}
