package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type chatRow struct {
	Template string                     `json:"template"`
	Messages json.RawMessage            `json:"messages"`
	Options  map[string]json.RawMessage `json:"options"`
	// SpecialTokens are the special-token variables of the tokenizer's config.
	SpecialTokens map[string]string `json:"special_tokens"`
	Rendered      string            `json:"rendered"`
	IDs           []int             `json:"ids"`
	Error         string            `json:"error"`
	// PythonRendered is set where Python's Jinja2 (transformers) renders
	// differently from transformers.js (tools/tokref/jinja_ref.py); it is the
	// expected text there, and the ids are not compared.
	PythonRendered *string `json:"python_rendered"`
}

// want returns the expected rendering and whether the ids are comparable.
func (r *chatRow) want() (string, bool) {
	if r.PythonRendered != nil {
		return *r.PythonRendered, false
	}
	return r.Rendered, r.IDs != nil
}

// checkError checks a row whose rendering must fail (the template raises).
func (r *chatRow) checkError(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, ErrTemplate) {
		t.Errorf("%s: error %v, want a template error (transformers.js: %s)", what, err, r.Error)
	}
}

// chatOptions turns a golden row's apply_chat_template options into
// ChatOptions; options other than add_generation_prompt and tools are
// template variables (date_string, enable_thinking, ...).
func (r *chatRow) chatOptions(t testing.TB, template string) ChatOptions {
	t.Helper()
	opt := ChatOptions{Template: template}
	for k, v := range r.Options {
		switch k {
		case "add_generation_prompt":
			if err := json.Unmarshal(v, &opt.AddGenerationPrompt); err != nil {
				t.Fatal(err)
			}
		case "tools":
			opt.Tools = v
		default:
			var x any
			if err := json.Unmarshal(v, &x); err != nil {
				t.Fatal(err)
			}
			if opt.Vars == nil {
				opt.Vars = map[string]any{}
			}
			opt.Vars[k] = x
		}
	}
	return opt
}

func readTemplateFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+"_chat_template.jinja"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func llama31Template(t testing.TB) string { return readTemplateFile(t, "llama3.1") }

// chatGolden is a golden conversation file (tools/tokref) and the reference
// tokenizer of each of its templates.
type chatGolden struct {
	file      string
	tokenizer map[string]string // template → reference tokenizer
}

// endOfTurn is the token that closes an assistant turn, by template.
var endOfTurn = map[string]string{"llama3.1": "<|eot_id|>", "llama3": "<|eot_id|>", "qwen3": "<|im_end|>", "qwen2.5": "<|im_end|>",
	"gemma3": "<end_of_turn>", "phi3": "<|end|>", "phi3.5": "<|end|>", "phi4-mini": "<|end|>"}

var chatGoldens = []chatGolden{
	{"llama3_chat.json", map[string]string{"llama3.1": "llama3", "llama3": "llama3"}},
	{"qwen_chat.json", map[string]string{"qwen3": "qwen3", "qwen2.5": "qwen2.5"}},
	{"gemma3_chat.json", map[string]string{"gemma3": "gemma3"}},
	{"phi3_chat.json", map[string]string{"phi3": "phi3", "phi3.5": "phi3", "phi4-mini": "phi3"}},
}

// templateSource returns the template of a golden row: the committed copy
// (checked against the packages by tools/tokref).
func templateSource(t testing.TB, name string) string { return readTemplateFile(t, name) }

// TestGoldenChat renders the golden conversations (made by transformers.js)
// with the reference tokenizers and compares text, errors and ids; the
// assistant spans must decode to what the loss mask marks.
func TestGoldenChat(t *testing.T) {
	for _, g := range chatGoldens {
		t.Run(strings.TrimSuffix(g.file, ".json"), func(t *testing.T) {
			rows := readRows[chatRow](t, g.file)
			n := 0
			for i, r := range rows {
				tk := cachedRef(t, g.tokenizer[r.Template])
				c, err := tk.ApplyChatTemplateJSON(r.Messages, r.chatOptions(t, templateSource(t, r.Template)))
				if r.Error != "" {
					r.checkError(t, err, fmt.Sprintf("row %d (%s)", i, r.Template))
					n++
					continue
				}
				if err != nil {
					t.Errorf("row %d (%s): %v", i, r.Template, err)
					continue
				}
				want, withIDs := r.want()
				if c.Text != want {
					t.Errorf("row %d (%s):\n got %q\nwant %q", i, r.Template, c.Text, want)
					continue
				}
				n++
				ids, mask := tk.EncodeChat(c)
				if withIDs && !slices.Equal(ids, r.IDs) {
					t.Errorf("row %d (%s): ids\n got %v\nwant %v", i, r.Template, ids, r.IDs)
				}
				checkMask(t, tk, c, ids, mask)
				for _, sp := range c.Assistant {
					if end := endOfTurn[r.Template]; !strings.HasSuffix(c.Text[sp[0]:sp[1]], end) {
						t.Errorf("row %d (%s): span %q does not end with %s", i, r.Template, c.Text[sp[0]:sp[1]], end)
					}
				}
			}
			t.Logf("%d conversations compared", n)
		})
	}
}

// checkMask checks the loss mask against the spans at the token level: each
// marked token overlaps a span, and each byte of a span lies in a marked
// token or in a special header token that starts before the span.
func checkMask(t *testing.T, tk *Tokenizer, c *Chat, ids []int, mask []bool) {
	t.Helper()
	_, offs := tk.EncodeOffsets(c.Text, false)
	inSpan := func(a, b int) bool {
		for _, s := range c.Assistant {
			if a < s[1] && b > s[0] {
				return true
			}
		}
		return false
	}
	covered := make([]bool, len(c.Text))
	for i, o := range offs {
		if mask[i] != inSpan(o[0], o[1]) && !(tk.IsSpecial(ids[i]) && !mask[i]) {
			t.Errorf("token %d %q at %v: mask %v, spans %v (text %q)", i, c.Text[o[0]:o[1]], o, mask[i], c.Assistant, c.Text)
		}
		if mask[i] || tk.IsSpecial(ids[i]) {
			for k := o[0]; k < o[1]; k++ {
				covered[k] = true
			}
		}
	}
	for _, s := range c.Assistant {
		for k := s[0]; k < s[1]; k++ {
			if !covered[k] {
				t.Errorf("byte %d of span %v (%q) not in the mask (text %q)", k, s, c.Text[s[0]:s[1]], c.Text)
				break
			}
		}
	}
}

// TestChatRenderGolden renders the golden conversations with the committed
// templates and a synthetic tokenizer: it needs no reference tokenizer.
func TestChatRenderGolden(t *testing.T) {
	for _, g := range chatGoldens {
		rows := readRows[chatRow](t, g.file)
		for i, r := range rows {
			cfg, _ := json.Marshal(r.SpecialTokens)
			tk := mustNew(t, byteLevelJSON(true), string(cfg))
			c, err := tk.ApplyChatTemplateJSON(r.Messages, r.chatOptions(t, templateSource(t, r.Template)))
			what := fmt.Sprintf("%s row %d (%s)", g.file, i, r.Template)
			if r.Error != "" {
				r.checkError(t, err, what)
				continue
			}
			if err != nil {
				t.Errorf("%s: %v", what, err)
				continue
			}
			if want, _ := r.want(); c.Text != want {
				t.Errorf("%s:\n got %q\nwant %q", what, c.Text, want)
			}
		}
	}
}
