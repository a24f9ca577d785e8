package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/tokenizer"
)

// MaxLine bounds one JSONL line.
const MaxLine = 64 << 20

// maxTokens bounds the pre-tokenized ids of one example.
const maxTokens = 1 << 24

// Example is one training example: token ids and labels in the Hugging Face
// convention (unshifted: the model scores the logit at t against label t+1;
// compute.IgnoreIndex masks a position).
type Example struct {
	IDs    []int32
	Labels []int32
	Line   int // 1-based line of the data file
}

// Targets returns the number of scored positions of the example
// (labels[t] ≠ −100 for t ≥ 1).
func (e *Example) Targets() int {
	n := 0
	for _, l := range e.Labels[min(1, len(e.Labels)):] {
		if l != compute.IgnoreIndex {
			n++
		}
	}
	return n
}

// DataOptions tell how to turn JSONL lines into examples.
type DataOptions struct {
	// Tokenizer encodes the text forms; nil allows only input_ids lines.
	Tokenizer *tokenizer.Tokenizer
	// ChatTemplate is used for messages when the tokenizer has no template
	// of its own (the contents of chat_template.jinja); "" for none.
	ChatTemplate string
	// ChatTemplateKwargs are the chat template's variables, transformers'
	// apply_chat_template(**kwargs): e.g. "enable_thinking": false for
	// Qwen3 (see tokenizer.ParseTemplateKwargs). They shape the rendered
	// text and the assistant header the loss mask leaves out.
	ChatTemplateKwargs map[string]any
	// Vocab bounds token ids and labels: each must be in [0, Vocab).
	Vocab int
	// Seq truncates longer examples to Seq tokens; 0 keeps them whole.
	Seq int
}

// DataStats summarises a data file.
type DataStats struct {
	Examples  int
	Tokens    int64 // after truncation
	Targets   int64 // scored positions after truncation
	Truncated int   // examples longer than Seq
	Dropped   int64 // tokens removed by truncation
	// FirstTruncated is the line of the first truncated example (0: none).
	FirstTruncated int
	// NoTargets counts examples with nothing to score (after truncation).
	NoTargets int
}

// ReadData reads JSONL examples from r (name is used in errors). Blank lines
// are skipped; any other line that is not a valid example is an error that
// names the line. Examples are truncated to o.Seq tokens.
func ReadData(r io.Reader, name string, o DataOptions) ([]Example, DataStats, error) {
	var (
		out []Example
		st  DataStats
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if line == 1 {
			b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		ex, err := ParseExample(b, o)
		if err != nil {
			return nil, st, fmt.Errorf("%s: line %d: %w", name, line, err)
		}
		ex.Line = line
		if o.Seq > 0 && len(ex.IDs) > o.Seq {
			st.Truncated++
			st.Dropped += int64(len(ex.IDs) - o.Seq)
			if st.FirstTruncated == 0 {
				st.FirstTruncated = line
			}
			ex.IDs, ex.Labels = ex.IDs[:o.Seq:o.Seq], ex.Labels[:o.Seq:o.Seq]
		}
		n := ex.Targets()
		if n == 0 {
			st.NoTargets++
		}
		st.Examples++
		st.Tokens += int64(len(ex.IDs))
		st.Targets += int64(n)
		out = append(out, ex)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, st, fmt.Errorf("%s: line %d: %w: longer than %d bytes", name, line+1, ErrData, MaxLine)
		}
		return nil, st, fmt.Errorf("%s: %w", name, err)
	}
	if len(out) == 0 {
		return nil, st, fmt.Errorf("%s: %w: no examples", name, ErrData)
	}
	return out, st, nil
}

// rawExample is a JSONL line; which fields are present decides the form.
type rawExample struct {
	Text       json.RawMessage `json:"text"`
	Prompt     json.RawMessage `json:"prompt"`
	Completion json.RawMessage `json:"completion"`
	Messages   json.RawMessage `json:"messages"`
	InputIDs   json.RawMessage `json:"input_ids"`
	Labels     json.RawMessage `json:"labels"`
}

func present(r json.RawMessage) bool { return len(r) > 0 && string(r) != "null" }

// ParseExample turns one JSONL line into an example (Line unset, not
// truncated). The forms are:
//
//   - {"text": "..."}: loss on every token; the tokenizer's special tokens
//     are added (BOS) and EOS is appended, as TRL's SFTTrainer does;
//   - {"prompt": "...", "completion": "..."}: loss on the completion only
//     (the ids of prompt+completion beyond those of the prompt), EOS
//     appended; both may instead be lists of messages (conversational);
//   - {"messages": [{"role": ..., "content": ...}, ...]}: the chat template,
//     loss on the assistant turns;
//   - {"input_ids": [...], "labels": [...]}: pre-tokenized, −100 masks;
//     labels default to input_ids.
//
// Other keys are ignored; two forms on one line are an error.
func ParseExample(line []byte, o DataOptions) (Example, error) {
	var r rawExample
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&r); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return Example{}, fmt.Errorf("%w: not a JSON object of an example", ErrData)
		}
		return Example{}, fmt.Errorf("%w: %v", ErrData, err)
	}
	if dec.More() {
		return Example{}, fmt.Errorf("%w: more than one JSON value on the line", ErrData)
	}
	if bytes.HasPrefix(bytes.TrimSpace(line), []byte("null")) {
		return Example{}, fmt.Errorf("%w: null is not an example", ErrData)
	}
	var forms []string
	if present(r.Text) {
		forms = append(forms, "text")
	}
	if present(r.Prompt) || present(r.Completion) {
		forms = append(forms, "prompt/completion")
	}
	if present(r.Messages) {
		forms = append(forms, "messages")
	}
	if present(r.InputIDs) {
		forms = append(forms, "input_ids")
	}
	if present(r.Labels) && !present(r.InputIDs) {
		return Example{}, fmt.Errorf("%w: labels without input_ids", ErrData)
	}
	switch len(forms) {
	case 0:
		return Example{}, fmt.Errorf("%w: no example: want one of text, prompt/completion, messages, input_ids", ErrData)
	case 1:
	default:
		return Example{}, fmt.Errorf("%w: several forms on one line (%s and %s)", ErrData, forms[0], forms[1])
	}
	var (
		ex  Example
		err error
	)
	switch forms[0] {
	case "input_ids":
		ex, err = parseIDs(r.InputIDs, r.Labels)
	case "text":
		ex, err = parseText(r.Text, o)
	case "prompt/completion":
		ex, err = parsePromptCompletion(r.Prompt, r.Completion, o)
	case "messages":
		ex, err = parseMessages(r.Messages, o)
	}
	if err != nil {
		return Example{}, err
	}
	if len(ex.IDs) == 0 {
		return Example{}, fmt.Errorf("%w: %s: no tokens", ErrData, forms[0])
	}
	for i, id := range ex.IDs {
		if id < 0 || (o.Vocab > 0 && int(id) >= o.Vocab) {
			return Example{}, fmt.Errorf("%w: token id %d at position %d is outside the vocabulary [0, %d)", ErrData, id, i, o.Vocab)
		}
	}
	for i, l := range ex.Labels {
		if l != compute.IgnoreIndex && (l < 0 || (o.Vocab > 0 && int(l) >= o.Vocab)) {
			return Example{}, fmt.Errorf("%w: label %d at position %d is neither -100 nor in [0, %d)", ErrData, l, i, o.Vocab)
		}
	}
	return ex, nil
}

func parseInts(raw json.RawMessage, what string) ([]int32, error) {
	var v []json.Number
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil || v == nil {
		return nil, fmt.Errorf("%w: %s is not an array of integers", ErrData, what)
	}
	if len(v) > maxTokens {
		return nil, fmt.Errorf("%w: %s has %d entries (more than %d)", ErrData, what, len(v), maxTokens)
	}
	out := make([]int32, len(v))
	for i, n := range v {
		x, err := n.Int64()
		if err != nil {
			f, ferr := n.Float64()
			if ferr != nil || f != math.Trunc(f) || math.Abs(f) > math.MaxInt32 {
				return nil, fmt.Errorf("%w: %s[%d] = %s is not an integer", ErrData, what, i, n)
			}
			x = int64(f)
		}
		if x < math.MinInt32 || x > math.MaxInt32 {
			return nil, fmt.Errorf("%w: %s[%d] = %s is out of range", ErrData, what, i, n)
		}
		out[i] = int32(x)
	}
	return out, nil
}

func parseIDs(idsRaw, labelsRaw json.RawMessage) (Example, error) {
	ids, err := parseInts(idsRaw, "input_ids")
	if err != nil {
		return Example{}, err
	}
	labels := ids
	if present(labelsRaw) {
		if labels, err = parseInts(labelsRaw, "labels"); err != nil {
			return Example{}, err
		}
		if len(labels) != len(ids) {
			return Example{}, fmt.Errorf("%w: %d labels for %d input_ids", ErrData, len(labels), len(ids))
		}
	}
	return Example{IDs: ids, Labels: slicesClone(labels)}, nil
}

func slicesClone(s []int32) []int32 { return append([]int32(nil), s...) }

func needTokenizer(o DataOptions, form string) error {
	if o.Tokenizer == nil {
		return fmt.Errorf("%w: %s data needs a tokenizer, and the base model has no tokenizer.json (use input_ids)", ErrData, form)
	}
	return nil
}

func str(raw json.RawMessage, what string) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%w: %s is not a string", ErrData, what)
	}
	return s, nil
}

func toInt32(ids []int) []int32 {
	out := make([]int32, len(ids))
	for i, id := range ids {
		out[i] = int32(id)
	}
	return out
}

// appendEOS appends the tokenizer's eos token (scored) unless the ids
// already end with it.
func appendEOS(ex *Example, tk *tokenizer.Tokenizer) {
	eos, ok := tk.SpecialTokenID("eos_token")
	if !ok || (len(ex.IDs) > 0 && ex.IDs[len(ex.IDs)-1] == int32(eos)) {
		return
	}
	ex.IDs = append(ex.IDs, int32(eos))
	ex.Labels = append(ex.Labels, int32(eos))
}

func parseText(raw json.RawMessage, o DataOptions) (Example, error) {
	if err := needTokenizer(o, "text"); err != nil {
		return Example{}, err
	}
	s, err := str(raw, "text")
	if err != nil {
		return Example{}, err
	}
	ids := toInt32(o.Tokenizer.Encode(s, true))
	ex := Example{IDs: ids, Labels: slicesClone(ids)}
	appendEOS(&ex, o.Tokenizer)
	return ex, nil
}

func parsePromptCompletion(pr, cr json.RawMessage, o DataOptions) (Example, error) {
	if !present(pr) || !present(cr) {
		return Example{}, fmt.Errorf("%w: prompt and completion go together", ErrData)
	}
	if err := needTokenizer(o, "prompt/completion"); err != nil {
		return Example{}, err
	}
	if t := bytes.TrimSpace(pr); len(t) > 0 && t[0] == '[' {
		return conversationalPromptCompletion(pr, cr, o)
	}
	p, err := str(pr, "prompt")
	if err != nil {
		return Example{}, err
	}
	c, err := str(cr, "completion")
	if err != nil {
		return Example{}, err
	}
	pids := o.Tokenizer.Encode(p, true)
	ids := toInt32(o.Tokenizer.Encode(p+c, true))
	labels := slicesClone(ids)
	// Mask the prompt: the longest common prefix of the two encodings (they
	// differ only when a token straddles the prompt/completion boundary).
	for i := 0; i < len(pids) && i < len(ids) && int32(pids[i]) == ids[i]; i++ {
		labels[i] = compute.IgnoreIndex
	}
	ex := Example{IDs: ids, Labels: labels}
	appendEOS(&ex, o.Tokenizer)
	return ex, nil
}

// conversationalPromptCompletion joins prompt and completion message lists
// and scores the completion's assistant turns.
func conversationalPromptCompletion(pr, cr json.RawMessage, o DataOptions) (Example, error) {
	var p, c []json.RawMessage
	if err := json.Unmarshal(pr, &p); err != nil {
		return Example{}, fmt.Errorf("%w: prompt is neither a string nor a list of messages", ErrData)
	}
	if err := json.Unmarshal(cr, &c); err != nil {
		return Example{}, fmt.Errorf("%w: a conversational prompt needs a list of messages as completion", ErrData)
	}
	all, _ := json.Marshal(append(p, c...))
	ex, err := parseMessages(all, o)
	if err != nil {
		return Example{}, err
	}
	// Only the completion's turns are scored: render the prompt alone and
	// mask its tokens.
	pj, _ := json.Marshal(p)
	chat, err := o.Tokenizer.ApplyChatTemplateJSON(pj, o.chatOptions())
	if err != nil {
		return Example{}, fmt.Errorf("%w: prompt: %w", ErrData, err)
	}
	pids, _ := o.Tokenizer.EncodeChat(chat)
	for i := 0; i < len(pids) && i < len(ex.IDs) && int32(pids[i]) == ex.IDs[i]; i++ {
		ex.Labels[i] = compute.IgnoreIndex
	}
	return ex, nil
}

func parseMessages(raw json.RawMessage, o DataOptions) (Example, error) {
	if err := needTokenizer(o, "messages"); err != nil {
		return Example{}, err
	}
	var msgs []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &msgs); err != nil {
		return Example{}, fmt.Errorf("%w: messages is not a list of objects", ErrData)
	}
	if len(msgs) == 0 {
		return Example{}, fmt.Errorf("%w: messages is empty", ErrData)
	}
	assistant := false
	for i, m := range msgs {
		role, err := str(m["role"], fmt.Sprintf("messages[%d].role", i))
		if err != nil {
			return Example{}, err
		}
		if _, ok := m["content"]; !ok && role != "assistant" {
			return Example{}, fmt.Errorf("%w: messages[%d] has no content", ErrData, i)
		}
		assistant = assistant || role == "assistant"
	}
	if !assistant {
		return Example{}, fmt.Errorf("%w: messages has no assistant turn to learn from", ErrData)
	}
	chat, err := o.Tokenizer.ApplyChatTemplateJSON(raw, o.chatOptions())
	if err != nil {
		return Example{}, fmt.Errorf("%w: %w", ErrData, err)
	}
	ids, mask := o.Tokenizer.EncodeChat(chat)
	ex := Example{IDs: toInt32(ids), Labels: make([]int32, len(ids))}
	for i, id := range ex.IDs {
		ex.Labels[i] = compute.IgnoreIndex
		if mask[i] {
			ex.Labels[i] = id
		}
	}
	return ex, nil
}

// chatOptions are the options of every chat rendering of the data.
func (o *DataOptions) chatOptions() tokenizer.ChatOptions {
	return tokenizer.ChatOptions{Template: o.ChatTemplate, Vars: o.ChatTemplateKwargs}
}
