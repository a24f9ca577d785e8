package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lorakit/lorakit/pkg/tokenizer/internal/jinja"
)

// Message is one chat message. Messages with more fields (tool_calls, name,
// list contents) go through [Tokenizer.ApplyChatTemplateJSON].
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// ChatOptions controls [Tokenizer.ApplyChatTemplate].
type ChatOptions struct {
	// Template is the name of one of tokenizer_config.json's templates, or a
	// template itself. Empty: the tokenizer's ("tool_use" when Tools are given
	// and it exists, else "default").
	Template string
	// AddGenerationPrompt ends the text with the assistant header.
	AddGenerationPrompt bool
	// Tools is a JSON array of tool schemas (the tools variable); nil for none.
	Tools json.RawMessage
	// Vars are extra template variables (e.g. "date_string", "builtin_tools"),
	// as JSON-like Go values (string, bool, int, float64, []any, map[string]any).
	Vars map[string]any
	// Now, when set, defines strftime_now() as transformers does (with the
	// wall clock); left zero, templates fall back to their fixed dates,
	// which keeps renders reproducible.
	Now time.Time
	// EndTokens close an assistant turn: one that directly follows an assistant
	// message's content is part of its span. Nil: the eos_token and the
	// tokenizer's added tokens among <|eot_id|>, <|eom_id|>, <|im_end|>,
	// <|end|>, <end_of_turn>, </s>.
	EndTokens []string
}

// Chat is a rendered conversation.
type Chat struct {
	Text string
	// Assistant holds, for each assistant message (in order), the byte range
	// of Text made of its content as the template rendered it and the
	// end-of-turn token that directly follows. When the template marks
	// {% generation %} blocks, their ranges are used instead, as
	// transformers' return_assistant_tokens_mask does.
	Assistant [][2]int
}

var knownEndTokens = []string{"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "</s>"}

// ChatTemplate returns a chat template of tokenizer_config.json by name
// ("default" for a single template).
func (t *Tokenizer) ChatTemplate(name string) (string, bool) {
	s, ok := t.templates[name]
	return s, ok
}

// ChatTemplateNames returns the names of the chat templates, sorted.
func (t *Tokenizer) ChatTemplateNames() []string {
	var names []string
	for k := range t.templates {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// ApplyChatTemplate renders messages with the chat template, like
// transformers' apply_chat_template(messages, tokenize=False).
func (t *Tokenizer) ApplyChatTemplate(msgs []Message, opt ChatOptions) (*Chat, error) {
	if msgs == nil {
		msgs = []Message{}
	}
	b, err := json.Marshal(msgs)
	if err != nil {
		return nil, err
	}
	return t.ApplyChatTemplateJSON(b, opt)
}

// ApplyChatTemplateJSON is [Tokenizer.ApplyChatTemplate] with the messages as
// a JSON array of objects, kept as they are (key order, extra fields).
func (t *Tokenizer) ApplyChatTemplateJSON(messages []byte, opt ChatOptions) (*Chat, error) {
	src, err := t.pickTemplate(opt)
	if err != nil {
		return nil, err
	}
	tmpl, err := t.compile(src)
	if err != nil {
		return nil, err
	}
	mv, err := jinja.FromJSON(messages)
	if err != nil {
		return nil, fmt.Errorf("messages: %w: %v", ErrFormat, err)
	}
	list, ok := mv.([]any)
	if !ok {
		return nil, fmt.Errorf("messages: not a JSON array: %w", ErrFormat)
	}
	for i, m := range list {
		d, ok := m.(*jinja.Dict)
		if !ok {
			return nil, fmt.Errorf("message %d: not an object: %w", i, ErrFormat)
		}
		if role, _ := d.Get("role"); role == "assistant" {
			taintContent(d, i)
		}
	}
	vars := map[string]any{
		"messages":              list,
		"add_generation_prompt": opt.AddGenerationPrompt,
		"tools":                 nil,
		"documents":             nil,
	}
	for k, v := range t.specialTokens {
		vars[k] = v
	}
	if len(opt.Tools) > 0 {
		tv, err := jinja.FromJSON(opt.Tools)
		if err != nil {
			return nil, fmt.Errorf("tools: %w: %v", ErrFormat, err)
		}
		vars["tools"] = tv
	}
	if !opt.Now.IsZero() {
		now := opt.Now
		vars["strftime_now"] = jinja.Func(func(args []any) (any, error) {
			if len(args) != 1 {
				return nil, fmt.Errorf("strftime_now takes one argument")
			}
			f, ok := args[0].(string)
			if !ok {
				return nil, fmt.Errorf("strftime_now: format is not a string")
			}
			return strftime(now, f), nil
		})
	}
	for k, v := range opt.Vars {
		vars[k] = v
	}
	res, err := tmpl.Render(vars)
	if err != nil {
		var ex *jinja.Exception
		if errors.As(err, &ex) {
			return nil, fmt.Errorf("%w: raise_exception: %s", ErrTemplate, ex.Msg)
		}
		return nil, fmt.Errorf("%w: %v", ErrTemplate, err)
	}
	c := &Chat{Text: res.Text}
	if len(res.Generation) > 0 {
		c.Assistant = res.Generation
		return c, nil
	}
	ends := opt.EndTokens
	if ends == nil {
		ends = t.defaultEndTokens()
	}
	spans := map[int][2]int{}
	var order []int
	for _, m := range res.Marks {
		s, ok := spans[m.Tag]
		if !ok {
			order = append(order, m.Tag)
			s = [2]int{m.Start, m.End}
		}
		s[0], s[1] = min(s[0], m.Start), max(s[1], m.End)
		spans[m.Tag] = s
	}
	for _, tag := range order {
		s := spans[tag]
		best := ""
		for _, e := range ends {
			if e != "" && strings.HasPrefix(c.Text[s[1]:], e) && len(e) > len(best) {
				best = e
			}
		}
		s[1] += len(best)
		if s[1] > s[0] {
			c.Assistant = append(c.Assistant, s)
		}
	}
	slices.SortFunc(c.Assistant, func(a, b [2]int) int { return a[0] - b[0] })
	return c, nil
}

// compile parses a template once per tokenizer.
func (t *Tokenizer) compile(src string) (*jinja.Template, error) {
	if v, ok := t.compiled.Load(src); ok {
		return v.(*jinja.Template), nil
	}
	tmpl, err := jinja.Parse(src)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTemplate, err)
	}
	t.compiled.Store(src, tmpl)
	return tmpl, nil
}

func taintContent(d *jinja.Dict, tag int) {
	c, _ := d.Get("content")
	switch x := c.(type) {
	case string:
		d.Set("content", jinja.Taint(x, tag))
	case []any:
		for _, part := range x {
			if p, ok := part.(*jinja.Dict); ok {
				if s, ok := p.Get("text"); ok {
					if str, ok := s.(string); ok {
						p.Set("text", jinja.Taint(str, tag))
					}
				}
			}
		}
	}
}

func (t *Tokenizer) defaultEndTokens() []string {
	var ends []string
	if e, ok := t.SpecialToken("eos_token"); ok {
		ends = append(ends, e)
	}
	for _, k := range knownEndTokens {
		if _, ok := t.TokenToID(k); ok && !slices.Contains(ends, k) {
			ends = append(ends, k)
		}
	}
	return ends
}

func (t *Tokenizer) pickTemplate(opt ChatOptions) (string, error) {
	if opt.Template != "" {
		if s, ok := t.templates[opt.Template]; ok {
			return s, nil
		}
		if strings.Contains(opt.Template, "{") {
			return opt.Template, nil
		}
		return "", fmt.Errorf("template %q: %w", opt.Template, ErrNoTemplate)
	}
	if len(opt.Tools) > 0 {
		if s, ok := t.templates["tool_use"]; ok {
			return s, nil
		}
	}
	if s, ok := t.templates["default"]; ok {
		return s, nil
	}
	if len(t.templates) > 0 {
		return "", fmt.Errorf("several templates and no default (%s): %w", strings.Join(t.ChatTemplateNames(), ", "), ErrNoTemplate)
	}
	return "", ErrNoTemplate
}

// EncodeChat tokenizes a rendered conversation as transformers does
// (add_special_tokens=False: the template writes the special tokens) and
// marks the tokens that overlap an assistant span, for a loss on assistant
// turns only.
func (t *Tokenizer) EncodeChat(c *Chat) (ids []int, assistant []bool) {
	ids, offs := t.EncodeOffsets(c.Text, false)
	assistant = make([]bool, len(ids))
	k := 0
	for i, o := range offs {
		for k < len(c.Assistant) && c.Assistant[k][1] <= o[0] {
			k++
		}
		for j := k; j < len(c.Assistant) && c.Assistant[j][0] < o[1]; j++ {
			if o[0] < c.Assistant[j][1] && o[1] > c.Assistant[j][0] {
				assistant[i] = true
				break
			}
		}
	}
	return ids, assistant
}

// strftime formats t with the C/Python directives templates use.
func strftime(t time.Time, f string) string {
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		if f[i] != '%' || i+1 == len(f) {
			b.WriteByte(f[i])
			continue
		}
		i++
		switch f[i] {
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'e':
			fmt.Fprintf(&b, "%2d", t.Day())
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'Y':
			fmt.Fprintf(&b, "%d", t.Year())
		case 'y':
			fmt.Fprintf(&b, "%02d", t.Year()%100)
		case 'b', 'h':
			b.WriteString(t.Month().String()[:3])
		case 'B':
			b.WriteString(t.Month().String())
		case 'a':
			b.WriteString(t.Weekday().String()[:3])
		case 'A':
			b.WriteString(t.Weekday().String())
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'I':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			fmt.Fprintf(&b, "%02d", h)
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case 'p':
			if t.Hour() < 12 {
				b.WriteString("AM")
			} else {
				b.WriteString("PM")
			}
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(f[i])
		}
	}
	return b.String()
}
