package inspect

import (
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/peft"
)

// promptLearning describes a prompt-learning adapter (nil for others):
// the config's geometry and initialisation, and the share of the base's
// parameters when base_model_name_or_path names a local folder with a
// config.json or a built-in shape.
func promptLearning(c *peft.Config, trainable int64) *PromptLearning {
	if c == nil || peft.PromptLearningReason(c.PeftType) == "" {
		return nil
	}
	str := func(key string) string {
		var s string
		if v, ok := c.ExtraValue(key); ok {
			json.Unmarshal(v, &s)
		}
		return s
	}
	var projection bool
	if v, ok := c.ExtraValue("prefix_projection"); ok {
		json.Unmarshal(v, &projection)
	}
	p := &PromptLearning{VirtualTokens: c.NumVirtualTokens, Layers: c.NumLayers, TokenDim: c.TokenDim,
		Heads: c.NumAttentionHeads, PrefixProjection: projection}
	const applied = "lora-train eval --adapter applies it (and --init-from continues it); lora-merge and lora-gguf refuse it: "
	switch c.PeftType {
	case peft.TypePromptTuning:
		p.Method = "prompt tuning"
		p.Init, p.InitText = str("prompt_tuning_init"), str("prompt_tuning_init_text")
		if p.Init == "" {
			p.Init = "RANDOM"
		}
		p.Use = applied + peft.PromptLearningReason(c.PeftType)
	case peft.TypePrefixTuning:
		p.Method = "prefix tuning"
		if p.Heads > 0 {
			p.HeadDim = p.TokenDim / p.Heads
		}
		p.Use = applied + peft.PromptLearningReason(c.PeftType)
		if p.PrefixProjection {
			p.Use = peft.PromptLearningReason(c.PeftType) + "; lorakit does not apply prefix_projection"
		}
	default:
		p.Method = "p-tuning"
		p.Use = peft.PromptLearningReason(c.PeftType) + "; lorakit does not train or apply it"
	}
	if b := c.BaseModelNameOrPath; b != "" {
		path := b
		if st, err := os.Stat(b); err == nil && st.IsDir() {
			path = filepath.Join(b, "config.json")
		}
		if cfg, err := checkpoint.LoadConfig(path); err == nil {
			p.BaseParams = cfg.Params().Total()
			p.Percent = 100 * float64(trainable) / float64(p.BaseParams)
		}
	}
	return p
}
