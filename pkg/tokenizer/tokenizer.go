// Package tokenizer reads Hugging Face tokenizer.json and tokenizer_config.json
// files and encodes text to exactly the ids the Hugging Face tokenizers library
// produces, for BPE tokenizers: byte-level BPE (GPT-2, Llama 3, Qwen 2/2.5/3
// with its NFC normalizer and per-digit split) and SentencePiece-style BPE
// with byte fallback (Llama 2, Mistral, Phi-3/3.5, Gemma 3). The pipeline is
// built from the file's components (normalizer, pre-tokenizer, model,
// post-processor, decoder), not from a model name, so any model with such a
// tokenizer works. It also decodes ids and renders chat templates with the
// spans a loss on assistant turns uses (see [Tokenizer.ApplyChatTemplate]).
//
// The pipeline is the one of tokenizers: added tokens are split out first,
// the rest is normalized, pre-tokenized into words, each word is merged by BPE
// rank, and the post-processor adds special tokens such as BOS.
package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"github.com/lorakit/lorakit/pkg/errclass"
)

var (
	// ErrFormat reports a malformed tokenizer.json or tokenizer_config.json.
	ErrFormat = errclass.New(errclass.Invalid, "tokenizer: invalid file")
	// ErrUnsupported reports a tokenizer component this package does not implement.
	ErrUnsupported = errclass.New(errclass.Invalid, "tokenizer: unsupported")
	// ErrNoTemplate reports a tokenizer without the requested chat template.
	ErrNoTemplate = errclass.New(errclass.Invalid, "tokenizer: no chat template")
	// ErrTemplate reports a chat template that failed to parse or render
	// (including raise_exception from the template).
	ErrTemplate = errclass.New(errclass.Invalid, "tokenizer: chat template error")
)

// Limits applied while parsing, before allocating.
const (
	maxFileSize    = 1 << 30
	maxVocab       = 1 << 22
	maxMerges      = 1 << 23
	maxAddedTokens = 1 << 20
	maxTokenLen    = 1 << 16
)

// AddedToken is an entry of tokenizer.json "added_tokens".
type AddedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// Tokenizer encodes and decodes text. It is safe for concurrent use.
type Tokenizer struct {
	model    *bpe
	idToTok  []string
	norm     normalizer
	pre      preTokenizer
	post     []postItem // nil: no post-processor
	dec      decoder
	added    []AddedToken
	special  []bool // by id: special added token
	rawAdded *addedMatcher
	normAdd  *addedMatcher

	// from tokenizer_config.json
	specialTokens map[string]string // "bos_token" → content
	templates     map[string]string // chat templates by name; "default" for a single one
	cleanUp       bool
	compiled      sync.Map // template source → *jinja.Template
	headers       sync.Map // template, variables and tools → generation prompt
	nHeaders      atomic.Int64
}

// Load reads dir/tokenizer.json and, when present, dir/tokenizer_config.json
// (and dir/chat_template.jinja).
func Load(dir string) (*Tokenizer, error) {
	tj, err := readLimited(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return nil, err
	}
	cfg, err := readLimited(filepath.Join(dir, "tokenizer_config.json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	t, err := New(tj, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if _, ok := t.templates["default"]; !ok {
		if b, err := readLimited(filepath.Join(dir, "chat_template.jinja")); err == nil {
			t.templates["default"] = string(b)
		}
	}
	return t, nil
}

func readLimited(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxFileSize {
		return nil, fmt.Errorf("%s: %d bytes: %w", path, st.Size(), ErrFormat)
	}
	return os.ReadFile(path)
}

// New builds a tokenizer from the contents of tokenizer.json and, optionally
// (nil or empty), tokenizer_config.json.
func New(tokenizerJSON, configJSON []byte) (*Tokenizer, error) {
	if len(tokenizerJSON) > maxFileSize {
		return nil, fmt.Errorf("tokenizer.json: %w", ErrFormat)
	}
	var f struct {
		AddedTokens   []AddedToken    `json:"added_tokens"`
		Normalizer    json.RawMessage `json:"normalizer"`
		PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
		Model         *modelJSON      `json:"model"`
		PostProcessor json.RawMessage `json:"post_processor"`
		Decoder       json.RawMessage `json:"decoder"`
	}
	if err := json.Unmarshal(tokenizerJSON, &f); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w: %v", ErrFormat, err)
	}
	t := &Tokenizer{specialTokens: map[string]string{}, templates: map[string]string{}}
	var err error
	if t.norm, err = parseNormalizer(f.Normalizer); err != nil {
		return nil, fmt.Errorf("tokenizer.json: normalizer: %w", err)
	}
	byteLevel := false
	if t.pre, byteLevel, err = parsePreTokenizer(f.PreTokenizer); err != nil {
		return nil, fmt.Errorf("tokenizer.json: pre_tokenizer: %w", err)
	}
	if t.model, err = parseModel(f.Model, byteLevel); err != nil {
		return nil, fmt.Errorf("tokenizer.json: model: %w", err)
	}
	if t.dec, err = parseDecoder(f.Decoder); err != nil {
		return nil, fmt.Errorf("tokenizer.json: decoder: %w", err)
	}
	if len(f.AddedTokens) > maxAddedTokens {
		return nil, fmt.Errorf("tokenizer.json: %d added tokens: %w", len(f.AddedTokens), ErrFormat)
	}
	// id → token table.
	maxID := -1
	for _, id := range t.model.vocab {
		maxID = max(maxID, int(id))
	}
	for _, a := range f.AddedTokens {
		if a.ID < 0 || a.ID >= maxVocab || a.Content == "" || len(a.Content) > maxTokenLen {
			return nil, fmt.Errorf("tokenizer.json: added token %d %q: %w", a.ID, a.Content, ErrFormat)
		}
		maxID = max(maxID, a.ID)
	}
	if maxID >= 2*(len(t.model.vocab)+len(f.AddedTokens))+65536 {
		return nil, fmt.Errorf("tokenizer.json: id %d for %d tokens: %w", maxID, len(t.model.vocab), ErrFormat)
	}
	t.idToTok = make([]string, maxID+1)
	t.special = make([]bool, maxID+1)
	for s, id := range t.model.vocab {
		t.idToTok[id] = s
	}
	t.added = f.AddedTokens
	var raw, normd []AddedToken
	for _, a := range f.AddedTokens {
		t.idToTok[a.ID] = a.Content
		t.special[a.ID] = a.Special
		if a.Normalized && t.norm != nil {
			n := t.norm.normalize(normStr{s: a.Content})
			a.Content = n.s
			normd = append(normd, a)
		} else {
			raw = append(raw, a)
		}
	}
	t.rawAdded = newAddedMatcher(raw)
	t.normAdd = newAddedMatcher(normd)
	if t.post, err = parsePostProcessor(f.PostProcessor, t); err != nil {
		return nil, fmt.Errorf("tokenizer.json: post_processor: %w", err)
	}
	if len(bytes.TrimSpace(configJSON)) > 0 {
		if err := t.parseConfig(configJSON); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: %w", err)
		}
	}
	return t, nil
}

func (t *Tokenizer) parseConfig(b []byte) error {
	var c map[string]json.RawMessage
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("%w: %v", ErrFormat, err)
	}
	for k, v := range c {
		if !strings.HasSuffix(k, "_token") {
			continue
		}
		var s string
		if json.Unmarshal(v, &s) == nil {
			t.specialTokens[k] = s
			continue
		}
		var o struct {
			Content *string `json:"content"`
		}
		if json.Unmarshal(v, &o) == nil && o.Content != nil {
			t.specialTokens[k] = *o.Content
		}
	}
	if v, ok := c["clean_up_tokenization_spaces"]; ok {
		_ = json.Unmarshal(v, &t.cleanUp)
	}
	if v, ok := c["chat_template"]; ok && string(v) != "null" {
		var s string
		if json.Unmarshal(v, &s) == nil {
			t.templates["default"] = s
		} else {
			var list []struct {
				Name     string `json:"name"`
				Template string `json:"template"`
			}
			if err := json.Unmarshal(v, &list); err != nil {
				return fmt.Errorf("chat_template: %w: %v", ErrFormat, err)
			}
			for _, e := range list {
				t.templates[e.Name] = e.Template
			}
		}
	}
	return nil
}

// VocabSize returns the number of ids (the largest id + 1), added tokens included.
func (t *Tokenizer) VocabSize() int { return len(t.idToTok) }

// TokenToID returns the id of a vocabulary entry or added token.
func (t *Tokenizer) TokenToID(s string) (int, bool) {
	for _, a := range t.added {
		if a.Content == s {
			return a.ID, true
		}
	}
	id, ok := t.model.vocab[s]
	return int(id), ok
}

// IDToToken returns the token string of id (byte-level tokens in their
// byte-level spelling, e.g. "Ġthe").
func (t *Tokenizer) IDToToken(id int) (string, bool) {
	if id < 0 || id >= len(t.idToTok) {
		return "", false
	}
	s := t.idToTok[id]
	return s, s != ""
}

// Tokens returns the token string of every id ("" for an id without one),
// added tokens included, in the vocabulary's spelling.
func (t *Tokenizer) Tokens() []string { return slices.Clone(t.idToTok) }

// Merges returns the BPE merges in rank order.
func (t *Tokenizer) Merges() [][2]string {
	type m struct {
		rank uint32
		pair [2]string
	}
	all := make([]m, 0, len(t.model.merges))
	for k, v := range t.model.merges {
		a, b := int(k>>32), int(uint32(k))
		all = append(all, m{v.rank, [2]string{t.idToTok[a], t.idToTok[b]}})
	}
	slices.SortFunc(all, func(x, y m) int { return int(x.rank) - int(y.rank) })
	out := make([][2]string, len(all))
	for i, x := range all {
		out[i] = x.pair
	}
	return out
}

// ByteLevel reports whether the tokenizer is byte-level BPE (GPT-2, Llama 3,
// Qwen) rather than SentencePiece-style BPE (Llama 2, Mistral, Gemma 3).
func (t *Tokenizer) ByteLevel() bool { return t.model.byteLevel }

// AddedTokens returns the added tokens of tokenizer.json.
func (t *Tokenizer) AddedTokens() []AddedToken { return slices.Clone(t.added) }

// IsSpecial reports whether id is a special added token.
func (t *Tokenizer) IsSpecial(id int) bool { return id >= 0 && id < len(t.special) && t.special[id] }

// SpecialToken returns the content of a special token named in
// tokenizer_config.json ("bos_token", "eos_token", "pad_token", ...).
func (t *Tokenizer) SpecialToken(name string) (string, bool) {
	s, ok := t.specialTokens[name]
	return s, ok && s != ""
}

// SpecialTokenID returns the id of a special token named in tokenizer_config.json.
func (t *Tokenizer) SpecialTokenID(name string) (int, bool) {
	s, ok := t.SpecialToken(name)
	if !ok {
		return 0, false
	}
	return t.TokenToID(s)
}

// CleanUpTokenizationSpaces reports tokenizer_config.json's
// clean_up_tokenization_spaces, which transformers applies in decode (see
// [CleanUpTokenizationSpaces]); [Tokenizer.Decode] does not.
func (t *Tokenizer) CleanUpTokenizationSpaces() bool { return t.cleanUp }

// CleanUpTokenizationSpaces removes the spaces transformers' decode removes
// when clean_up_tokenization_spaces is set (" ." → ".", " n't" → "n't", ...).
func CleanUpTokenizationSpaces(s string) string {
	// transformers applies the replacements one after another.
	for _, p := range [][2]string{{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"},
		{" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}} {
		s = strings.ReplaceAll(s, p[0], p[1])
	}
	return s
}

// Encode returns the ids of text. addSpecial applies the post-processor
// (for Llama 3: prepend <|begin_of_text|>), like add_special_tokens in
// transformers.
func (t *Tokenizer) Encode(text string, addSpecial bool) []int {
	e := t.encode(text, addSpecial, false)
	return e.ids
}

// EncodeOffsets returns the ids of text and, for each id, the byte range
// [start, end) of text it comes from; tokens added by the post-processor have
// an empty range at 0.
func (t *Tokenizer) EncodeOffsets(text string, addSpecial bool) ([]int, [][2]int) {
	e := t.encode(text, addSpecial, true)
	return e.ids, e.offs
}

type encoding struct {
	ids  []int
	offs [][2]int
	toks []tok
}

func (e *encoding) add(id int, a, b int, withOffs bool) {
	e.ids = append(e.ids, id)
	if withOffs {
		e.offs = append(e.offs, [2]int{a, b})
	}
}

func (t *Tokenizer) encode(text string, addSpecial, withOffs bool) encoding {
	var e encoding
	e.ids = make([]int, 0, len(text)/4+4)
	var words []normStr
	for _, m := range t.rawAdded.split(text) {
		if m.id >= 0 {
			e.add(m.id, m.a, m.b, withOffs)
			continue
		}
		n := normStr{s: text[m.a:m.b], base: m.a}
		if t.norm != nil {
			n = t.norm.normalize(n)
		}
		for _, m2 := range t.normAdd.split(n.s) {
			if m2.id >= 0 {
				a, b := n.origRange(m2.a, m2.b)
				e.add(m2.id, a, b, withOffs)
				continue
			}
			piece := n.sub(m2.a, m2.b)
			words = words[:0]
			if t.pre != nil {
				words = t.pre.split(words, piece)
			} else if piece.s != "" {
				words = append(words, piece)
			}
			for i := range words {
				w := &words[i]
				e.toks = t.model.tokenize(e.toks[:0], w.s)
				start := 0
				for _, tk := range e.toks {
					if withOffs {
						a, b := w.origRange(start, int(tk.end))
						e.add(int(tk.id), a, b, true)
					} else {
						e.ids = append(e.ids, int(tk.id))
					}
					start = int(tk.end)
				}
			}
		}
	}
	if addSpecial && t.post != nil {
		var out encoding
		for _, it := range t.post {
			if it.seq {
				out.ids = append(out.ids, e.ids...)
				out.offs = append(out.offs, e.offs...)
				continue
			}
			for _, id := range it.ids {
				out.add(id, 0, 0, withOffs)
			}
		}
		return out
	}
	return e
}

// Decode returns the text of ids, as tokenizers' decode does (no
// clean_up_tokenization_spaces). skipSpecial drops special added tokens.
// Unknown ids are skipped.
func (t *Tokenizer) Decode(ids []int, skipSpecial bool) string {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 || id >= len(t.idToTok) || t.idToTok[id] == "" {
			continue
		}
		if skipSpecial && t.special[id] {
			continue
		}
		toks = append(toks, t.idToTok[id])
	}
	if t.dec == nil {
		return strings.Join(toks, " ")
	}
	return strings.Join(t.dec.decodeChain(toks), "")
}

// addedMatcher finds added tokens in text: leftmost-longest matches, as
// tokenizers' aho-corasick with MatchKind::LeftmostLongest. It walks a byte
// trie from each position whose byte starts some token.
type addedMatcher struct {
	toks  []AddedToken
	nodes []trieNode
	first [256]bool
	// firstByte is the only first byte of all tokens, or -1.
	firstByte int
}

type trieNode struct {
	next map[byte]int32
	tok  int32 // index into toks, -1 if no token ends here
}

func newAddedMatcher(toks []AddedToken) *addedMatcher {
	m := &addedMatcher{toks: toks, nodes: []trieNode{{tok: -1}}, firstByte: -1}
	for i, a := range toks {
		n := int32(0)
		for k := 0; k < len(a.Content); k++ {
			c := a.Content[k]
			nx, ok := m.nodes[n].next[c]
			if !ok {
				if m.nodes[n].next == nil {
					m.nodes[n].next = map[byte]int32{}
				}
				nx = int32(len(m.nodes))
				m.nodes[n].next[c] = nx
				m.nodes = append(m.nodes, trieNode{tok: -1})
			}
			n = nx
		}
		if m.nodes[n].tok < 0 { // first of duplicates wins
			m.nodes[n].tok = int32(i)
		}
		m.first[a.Content[0]] = true
	}
	for b, ok := range m.first {
		if !ok {
			continue
		}
		if m.firstByte == -1 {
			m.firstByte = b
		} else {
			m.firstByte = -2
		}
	}
	return m
}

// longest returns the longest token at s[i:], or -1.
func (m *addedMatcher) longest(s string, i int) int {
	best := -1
	n := int32(0)
	for k := i; k < len(s); k++ {
		nx, ok := m.nodes[n].next[s[k]]
		if !ok {
			break
		}
		n = nx
		if t := m.nodes[n].tok; t >= 0 {
			best = int(t)
		}
	}
	return best
}

// nextStart returns the first index >= i whose byte starts a token, or len(s).
func (m *addedMatcher) nextStart(s string, i int) int {
	if m.firstByte >= 0 {
		k := strings.IndexByte(s[i:], byte(m.firstByte))
		if k < 0 {
			return len(s)
		}
		return i + k
	}
	for i < len(s) && !m.first[s[i]] {
		i++
	}
	return i
}

type span struct {
	a, b int
	id   int // -1: text to tokenize
}

// split cuts s into added tokens and the text between them.
func (m *addedMatcher) split(s string) []span {
	if len(m.toks) == 0 || s == "" {
		return []span{{0, len(s), -1}}
	}
	var out []span
	startOff := 0
	for i := 0; i < len(s); {
		if i = m.nextStart(s, i); i >= len(s) {
			break
		}
		best := m.longest(s, i)
		if best < 0 {
			i++
			continue
		}
		a := &m.toks[best]
		start, stop := i, i+len(a.Content)
		i = stop
		if start < startOff {
			continue
		}
		if a.SingleWord {
			if (start > 0 && endsWithWord(s[:start])) || (stop < len(s) && startsWithWord(s[stop:])) {
				continue
			}
		}
		if a.LStrip {
			k := start
			for k > 0 {
				r, w := utf8.DecodeLastRuneInString(s[:k])
				if !unicode.IsSpace(r) {
					break
				}
				k -= w
			}
			start = max(k, startOff)
		}
		if a.RStrip {
			for stop < len(s) {
				r, w := utf8.DecodeRuneInString(s[stop:])
				if !unicode.IsSpace(r) {
					break
				}
				stop += w
			}
			i = stop
		}
		if startOff < start {
			out = append(out, span{startOff, start, -1})
		}
		out = append(out, span{start, stop, a.ID})
		startOff = stop
	}
	if startOff < len(s) {
		out = append(out, span{startOff, len(s), -1})
	}
	return out
}

func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || unicode.Is(unicode.Pc, r) ||
		unicode.Is(unicode.Nl, r) || r == 0x200C || r == 0x200D
}

func endsWithWord(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return isWordRune(r)
}

func startsWithWord(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return isWordRune(r)
}
