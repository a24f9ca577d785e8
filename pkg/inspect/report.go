// Package inspect builds lora-inspect's reports: what a file or folder is
// (PEFT adapter, HF model, bitsandbytes 4-bit model, GGUF), its parameter
// counts and structure, per-module weight-delta statistics, and training
// plans computed from a config alone. Reports render as text or as one
// stable, versioned JSON object (Schema).
package inspect

import (
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/gguf"
)

// Schema is the version of the JSON reports; it changes only when a field
// changes meaning or disappears.
const Schema = 1

// ErrUnrecognized reports input that is none of the formats lora-inspect reads.
var ErrUnrecognized = errclass.New(errclass.Invalid, "inspect: unrecognized input")

// Module is one row of an adapter's or a plan's module table.
type Module struct {
	Name    string  `json:"name"`
	Rank    int     `json:"rank"`
	Alpha   float64 `json:"alpha"`
	Scaling float64 `json:"scaling"`
	Params  int64   `json:"params"`
	// Count is how many layers carry the module.
	Count int  `json:"count"`
	DoRA  bool `json:"dora,omitempty"`
	// In and Out are the feature sizes (for plans and uniform adapters).
	In  int `json:"in,omitempty"`
	Out int `json:"out,omitempty"`
}

// Breakdown splits a model's parameters by part.
type Breakdown struct {
	Embeddings int64 `json:"embeddings"`
	Attention  int64 `json:"attention"`
	MLP        int64 `json:"mlp"`
	Norms      int64 `json:"norms"`
	LMHead     int64 `json:"lm_head"`
	Other      int64 `json:"other"`
}

// TensorRow is one line of --tensors.
type TensorRow struct {
	Name  string  `json:"name"`
	DType string  `json:"dtype"`
	Shape []int64 `json:"shape"`
	Bytes int64   `json:"bytes"`
	// Params is the logical element count (the unpacked count for 4-bit weights).
	Params int64 `json:"params"`
}

// Report is the JSON object of one input. Fields that do not apply to a
// kind are omitted.
type Report struct {
	Schema int    `json:"schema"`
	Kind   string `json:"kind"` // adapter | model | quantized-model | gguf | plan
	Path   string `json:"path,omitempty"`
	Source string `json:"source,omitempty"` // folder | file | stream

	TotalParams     int64 `json:"total_params"`
	TrainableParams int64 `json:"trainable_params"`
	Bytes           int64 `json:"bytes"`

	// Adapters and plans.
	PEFTType      string   `json:"peft_type,omitempty"`
	BaseModel     string   `json:"base_model,omitempty"`
	Modules       []Module `json:"modules,omitempty"`
	Layers        []int    `json:"layers,omitempty"`
	DoRA          bool     `json:"dora,omitempty"`
	RSLoRA        bool     `json:"rslora,omitempty"`
	ModulesToSave []string `json:"modules_to_save,omitempty"`
	// VirtualTokens is set for prompt and prefix tuning.
	VirtualTokens int `json:"virtual_tokens,omitempty"`
	// Prompt describes a prompt-learning adapter (prompt or prefix
	// tuning); nil for others.
	Prompt *PromptLearning `json:"prompt_learning,omitempty"`

	// Models.
	Architecture string           `json:"architecture,omitempty"`
	ModelType    string           `json:"model_type,omitempty"`
	Breakdown    *Breakdown       `json:"breakdown,omitempty"`
	DTypes       map[string]int64 `json:"dtypes,omitempty"` // dtype → parameter count
	Config       *ConfigSummary   `json:"config,omitempty"`

	// Quantized models.
	QuantType       string  `json:"quant_type,omitempty"`
	Blocksize       int     `json:"blocksize,omitempty"`
	DoubleQuant     *bool   `json:"double_quant,omitempty"`
	BitsPerParam    float64 `json:"bits_per_param,omitempty"`
	QuantizedParams int64   `json:"quantized_params,omitempty"`

	// GGUF.
	GGUF *gguf.Summary `json:"gguf,omitempty"`

	// Plans.
	Percent      float64          `json:"percent,omitempty"`
	AdapterBytes map[string]int64 `json:"adapter_bytes,omitempty"`
	Memory       *MemoryPlan      `json:"memory,omitempty"`

	Tensors  []TensorRow `json:"tensors,omitempty"`
	Deltas   []Delta     `json:"deltas,omitempty"`
	Warnings []string    `json:"warnings,omitempty"`
}

// ConfigSummary is the shape of a model's config.json. For an architecture
// outside the registry only the common keys are filled (Family, Ropes,
// Specifics and GGUF stay empty).
type ConfigSummary struct {
	// Family is the registry's name of the architecture ("Qwen2 / Qwen2.5").
	Family       string `json:"family,omitempty"`
	Hidden       int    `json:"hidden_size"`
	Intermediate int    `json:"intermediate_size"`
	Layers       int    `json:"num_hidden_layers"`
	Heads        int    `json:"num_attention_heads"`
	KVHeads      int    `json:"num_key_value_heads"`
	HeadDim      int    `json:"head_dim"`
	Vocab        int    `json:"vocab_size"`
	MaxPositions int    `json:"max_position_embeddings,omitempty"`
	Tied         bool   `json:"tie_word_embeddings"`
	// RopeTheta and RopeScaling are the first rope's base and type
	// (RopeScaling empty for the default).
	RopeTheta   float64 `json:"rope_theta"`
	RopeScaling string  `json:"rope_scaling,omitempty"`
	// Ropes describes every distinct rope (Gemma 3: global and sliding).
	Ropes []string `json:"ropes,omitempty"`
	// Specifics lists what the architecture computes beyond the Llama
	// decoder: biases, norms, activation, soft-caps, windows, fused modules.
	Specifics []string `json:"specifics,omitempty"`
	// GGUF is llama.cpp's architecture for it.
	GGUF string `json:"gguf_architecture,omitempty"`
	// Targets are the LoRA targets the architecture accepts (plans).
	Targets []string `json:"targets,omitempty"`
}

// PromptLearning describes a prompt-learning adapter (PROMPT_TUNING,
// PREFIX_TUNING, P_TUNING) from its config and tensor.
type PromptLearning struct {
	// Method is "prompt tuning", "prefix tuning" or "p-tuning".
	Method        string `json:"method"`
	VirtualTokens int    `json:"virtual_tokens"`
	// Layers, TokenDim and Heads are the config's num_layers, token_dim and
	// num_attention_heads; for prefix tuning token_dim is the key/value
	// width of a layer (KV heads × head dim, PEFT's GQA rule) and HeadDim
	// token_dim / heads.
	Layers   int `json:"num_layers,omitempty"`
	TokenDim int `json:"token_dim,omitempty"`
	Heads    int `json:"num_attention_heads,omitempty"`
	HeadDim  int `json:"head_dim,omitempty"`
	// Init is prompt tuning's prompt_tuning_init (RANDOM, TEXT,
	// SAMPLE_VOCAB) and InitText its text.
	Init     string `json:"init,omitempty"`
	InitText string `json:"init_text,omitempty"`
	// PrefixProjection is prefix tuning's MLP re-parametrization.
	PrefixProjection bool `json:"prefix_projection,omitempty"`
	// BaseParams is the base model's parameter count, when its config is
	// found (base_model_name_or_path a local folder or a built-in shape);
	// Percent is the adapter's share of it.
	BaseParams int64   `json:"base_params,omitempty"`
	Percent    float64 `json:"percent_of_base,omitempty"`
	// Use says what lorakit's tools do with the adapter.
	Use string `json:"use"`
}
