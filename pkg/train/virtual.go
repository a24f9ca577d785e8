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

// MethodPrompt is prompt tuning (PEFT's PROMPT_TUNING): trainable
// embeddings prepended to every sequence.
const MethodPrompt = "prompt"

// PEFT's prompt_tuning_init values.
const (
	PromptInitRandom = "RANDOM"
	PromptInitText   = "TEXT"
)

// VirtualOptions describe a fresh prompt-tuning adapter.
type VirtualOptions struct {
	// Tokens is num_virtual_tokens.
	Tokens int
	// InitText, when set, initialises the prompt from the embeddings of its
	// tokens (PEFT's TEXT init); empty means RANDOM, N(0, 1) as
	// torch.nn.Embedding.
	InitText string
	// Tokenizer is the base's tokenizer path written as
	// tokenizer_name_or_path (PEFT requires one with TEXT init).
	Tokenizer string
}

// NewPromptAdapter describes a fresh prompt-tuning adapter for a model of
// configuration cfg: PEFT's PromptTuningConfig for a causal LM, token_dim
// the hidden size, num_attention_heads and num_layers the model's.
func NewPromptAdapter(cfg *arch.Config, o VirtualOptions) (*Adapter, error) {
	if o.Tokens <= 0 || o.Tokens > 1<<16 {
		return nil, fmt.Errorf("%w: --virtual-tokens %d (1 … 65536)", ErrSettings, o.Tokens)
	}
	a := &Adapter{Virtual: llama.Virtual{Method: llama.MethodPrompt, Tokens: o.Tokens}, PromptInit: PromptInitRandom}
	if o.InitText != "" {
		a.PromptInit, a.PromptInitText, a.TokenizerPath = PromptInitText, o.InitText, o.Tokenizer
	}
	var err error
	a.Config, err = peft.Parse(a.promptConfig(cfg.Hidden, cfg.Heads, cfg.Layers, ""))
	return a, err
}

// promptConfig returns the adapter_config.json fields of a prompt-tuning
// adapter as a JSON object: PromptTuningConfig's long-standing keys (those
// PEFT 0.7 and later read; peft_version, modules_to_save and other recent
// keys are left out, as for LoRA).
func (a *Adapter) promptConfig(tokenDim, heads, layers int, base string) []byte {
	null := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	raw, _ := json.Marshal(map[string]any{
		"peft_type": peft.TypePromptTuning, "task_type": peft.TaskCausalLM,
		"base_model_name_or_path": null(base), "revision": nil, "inference_mode": true,
		"num_virtual_tokens": a.Virtual.Tokens, "token_dim": tokenDim, "num_transformer_submodules": 1,
		"num_attention_heads": heads, "num_layers": layers,
		"prompt_tuning_init": a.PromptInit, "prompt_tuning_init_text": null(a.PromptInitText),
		"tokenizer_name_or_path": null(a.TokenizerPath), "tokenizer_kwargs": nil,
	})
	return raw
}

// virtualConfigJSON writes a prompt-learning adapter's config as PEFT does
// (sorted keys, indent 2), keeping the geometry fields it was made or read
// with.
func (a *Adapter) virtualConfigJSON() ([]byte, error) {
	c := a.Config
	pc, err := peft.Parse(a.promptConfig(c.TokenDim, c.NumAttentionHeads, c.NumLayers, c.BaseModelNameOrPath))
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

// VirtualInitLoader returns PEFT's initial prompt of a fresh prompt-tuning
// adapter on m: with TEXT init, the word-embedding module's output for the
// init text's token ids (tok's encoding with special tokens, as
// tokenizer(text)["input_ids"]), repeated ⌈P/n⌉ times and cut to P tokens
// (PromptEmbedding's rule), as f32; with RANDOM init, N(0, 1) values drawn
// from a stream of (seed, name).
func (a *Adapter) VirtualInitLoader(m *llama.Model, tok *tokenizer.Tokenizer, seed uint64) (llama.Loader, error) {
	P, D := a.Virtual.Tokens, m.Config().Hidden
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

// openVirtual reads a prompt-tuning adapter opened by model.OpenAdapter for
// a model of configuration cfg.
func openVirtual(path string, ma *model.Adapter, cfg *arch.Config) (*Adapter, llama.Loader, error) {
	pc := ma.Config
	if pc.PeftType != peft.TypePromptTuning {
		return nil, nil, fmt.Errorf("%s: %w: peft_type %s is not supported yet", path, ErrAdapter, pc.PeftType)
	}
	if pc.TokenDim != cfg.Hidden {
		return nil, nil, fmt.Errorf("%s: %w: token_dim %d, the model's hidden size is %d", path, ErrAdapter, pc.TokenDim, cfg.Hidden)
	}
	a := &Adapter{Config: pc, Warnings: ma.Analysis.Warnings, Virtual: llama.Virtual{Method: llama.MethodPrompt, Tokens: pc.NumVirtualTokens},
		PromptInit: PromptInitRandom}
	str := func(key string) string {
		var s string
		if v, ok := pc.ExtraValue(key); ok {
			json.Unmarshal(v, &s)
		}
		return s
	}
	if str("prompt_tuning_init") == PromptInitText {
		a.PromptInit, a.PromptInitText, a.TokenizerPath = PromptInitText, str("prompt_tuning_init_text"), str("tokenizer_name_or_path")
	}
	an := ma.Analysis
	if len(an.Modules) > 0 || len(an.Others) != 1 || an.Others[0].Key.Role != peft.RolePromptEmbeddings {
		return nil, nil, fmt.Errorf("%s: %w: a prompt-tuning adapter holds one tensor, %q", path, ErrAdapter, llama.PromptEmbeddings)
	}
	key := an.Others[0].Key.Name
	info, _ := ma.Source.Info(key)
	if !info.DType.IsFloat() {
		return nil, nil, fmt.Errorf("%s: tensor %q: %w: dtype %s", path, key, ErrAdapter, info.DType)
	}
	if s := shapeInts(info.Shape); len(s) != 2 || s[0] != a.Virtual.Tokens || s[1] != cfg.Hidden {
		return nil, nil, fmt.Errorf("%s: tensor %q: %w: shape %v, the config says [%d, %d]", path, key, ErrAdapter, s, a.Virtual.Tokens, cfg.Hidden)
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
		return v, []int{a.Virtual.Tokens, cfg.Hidden}, nil
	}, nil
}
