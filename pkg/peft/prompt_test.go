package peft

import (
	"errors"
	"strings"
	"testing"
)

// TestValidatePromptLearning: prompt- and prefix-tuning configs are refused
// with the reason unless AllowPromptLearning, then checked (positive
// num_virtual_tokens, a causal LM's one transformer submodule, no
// prefix_projection); P-tuning is refused with its own reason.
func TestValidatePromptLearning(t *testing.T) {
	for _, c := range []struct {
		json, key, want string // want "" means valid with AllowPromptLearning
	}{
		{`{"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 20, "token_dim": 64, "num_transformer_submodules": 1}`, "", ""},
		{`{"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 4, "token_dim": 32, "prefix_projection": false}`, "", ""},
		{`{"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 4, "prefix_projection": true}`, "prefix_projection", "MLP"},
		{`{"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 0}`, "num_virtual_tokens", "positive"},
		{`{"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 3, "num_transformer_submodules": 2}`, "num_transformer_submodules", "encoder-decoder"},
		{`{"peft_type": "P_TUNING", "num_virtual_tokens": 3}`, "peft_type", "prompt encoder"},
	} {
		cfg, err := Parse([]byte(c.json))
		if err != nil {
			t.Fatal(err)
		}
		err = cfg.Validate()
		if !errors.Is(err, ErrUnsupportedType) || !strings.Contains(err.Error(), "cannot be merged into weights") {
			t.Errorf("%s: Validate = %v, want the reason", c.json, err)
		}
		err = cfg.ValidateWith(ValidateOptions{AllowPromptLearning: true})
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.json, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), `key "`+c.key+`"`) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want key %q with %q", c.json, err, c.key, c.want)
		}
	}
	if PromptLearningReason(TypeLoRA) != "" {
		t.Error("LORA has a prompt-learning reason")
	}
}
