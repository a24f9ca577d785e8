package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type chatRow struct {
	Template string          `json:"template"`
	Messages json.RawMessage `json:"messages"`
	Options  struct {
		AddGenerationPrompt bool            `json:"add_generation_prompt"`
		Tools               json.RawMessage `json:"tools"`
		DateString          *string         `json:"date_string"`
	} `json:"options"`
	Rendered string `json:"rendered"`
	IDs      []int  `json:"ids"`
}

func llama31Template(t testing.TB) string {
	b, err := os.ReadFile(filepath.Join("testdata", "llama3.1_chat_template.jinja"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestGoldenChat renders the conversations of testdata/llama3_chat.json
// (rendered by transformers.js) and compares text and ids.
func TestGoldenChat(t *testing.T) {
	tk := cachedRef(t, "llama3")
	rows := readRows[chatRow](t, "llama3_chat.json")
	tmpl31 := llama31Template(t)
	for i, r := range rows {
		opt := ChatOptions{AddGenerationPrompt: r.Options.AddGenerationPrompt, Tools: r.Options.Tools}
		if r.Template == "llama3.1" {
			opt.Template = tmpl31
		}
		if r.Options.DateString != nil {
			opt.Vars = map[string]any{"date_string": *r.Options.DateString}
		}
		c, err := tk.ApplyChatTemplateJSON(r.Messages, opt)
		if err != nil {
			t.Errorf("row %d (%s): %v", i, r.Template, err)
			continue
		}
		if c.Text != r.Rendered {
			t.Errorf("row %d (%s):\n got %q\nwant %q", i, r.Template, c.Text, r.Rendered)
			continue
		}
		ids, mask := tk.EncodeChat(c)
		if !slices.Equal(ids, r.IDs) {
			t.Errorf("row %d (%s): ids\n got %v\nwant %v", i, r.Template, ids, r.IDs)
		}
		// Each assistant span is the trimmed content followed by <|eot_id|>
		// (an empty reply still teaches the end of turn).
		var msgs []Message
		_ = json.Unmarshal(r.Messages, &msgs)
		var want []string
		for _, m := range msgs {
			if m.Role == "assistant" {
				want = append(want, strings.TrimSpace(m.Content)+"<|eot_id|>")
			}
		}
		var got []string
		for _, s := range c.Assistant {
			got = append(got, c.Text[s[0]:s[1]])
		}
		if !hasToolCalls(r.Messages) && !slices.Equal(got, want) {
			t.Errorf("row %d (%s): spans %q, want %q", i, r.Template, got, want)
		}
		// The masked tokens decode to exactly the spans.
		var masked []int
		for k, id := range ids {
			if mask[k] {
				masked = append(masked, id)
			}
		}
		if d := tk.Decode(masked, false); d != strings.Join(got, "") {
			t.Errorf("row %d (%s): masked tokens decode to %q, want %q", i, r.Template, d, strings.Join(got, ""))
		}
	}
	t.Logf("%d conversations compared", len(rows))
}

func hasToolCalls(msgs json.RawMessage) bool { return strings.Contains(string(msgs), "tool_calls") }
