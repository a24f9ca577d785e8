package train

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/llama"
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/tokenizer"
)

// Virtual-token methods (lora-train --method).
const (
	// MethodPrompt is prompt tuning (PEFT's PROMPT_TUNING): trainable
	// embeddings prepended to every sequence.
	MethodPrompt = "prompt"
	// MethodPrefix is prefix tuning (PEFT's PREFIX_TUNING without
	// prefix_projection): trainable past keys and values in every layer.
	MethodPrefix = "prefix"
)

// PEFT's prompt_tuning_init values.
const (
	PromptInitRandom = "RANDOM"
	PromptInitText   = "TEXT"
)

// VirtualOptions describe a fresh prompt- or prefix-tuning adapter.
type VirtualOptions struct {
	// Method is MethodPrompt or MethodPrefix.
	Method string
	// Tokens is num_virtual_tokens.
	Tokens int
	// InitText, when set, initialises a prompt from the embeddings of its
	// tokens (PEFT's TEXT init); empty means RANDOM, N(0, 1) as
	// torch.nn.Embedding (a prefix is always N(0, 1), PEFT's default).
	InitText string
	// Tokenizer is the base's tokenizer path written as
	// tokenizer_name_or_path (PEFT requires one with TEXT init).
	Tokenizer string
}

// NewVirtualAdapter describes a fresh prompt- or prefix-tuning adapter
// for a model of configuration cfg, with the config PEFT's get_peft_model
// completes for a causal LM (_prepare_prompt_learning_config,
// num_transformer_submodules 1): for prompt tuning token_dim is the hidden
// size and num_attention_heads the model's heads; for prefix tuning, as
// PEFT adjusts them for grouped-query attention, token_dim is hidden_size /
// num_attention_heads · num_key_value_heads and num_attention_heads the KV
// heads (models whose head_dim is not hidden_size / num_attention_heads
// are refused: llama.PrefixWidth).
func NewVirtualAdapter(cfg *arch.Config, o VirtualOptions) (*Adapter, error) {
	if o.Tokens <= 0 || o.Tokens > 1<<16 {
		return nil, fmt.Errorf("%w: --virtual-tokens %d (1 … 65536)", ErrSettings, o.Tokens)
	}
	a := &Adapter{Virtual: llama.Virtual{Method: o.Method, Tokens: o.Tokens}}
	c := &peft.Config{NumVirtualTokens: o.Tokens, NumLayers: cfg.Layers, NumTransformerSubmodules: 1}
	switch o.Method {
	case MethodPrompt:
		c.PeftType, c.TokenDim, c.NumAttentionHeads = peft.TypePromptTuning, cfg.Hidden, cfg.Heads
		a.PromptInit = PromptInitRandom
		if o.InitText != "" {
			a.PromptInit, a.PromptInitText, a.TokenizerPath = PromptInitText, o.InitText, o.Tokenizer
		}
	case MethodPrefix:
		if o.InitText != "" {
			return nil, fmt.Errorf("%w: --init-text is for prompt tuning", ErrSettings)
		}
		if _, err := llama.PrefixWidth(cfg); err != nil {
			return nil, err
		}
		c.PeftType, c.TokenDim, c.NumAttentionHeads = peft.TypePrefixTuning, cfg.Hidden/cfg.Heads*cfg.KVHeads, cfg.KVHeads
	default:
		return nil, fmt.Errorf("%w: virtual-token method %q", ErrSettings, o.Method)
	}
	a.Config = c
	raw, err := a.ConfigJSON()
	if err != nil {
		return nil, err
	}
	a.Config, err = peft.Parse(raw)
	return a, err
}

// virtualConfigJSON writes a prompt-learning adapter's config as PEFT does
// (json.dumps indent 2, sorted keys) with the long-standing keys of its
// type, those PEFT 0.7 and later read (peft_version, auto_mapping,
// modules_to_save and prefix tuning's init_weights, recent keys, are left
// out, as for LoRA): PromptTuningConfig's or PrefixTuningConfig's
// (encoder_hidden_size = token_dim, prefix_projection false).
func (a *Adapter) virtualConfigJSON() ([]byte, error) {
	c := a.Config
	null := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	m := map[string]any{
		"peft_type": c.PeftType, "task_type": peft.TaskCausalLM,
		"base_model_name_or_path": null(c.BaseModelNameOrPath), "revision": nil, "inference_mode": true,
		"num_virtual_tokens": a.Virtual.Tokens, "token_dim": c.TokenDim, "num_transformer_submodules": 1,
		"num_attention_heads": c.NumAttentionHeads, "num_layers": c.NumLayers,
	}
	if a.Virtual.Method == MethodPrefix {
		m["encoder_hidden_size"], m["prefix_projection"] = c.TokenDim, false
	} else {
		m["prompt_tuning_init"], m["prompt_tuning_init_text"] = a.PromptInit, null(a.PromptInitText)
		m["tokenizer_name_or_path"], m["tokenizer_kwargs"] = null(a.TokenizerPath), nil
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	pc, err := peft.Parse(raw)
	if err != nil {
		return nil, err
	}
	return peft.Marshal(pc)
}

// IsVirtual reports whether the adapter trains virtual tokens.
func (a *Adapter) IsVirtual() bool { return a.Virtual.Tokens > 0 }

// Attach adds the adapter to m, reading its tensors through load: module
// adapters (Specs) and virtual tokens.
func (a *Adapter) Attach(m *llama.Model, load llama.Loader) error {
	if len(a.Specs) > 0 {
		if err := m.AddAdapters(a.Specs, load); err != nil {
			return err
		}
	}
	if a.IsVirtual() {
		return m.AddVirtual(a.Virtual, load)
	}
	return nil
}

// VirtualInitLoader returns PEFT's initial values of a fresh prompt- or
// prefix-tuning adapter on m: for a prompt with TEXT init, the word-embedding module's output for the
// init text's token ids (tok's encoding with special tokens, as
// tokenizer(text)["input_ids"]), repeated ⌈P/n⌉ times and cut to P tokens
// (PromptEmbedding's rule), as f32; otherwise (RANDOM, and every prefix)
// N(0, 1) values drawn from a stream of (seed, name), torch.nn.Embedding's
// initialisation.
func (a *Adapter) VirtualInitLoader(m *llama.Model, tok *tokenizer.Tokenizer, seed uint64) (llama.Loader, error) {
	P, D := a.Virtual.Tokens, m.Config().Hidden
	if a.Virtual.Method == MethodPrefix {
		w, err := llama.PrefixWidth(m.Config())
		if err != nil {
			return nil, err
		}
		D = w
	}
	var data []float32
	if a.PromptInit == PromptInitText {
		if tok == nil {
			return nil, fmt.Errorf("%w: --init-text needs the base's tokenizer (tokenizer.json)", ErrSettings)
		}
		ids := PromptInitIDs(tok.Encode(a.PromptInitText, true), P)
		if ids == nil {
			return nil, fmt.Errorf("%w: --init-text %q has no tokens", ErrSettings, a.PromptInitText)
		}
		var err error
		if data, err = m.TokenEmbeddings(ids); err != nil {
			return nil, err
		}
	} else {
		h := fnv.New64a()
		io.WriteString(h, llama.PromptEmbeddings)
		r := rand.New(rand.NewPCG(seed, h.Sum64()))
		data = make([]float32, P*D)
		for i := range data {
			data[i] = float32(r.NormFloat64())
		}
	}
	return func(name string) ([]float32, []int, error) {
		if name != llama.PromptEmbeddings {
			return nil, nil, fmt.Errorf("%q: %w", name, llama.ErrNotFound)
		}
		return data, []int{P, D}, nil
	}, nil
}

// PromptInitIDs is PEFT's TEXT init rule: the text's ids cut to P, or
// repeated ⌈P/n⌉ times and cut to P; nil for no ids.
func PromptInitIDs(ids []int, P int) []int32 {
	if len(ids) == 0 {
		return nil
	}
	out := make([]int32, 0, P)
	for len(out) < P {
		for _, id := range ids {
			if len(out) == P {
				break
			}
			out = append(out, int32(id))
		}
	}
	return out
}

// openVirtual reads a prompt- or prefix-tuning adapter opened by
// model.OpenAdapter for a model of configuration cfg, checking that its
// geometry is the model's as PEFT lays it out.
func openVirtual(path string, ma *model.Adapter, cfg *arch.Config) (*Adapter, llama.Loader, error) {
	pc := ma.Config
	a := &Adapter{Config: pc, Warnings: ma.Analysis.Warnings}
	mismatch := func(key string, got, want int) error {
		return fmt.Errorf("%s: adapter_config.json: %w: %s %d, the model needs %d", path, ErrAdapter, key, got, want)
	}
	var width int
	switch pc.PeftType {
	case peft.TypePromptTuning:
		a.Virtual = llama.Virtual{Method: llama.MethodPrompt, Tokens: pc.NumVirtualTokens}
		if pc.TokenDim != cfg.Hidden {
			return nil, nil, mismatch("token_dim", pc.TokenDim, cfg.Hidden)
		}
		width = cfg.Hidden
		str := func(key string) string {
			var s string
			if v, ok := pc.ExtraValue(key); ok {
				json.Unmarshal(v, &s)
			}
			return s
		}
		a.PromptInit = PromptInitRandom
		if str("prompt_tuning_init") == PromptInitText {
			a.PromptInit, a.PromptInitText, a.TokenizerPath = PromptInitText, str("prompt_tuning_init_text"), str("tokenizer_name_or_path")
		}
	case peft.TypePrefixTuning:
		a.Virtual = llama.Virtual{Method: llama.MethodPrefix, Tokens: pc.NumVirtualTokens}
		w, err := llama.PrefixWidth(cfg)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		switch kv := cfg.KVHeads * cfg.HeadDim; {
		case pc.TokenDim != kv:
			return nil, nil, mismatch("token_dim", pc.TokenDim, kv)
		case pc.NumAttentionHeads != cfg.KVHeads:
			return nil, nil, mismatch("num_attention_heads", pc.NumAttentionHeads, cfg.KVHeads)
		case pc.NumLayers != cfg.Layers:
			return nil, nil, mismatch("num_layers", pc.NumLayers, cfg.Layers)
		}
		width = w
	default:
		return nil, nil, fmt.Errorf("%s: %w: peft_type %s is not supported", path, ErrAdapter, pc.PeftType)
	}
	an := ma.Analysis
	if len(an.Modules) > 0 || len(an.Others) != 1 || an.Others[0].Key.Role != peft.RolePromptEmbeddings {
		return nil, nil, fmt.Errorf("%s: %w: a %s adapter holds one tensor, %q", path, ErrAdapter, pc.PeftType, llama.PromptEmbeddings)
	}
	key := an.Others[0].Key.Name
	info, _ := ma.Source.Info(key)
	if !info.DType.IsFloat() {
		return nil, nil, fmt.Errorf("%s: tensor %q: %w: dtype %s", path, key, ErrAdapter, info.DType)
	}
	P := a.Virtual.Tokens
	if s := shapeInts(info.Shape); len(s) != 2 || s[0] != P || s[1] != width {
		return nil, nil, fmt.Errorf("%s: tensor %q: %w: shape %v, the config says [%d, %d]", path, key, ErrAdapter, s, P, width)
	}
	tensors, err := ma.Load()
	if err != nil {
		return nil, nil, err
	}
	v := make([]float32, info.NumElements())
	if err := dtype.ToF32(v, tensors[key], info.DType); err != nil {
		return nil, nil, fmt.Errorf("%s: tensor %q: %w", path, key, err)
	}
	return a, func(name string) ([]float32, []int, error) {
		if name != llama.PromptEmbeddings {
			return nil, nil, fmt.Errorf("%s: %q: %w", path, name, llama.ErrNotFound)
		}
		return v, []int{P, width}, nil
	}, nil
}
