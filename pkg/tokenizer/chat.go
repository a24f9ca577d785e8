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
	// Vars are extra template variables, transformers' chat template kwargs
	// (e.g. "enable_thinking": false for Qwen3, "date_string",
	// "builtin_tools"), as JSON-like Go values (string, bool, int, float64,
	// []any, map[string]any); see [ParseTemplateKwargs]. They also shape the
	// assistant header the loss mask leaves out.
	Vars map[string]any
	// Now, when set, defines strftime_now() as transformers does (with the
	// wall clock); left zero, templates fall back to their fixed dates,
	// which keeps renders reproducible.
	Now time.Time
	// EndTokens close an assistant turn: the first one after an assistant
	// message's last rendered byte (before any other message's text or a new
	// assistant header) ends its span. Nil: the eos_token and the
	// tokenizer's added tokens among <|eot_id|>, <|eom_id|>, <|im_end|>,
	// <|end|>, <end_of_turn>, </s>.
	EndTokens []string
}

// Chat is a rendered conversation.
type Chat struct {
	Text string
	// Assistant holds, for each assistant message (in order), the byte range
	// of Text the model writes: everything the template renders for the
	// message after the assistant header, through the end-of-turn token that
	// closes it. The header is what add_generation_prompt writes (with the
	// same Vars), so the range starts where generation starts at inference:
	//   - ChatML (Qwen2.5): "<|im_start|>assistant\n" | content "<|im_end|>" | "\n"
	//   - Qwen3: the "<think>\n…\n</think>\n\n" block the template keeps is
	//     in the range (an empty one too, as the model writes it when it does
	//     not think); with enable_thinking=false the header includes the
	//     empty block, as at inference, and the range starts at the content.
	//     Reasoning the template drops from earlier turns is not in the text.
	//   - Tool calls the template renders for the message are in the range.
	//   - Llama 3, Gemma 3, Phi-3: content (as the template trims it) and
	//     <|eot_id|>, <end_of_turn>, <|end|>.
	// The newline after the end-of-turn token and a trailing eos the template
	// adds after the last turn are not in it: the model stops at the end-of-
	// turn token. When the template marks {% generation %} blocks, their
	// ranges are used instead, as transformers' return_assistant_tokens_mask
	// does.
	Assistant [][2]int
}

// ParseTemplateKwargs reads chat template kwargs given as a JSON object (as
// transformers' apply_chat_template(**kwargs) or vLLM's chat_template_kwargs),
// e.g. {"enable_thinking": false}, for [ChatOptions.Vars].
func ParseTemplateKwargs(js []byte) (map[string]any, error) {
	var kw map[string]any
	if err := json.Unmarshal(js, &kw); err != nil || kw == nil {
		return nil, fmt.Errorf("chat template kwargs: %w: want a JSON object", ErrFormat)
	}
	for _, k := range []string{"messages", "add_generation_prompt", "tools", "documents"} {
		if _, ok := kw[k]; ok {
			return nil, fmt.Errorf("chat template kwargs: %q is set by the conversation itself: %w", k, ErrFormat)
		}
	}
	return kw, nil
}

const maxCachedHeaders = 256

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
// a JSON array of objects, kept as they are (key order, extra fields:
// reasoning_content, tool_calls, list contents).
func (t *Tokenizer) ApplyChatTemplateJSON(messages []byte, opt ChatOptions) (*Chat, error) {
	src, err := t.pickTemplate(opt)
	if err != nil {
		return nil, err
	}
	tmpl, err := t.compile(src)
	if err != nil {
		return nil, err
	}
	list, err := parseMessages(messages)
	if err != nil {
		return nil, err
	}
	assistant := make([]bool, len(list))
	for i, m := range list {
		d := m.(*jinja.Dict)
		role, _ := d.Get("role")
		assistant[i] = role == "assistant"
		taintMessage(d, i, assistant[i])
	}
	vars, err := t.templateVars(opt)
	if err != nil {
		return nil, err
	}
	res, err := render(tmpl, vars, list, opt.AddGenerationPrompt)
	if err != nil {
		return nil, err
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
	c.Assistant = assistantSpans(res, assistant, t.generationPrompt(src, tmpl, opt, vars), ends)
	return c, nil
}

func parseMessages(messages []byte) ([]any, error) {
	mv, err := jinja.FromJSON(messages)
	if err != nil {
		return nil, fmt.Errorf("messages: %w: %v", ErrFormat, err)
	}
	list, ok := mv.([]any)
	if !ok {
		return nil, fmt.Errorf("messages: not a JSON array: %w", ErrFormat)
	}
	for i, m := range list {
		if _, ok := m.(*jinja.Dict); !ok {
			return nil, fmt.Errorf("message %d: not an object: %w", i, ErrFormat)
		}
	}
	return list, nil
}

// templateVars returns the template variables other than messages and
// add_generation_prompt.
func (t *Tokenizer) templateVars(opt ChatOptions) (map[string]any, error) {
	vars := map[string]any{"tools": nil, "documents": nil}
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
	return vars, nil
}

func render(tmpl *jinja.Template, vars map[string]any, messages []any, addGenerationPrompt bool) (jinja.Result, error) {
	all := make(map[string]any, len(vars)+2)
	for k, v := range vars {
		all[k] = v
	}
	all["messages"] = messages
	all["add_generation_prompt"] = addGenerationPrompt
	res, err := tmpl.Render(all)
	if err != nil {
		var ex *jinja.Exception
		if errors.As(err, &ex) {
			return res, fmt.Errorf("%w: raise_exception: %s", ErrTemplate, ex.Msg)
		}
		return res, fmt.Errorf("%w: %v", ErrTemplate, err)
	}
	return res, nil
}

// generationPrompt returns the assistant header of a template: what
// add_generation_prompt appends to a one-message conversation with the same
// variables ("<|im_start|>assistant\n" for ChatML; with Qwen3's
// enable_thinking=false, also the empty "<think>\n\n</think>\n\n"). It is ""
// when the template cannot render that conversation.
func (t *Tokenizer) generationPrompt(src string, tmpl *jinja.Template, opt ChatOptions, vars map[string]any) string {
	key, err := json.Marshal([]any{src, opt.Vars, opt.Tools})
	if err == nil {
		if v, ok := t.headers.Load(string(key)); ok {
			return v.(string)
		}
	}
	probe := func(gen bool) (string, bool) {
		d := jinja.NewDict()
		d.Set("role", "user")
		d.Set("content", "x")
		res, err := render(tmpl, vars, []any{d}, gen)
		return res.Text, err == nil
	}
	header := ""
	without, ok1 := probe(false)
	with, ok2 := probe(true)
	if ok1 && ok2 {
		k := 0
		for k < len(without) && k < len(with) && without[k] == with[k] {
			k++
		}
		header = with[k:]
	}
	// Bounded: a data set whose examples each carry other tools renders anew.
	if err == nil && t.nHeaders.Add(1) <= maxCachedHeaders {
		t.headers.Store(string(key), header)
	}
	return header
}

// assistantSpans locates each assistant message in a render. The bytes of its
// content (and reasoning_content and tool_calls) are tainted with its index;
// its span starts right after the assistant header that precedes them (the
// generation prompt, or failing that the generation prompt's first line, or
// the first tainted byte) and ends after the first end-of-turn token that
// follows its last tainted byte, unless another message's bytes or a new
// assistant header come first.
func assistantSpans(res jinja.Result, assistant []bool, header string, ends []string) [][2]int {
	type extent struct{ first, last int }
	byTag := map[int]*extent{}
	var order []int
	for _, m := range res.Marks {
		if m.Tag < 0 || m.Tag >= len(assistant) || !assistant[m.Tag] {
			continue
		}
		e, ok := byTag[m.Tag]
		if !ok {
			e = &extent{m.Start, m.End}
			byTag[m.Tag] = e
			order = append(order, m.Tag)
		}
		e.first, e.last = min(e.first, m.Start), max(e.last, m.End)
	}
	slices.SortFunc(order, func(a, b int) int { return byTag[a].first - byTag[b].first })
	text := res.Text
	headers := []string{header}
	if i := strings.IndexByte(header, '\n'); i >= 0 && i+1 < len(header) {
		headers = append(headers, header[:i+1])
	}
	var spans [][2]int
	prevEnd := 0
	for _, tag := range order {
		e := byTag[tag]
		// Bounds: the nearest bytes of other messages on either side.
		lo, hi := prevEnd, len(text)
		for _, m := range res.Marks {
			if m.Tag == tag {
				continue
			}
			if m.End <= e.first && m.Start < e.first {
				lo = max(lo, m.End)
			}
			if m.Start >= e.last && (m.End > m.Start || m.Start > e.last) {
				hi = min(hi, m.Start)
			}
		}
		lo = min(lo, e.first)
		start := e.first
		for _, h := range headers {
			if h == "" {
				continue
			}
			if k := strings.LastIndex(text[lo:e.first], h); k >= 0 {
				start = lo + k + len(h)
				break
			}
		}
		if header != "" {
			if k := strings.Index(text[e.last:hi], header); k >= 0 {
				hi = e.last + k
			}
		}
		end := e.last
		best, bestLen := -1, 0
		for _, tok := range ends {
			if tok == "" {
				continue
			}
			if k := strings.Index(text[e.last:hi], tok); k >= 0 && (best < 0 || k < best || (k == best && len(tok) > bestLen)) {
				best, bestLen = k, len(tok)
			}
		}
		if best >= 0 {
			end = e.last + best + bestLen
		}
		if end > start {
			spans = append(spans, [2]int{start, end})
			prevEnd = end
		}
	}
	return spans
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

// taintMessage tags the text of message tag: its content (a string or the
// text of list parts) and, for an assistant, reasoning_content and every
// string of tool_calls, so that their bytes can be found in the render.
func taintMessage(d *jinja.Dict, tag int, assistant bool) {
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
	if !assistant {
		return
	}
	for _, k := range []string{"reasoning_content", "tool_calls"} {
		if v, ok := d.Get(k); ok {
			d.Set(k, jinja.TaintAll(v, tag))
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
// marks the tokens of the assistant spans, for a loss on assistant turns
// only. A token is marked when it overlaps a span (as transformers'
// return_assistant_tokens_mask does), except a special token that starts
// before the span: that is the header (e.g. Phi-3's "<|assistant|>", which
// absorbs the newline after it), part of the prompt.
func (t *Tokenizer) EncodeChat(c *Chat) (ids []int, assistant []bool) {
	ids, offs := t.EncodeOffsets(c.Text, false)
	assistant = make([]bool, len(ids))
	k := 0
	for i, o := range offs {
		for k < len(c.Assistant) && c.Assistant[k][1] <= o[0] {
			k++
		}
		for j := k; j < len(c.Assistant) && c.Assistant[j][0] < o[1]; j++ {
			s := c.Assistant[j]
			if o[0] < s[1] && o[1] > s[0] && !(o[0] < s[0] && t.IsSpecial(ids[i])) {
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
