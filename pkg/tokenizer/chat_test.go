package tokenizer

import (
	"encoding/json"
	"errors"
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

// TestChatMaskRules pins the assistant spans (the loss mask) of each
// template: the assistant's output after the assistant header, through the
// end-of-turn token; reasoning the template keeps and tool calls included.
// (Qwen3 writes the empty think block only after the last user query.)
func TestChatMaskRules(t *testing.T) {
	qwen := `{"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}`
	gemma := `{"bos_token": "<bos>", "eos_token": "<end_of_turn>"}`
	phi := `{"bos_token": "<s>", "eos_token": "<|endoftext|>"}`
	call := `"tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]`
	for _, tc := range []struct {
		name, template, config, messages string
		vars                             map[string]any
		want                             []string
	}{
		{"qwen3 no reasoning: the model writes the empty think block", "qwen3", qwen,
			`[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]`, nil,
			[]string{"<think>\n\n</think>\n\nHello.<|im_end|>"}},
		{"qwen3 enable_thinking=false: the empty think block is prompt", "qwen3", qwen,
			`[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]`, map[string]any{"enable_thinking": false},
			[]string{"Hello.<|im_end|>"}},
		{"qwen3 reasoning of the last turn kept, earlier dropped", "qwen3", qwen,
			`[{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "<think>\nold\n</think>\n\nA1"},
			  {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2", "reasoning_content": "new"}]`, nil,
			[]string{"A1<|im_end|>", "<think>\nnew\n</think>\n\nA2<|im_end|>"}},
		{"qwen3 tool calls", "qwen3", qwen,
			`[{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": "Checking.", ` + call + `},
			  {"role": "tool", "content": "21"}, {"role": "assistant", "content": "21 degrees."}]`, nil,
			[]string{"Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>",
				"<think>\n\n</think>\n\n21 degrees.<|im_end|>"}},
		{"qwen2.5", "qwen2.5", qwen,
			`[{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]`, nil,
			[]string{"Hello.<|im_end|>"}},
		{"qwen2.5 tool call without content", "qwen2.5", qwen,
			`[{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": "", ` + call + `}]`, nil,
			[]string{"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>"}},
		{"gemma3", "gemma3", gemma,
			`[{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  Hello!  "},
			  {"role": "user", "content": "Hello!"}, {"role": "assistant", "content": [{"type": "text", "text": "Bye."}]}]`, nil,
			[]string{"Hello!<end_of_turn>", "Bye.<end_of_turn>"}},
		{"phi3", "phi3", phi,
			`[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]`, nil,
			[]string{"Hello.<|end|>"}},
		{"phi3.5", "phi3.5", phi,
			`[{"role": "system", "content": ""}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]`, nil,
			[]string{"Hello.<|end|>"}},
		{"phi4-mini", "phi4-mini", phi,
			`[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Hello."}]`, nil,
			[]string{"Hello.<|end|>"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tk := mustNew(t, byteLevelJSON(true), tc.config)
			// The synthetic tokenizer lacks the templates' added tokens.
			ends := []string{"<|im_end|>", "<end_of_turn>", "<|end|>", "<|endoftext|>"}
			c, err := tk.ApplyChatTemplateJSON([]byte(tc.messages), ChatOptions{Template: readTemplateFile(t, tc.template), Vars: tc.vars, EndTokens: ends})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range c.Assistant {
				got = append(got, c.Text[s[0]:s[1]])
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("spans %q, want %q\n(text %q)", got, tc.want, c.Text)
			}
		})
	}
}

func TestParseTemplateKwargs(t *testing.T) {
	kw, err := ParseTemplateKwargs([]byte(`{"enable_thinking": false, "date_string": "1 Jan 2025"}`))
	if err != nil || kw["enable_thinking"] != false || kw["date_string"] != "1 Jan 2025" {
		t.Errorf("%v %v", kw, err)
	}
	tk := chatTokenizer(t, readTemplateFile(t, "qwen3"))
	c, err := tk.ApplyChatTemplate([]Message{{"user", "Hi"}}, ChatOptions{AddGenerationPrompt: true, Vars: kw})
	if err != nil || !strings.HasSuffix(c.Text, "<|im_start|>assistant\n<think>\n\n</think>\n\n") {
		t.Errorf("enable_thinking=false: %q %v", c.Text, err)
	}
	for _, bad := range []string{`[]`, `null`, `{"messages": []}`, `{"add_generation_prompt": true}`, `{`} {
		if _, err := ParseTemplateKwargs([]byte(bad)); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
