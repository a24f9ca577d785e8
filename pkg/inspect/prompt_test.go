package inspect

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/safetensors"
)

// writePromptAdapter writes a PEFT prompt-learning adapter folder: config
// and one F32 tensor "prompt_embeddings" [rows, cols].
func writePromptAdapter(t *testing.T, config string, rows, cols int64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	ts := map[string]safetensors.Tensor{"prompt_embeddings": {DType: "F32", Shape: []int64{rows, cols}, Data: make([]byte, 4*rows*cols)}}
	if err := safetensors.Encode(&buf, map[string]string{"format": "pt"}, ts); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestPromptLearningReport: prompt- and prefix-tuning adapters are
// reported with their method, geometry, initialisation, share of the base
// (a built-in shape) and what the tools do with them, without claiming
// they cannot be applied.
func TestPromptLearningReport(t *testing.T) {
	prompt := writePromptAdapter(t, `{"base_model_name_or_path": "llama3.2-1b", "num_attention_heads": 32, "num_layers": 16,
  "num_transformer_submodules": 1, "num_virtual_tokens": 20, "peft_type": "PROMPT_TUNING", "prompt_tuning_init": "TEXT",
  "prompt_tuning_init_text": "Classify the review:", "task_type": "CAUSAL_LM", "token_dim": 2048,
  "tokenizer_name_or_path": "llama3.2-1b", "modules_to_save": null}`, 20, 2048)
	prefix := writePromptAdapter(t, `{"base_model_name_or_path": null, "encoder_hidden_size": 512, "num_attention_heads": 8,
  "num_layers": 16, "num_transformer_submodules": 1, "num_virtual_tokens": 10, "peft_type": "PREFIX_TUNING",
  "prefix_projection": false, "task_type": "CAUSAL_LM", "token_dim": 512}`, 10, 16*2*512)
	r := inspectPath(t, prompt, Options{})
	pl := r.Prompt
	if pl == nil || pl.Method != "prompt tuning" || pl.VirtualTokens != 20 || pl.TokenDim != 2048 || pl.Init != "TEXT" ||
		pl.InitText != "Classify the review:" || pl.BaseParams == 0 || pl.Percent <= 0 || !strings.Contains(pl.Use, "lora-train eval") {
		t.Errorf("prompt tuning: %+v", pl)
	}
	if r.TrainableParams != 20*2048 || len(r.Warnings) != 0 || len(r.ModulesToSave) != 0 {
		t.Errorf("prompt tuning: %d parameters, warnings %v, modules_to_save %v", r.TrainableParams, r.Warnings, r.ModulesToSave)
	}
	var text bytes.Buffer
	if err := WriteText(&text, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"method          prompt tuning", "virtual tokens  20", `init            TEXT "Classify the review:"`,
		"of the base's", "cannot be merged into weights"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report has no %q:\n%s", want, text.String())
		}
	}
	r = inspectPath(t, prefix, Options{})
	if pl := r.Prompt; pl == nil || pl.Method != "prefix tuning" || pl.Layers != 16 || pl.Heads != 8 || pl.HeadDim != 64 ||
		pl.BaseParams != 0 || r.TrainableParams != 10*16*2*512 {
		t.Errorf("prefix tuning: %+v, %d parameters", pl, r.TrainableParams)
	}
}
