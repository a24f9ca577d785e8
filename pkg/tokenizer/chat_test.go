package tokenizer

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// chatTokenizer is the synthetic byte-level tokenizer with Llama 3's special
// token names in its config, enough to render templates.
func chatTokenizer(t testing.TB, template string) *Tokenizer {
	cfg := map[string]any{"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
	if template != "" {
		cfg["chat_template"] = template
	}
	js, _ := jsonMarshal(cfg)
	return mustNew(t, byteLevelJSON(true), string(js))
}

// TestChatRenderGolden renders the golden conversations (made by
// transformers.js) with the committed templates; it needs no reference
// tokenizer.
func TestChatRenderGolden(t *testing.T) {
	rows := readRows[chatRow](t, "llama3_chat.json")
	tmpl := map[string]string{"llama3.1": llama31Template(t)}
	b, err := os.ReadFile(filepath.Join("testdata", "llama3_chat_template.jinja"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl["llama3"] = string(b)
	tk := chatTokenizer(t, "")
	for i, r := range rows {
		opt := ChatOptions{Template: tmpl[r.Template], AddGenerationPrompt: r.Options.AddGenerationPrompt, Tools: r.Options.Tools}
		if r.Options.DateString != nil {
			opt.Vars = map[string]any{"date_string": *r.Options.DateString}
		}
		c, err := tk.ApplyChatTemplateJSON(r.Messages, opt)
		if err != nil {
			t.Errorf("row %d: %v", i, err)
			continue
		}
		if c.Text != r.Rendered {
			t.Errorf("row %d (%s):\n got %q\nwant %q", i, r.Template, c.Text, r.Rendered)
		}
	}
}

func TestChatSpans(t *testing.T) {
	tk := chatTokenizer(t, llama31Template(t))
	msgs := []Message{
		{"system", "Be brief."},
		{"user", "Hi"},
		{"assistant", "  Hello there!  "},
		{"user", "Bye"},
		{"assistant", "Bye!"},
	}
	c, err := tk.ApplyChatTemplate(msgs, ChatOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range c.Assistant {
		got = append(got, c.Text[s[0]:s[1]])
	}
	if want := []string{"Hello there!<|eot_id|>", "Bye!<|eot_id|>"}; !slices.Equal(got, want) {
		t.Errorf("spans %q, want %q", got, want)
	}
	ids, mask := tk.EncodeChat(c)
	var masked []int
	for i := range ids {
		if mask[i] {
			masked = append(masked, ids[i])
		}
	}
	if d := tk.Decode(masked, false); d != "Hello there!<|eot_id|>Bye!<|eot_id|>" {
		t.Errorf("masked tokens decode to %q", d)
	}
	// A user turn that repeats the assistant text is not marked.
	c2, err := tk.ApplyChatTemplate([]Message{{"user", "ok"}, {"assistant", "ok"}}, ChatOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c2.Assistant) != 1 || c2.Text[c2.Assistant[0][0]:c2.Assistant[0][1]] != "ok<|eot_id|>" ||
		c2.Assistant[0][0] < strings.LastIndex(c2.Text, "assistant") {
		t.Errorf("spans %v in %q", c2.Assistant, c2.Text)
	}
}

func TestChatGenerationBlocks(t *testing.T) {
	tmpl := `{% for m in messages %}{{ m.role }}: {% if m.role == 'assistant' %}{% generation %}{{ m.content }}!{% endgeneration %}{% else %}{{ m.content }}{% endif %}{{ "\n" }}{% endfor %}`
	tk := chatTokenizer(t, tmpl)
	c, err := tk.ApplyChatTemplate([]Message{{"user", "a"}, {"assistant", "b"}}, ChatOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Text != "user: a\nassistant: b!\n" || len(c.Assistant) != 1 || c.Text[c.Assistant[0][0]:c.Assistant[0][1]] != "b!" {
		t.Errorf("%q %v", c.Text, c.Assistant)
	}
}

func TestChatOptions(t *testing.T) {
	tk := chatTokenizer(t, llama31Template(t))
	c, err := tk.ApplyChatTemplate([]Message{{"user", "x"}}, ChatOptions{Vars: map[string]any{"date_string": "2 Feb 2025"}})
	if err != nil || !strings.Contains(c.Text, "Today Date: 2 Feb 2025\n") {
		t.Errorf("date_string: %v %+v", err, c)
	}
	// raise_exception surfaces as ErrTemplate.
	_, err = tk.ApplyChatTemplate(nil, ChatOptions{Template: `{{ raise_exception("nope") }}`})
	if !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("raise_exception: %v", err)
	}
	// strftime_now only with Now.
	tm := `{% if strftime_now is defined %}{{ strftime_now("%d %b %Y") }}{% else %}none{% endif %}`
	c, _ = tk.ApplyChatTemplate(nil, ChatOptions{Template: tm})
	if c.Text != "none" {
		t.Errorf("got %q", c.Text)
	}
	c, _ = tk.ApplyChatTemplate(nil, ChatOptions{Template: tm, Now: time.Date(2025, 3, 7, 0, 0, 0, 0, time.UTC)})
	if c.Text != "07 Mar 2025" {
		t.Errorf("got %q", c.Text)
	}
	// Named templates.
	cfg := `{"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]}`
	named := mustNew(t, byteLevelJSON(true), cfg)
	for _, tc := range []struct {
		opt  ChatOptions
		want string
	}{
		{ChatOptions{}, "D"},
		{ChatOptions{Tools: []byte(`[{"name": "f"}]`)}, "T"},
		{ChatOptions{Template: "tool_use"}, "T"},
	} {
		c, err := named.ApplyChatTemplate(nil, tc.opt)
		if err != nil || c.Text != tc.want {
			t.Errorf("%+v: %v %v", tc.opt, c, err)
		}
	}
	if _, err := named.ApplyChatTemplate(nil, ChatOptions{Template: "nope"}); !errors.Is(err, ErrNoTemplate) {
		t.Errorf("missing template: %v", err)
	}
	if _, err := mustNew(t, byteLevelJSON(true), "").ApplyChatTemplate(nil, ChatOptions{}); !errors.Is(err, ErrNoTemplate) {
		t.Errorf("no template: %v", err)
	}
	if _, err := tk.ApplyChatTemplateJSON([]byte(`{"role": "user"}`), ChatOptions{}); !errors.Is(err, ErrFormat) {
		t.Errorf("not a list: %v", err)
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
