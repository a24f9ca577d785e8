package export

// This file is the one place that reads tokenizer.json and tokenizer_config.json. It
// extracts only what GGUF stores (spec §3.6): the vocabulary in id order, merges, token
// types, special ids and flags, the pre-tokenizer name and the chat template. It can be
// replaced by accessors of pkg/tokenizer once that package exposes merges and the
// pre-tokenizer regex.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/lorakit/lorakit/pkg/gguf"
)

// Token types of tokenizer.ggml.token_type (llama_token_type).
const (
	TokenNormal      int32 = 1
	TokenUnknown     int32 = 2
	TokenControl     int32 = 3
	TokenUserDefined int32 = 4
	TokenUnused      int32 = 5
	TokenByte        int32 = 6
)

// Tokenizer models written to tokenizer.ggml.model.
const (
	TokenizerGPT2    = "gpt2"     // byte-level BPE (Llama 3, Qwen2/2.5/3)
	TokenizerLlama   = "llama"    // SentencePiece-style BPE with byte fallback (Llama 2, Mistral, Phi-3, Gemma 3)
	TokenizerNoVocab = "no_vocab" // no vocabulary: token ids only
)

// Limits on tokenizer files.
const (
	// MaxVocab bounds the number of tokens (and of merges).
	MaxVocab = 1 << 22
	// MaxTokenBytes bounds the length of one token string.
	MaxTokenBytes = 1 << 16
)

// preDigests maps the SHA-256 of the concatenated Split regexes of a tokenizer.json
// pre-tokenizer to llama.cpp's pre-tokenizer name (ollama's method, spec §3.6). A
// SentencePiece-style tokenizer needs none: llama.cpp's "llama" model has no
// pre-tokenizer, and add_space_prefix says whether text starts with "▁" (true for
// Llama 2, false for Gemma 3, whose normalizer only replaces spaces).
var preDigests = map[string]string{
	"d98f9631be1e9607a9848c26c1f9eac1aa9fc21ac6ba82a2fc0741af9780a48f": "llama-bpe", // Llama 3
	"1ff7f41064896984db5d1bb6ff64fa4bc29007d08c1b439e505b7392777a319e": "qwen2",     // Qwen2, Qwen2.5, Qwen3: digits one by one
}

// specialTypes are the special tokens GGUF records, in SpecialVocab's order, with
// their GGUF key (the "seperator" misspelling is the real key).
var specialTypes = []struct{ typ, key string }{
	{"bos", "tokenizer.ggml.bos_token_id"},
	{"eos", "tokenizer.ggml.eos_token_id"},
	{"unk", "tokenizer.ggml.unknown_token_id"},
	{"sep", "tokenizer.ggml.seperator_token_id"},
	{"pad", "tokenizer.ggml.padding_token_id"},
	{"cls", "tokenizer.ggml.cls_token_id"},
	{"mask", "tokenizer.ggml.mask_token_id"},
}

// Vocab is the tokenizer metadata of a GGUF model.
type Vocab struct {
	Model  string   // TokenizerGPT2, TokenizerLlama or TokenizerNoVocab
	Pre    string   // tokenizer.ggml.pre ("" = not written)
	Tokens []string // one per id; nil for no_vocab
	Types  []int32
	Scores []float32 // llama model only
	Merges []string  // gpt2 model only
	// Special maps "bos", "eos", "unk", "sep", "pad", "cls", "mask" to token ids.
	Special        map[string]int
	AddBOS, AddEOS *bool
	AddSpacePrefix *bool
	ChatTemplate   string
	// NamedTemplates are the non-default entries of a list-valued chat_template.
	NamedTemplates []NamedTemplate
	Size           int      // number of tokens (llama.vocab_size)
	Minimal        bool     // the 256-byte vocabulary made for a checkpoint without tokenizer files
	Warnings       []string // non-fatal findings
}

// NamedTemplate is one entry of a list-valued chat_template.
type NamedTemplate struct{ Name, Template string }

type addedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	Special    bool   `json:"special"`
	Normalized bool   `json:"normalized"`
	RStrip     bool   `json:"rstrip"`
}

type tokenizerJSON struct {
	AddedTokens   []addedToken    `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         struct {
		Type         string          `json:"type"`
		Vocab        json.RawMessage `json:"vocab"`
		Merges       json.RawMessage `json:"merges"`
		ByteFallback bool            `json:"byte_fallback"`
		UnkToken     *string         `json:"unk_token"`
	} `json:"model"`
}

// TokenCount is the number of token ids tokenizer.json defines (its largest id + 1,
// over model.vocab and added_tokens); ok is false without a readable tokenizer.json.
// It is what convert_hf_to_gguf.py keeps of a padded embedding (Gemma 3).
func TokenCount(files map[string][]byte) (int, bool) {
	var t tokenizerJSON
	if json.Unmarshal(files["tokenizer.json"], &t) != nil {
		return 0, false
	}
	var vocab map[string]int
	if json.Unmarshal(t.Model.Vocab, &vocab) != nil {
		return 0, false
	}
	n := 0
	for _, id := range vocab {
		n = max(n, id+1)
	}
	for _, a := range t.AddedTokens {
		n = max(n, a.ID+1)
	}
	return n, n > 0
}

// ReadVocab builds the tokenizer metadata from the carried files of a checkpoint
// (tokenizer.json, tokenizer_config.json, chat_template.jinja, config.json) for a model
// with n token embeddings. pre overrides the pre-tokenizer name of a byte-level BPE
// tokenizer. Without tokenizer.json it returns the minimal byte vocabulary (n ≥ 256) or
// a no_vocab vocabulary (n < 256), with a warning.
func ReadVocab(files map[string][]byte, n int, pre string) (*Vocab, error) {
	if n <= 0 || n > MaxVocab {
		return nil, fmt.Errorf("%w: vocabulary of %d tokens", ErrInvalid, n)
	}
	tj, ok := files["tokenizer.json"]
	if !ok {
		v := MinimalVocab(n)
		if _, sp := files["tokenizer.model"]; sp {
			v.Warnings = append(v.Warnings, "tokenizer.model (SentencePiece) without tokenizer.json is not read")
		}
		v.specialFromConfig(files["config.json"])
		return v, nil
	}
	var t tokenizerJSON
	if err := json.Unmarshal(tj, &t); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w: %v", ErrInvalid, err)
	}
	var tc map[string]json.RawMessage
	if b, ok := files["tokenizer_config.json"]; ok {
		if err := json.Unmarshal(b, &tc); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: %w: %v", ErrInvalid, err)
		}
	}
	v := &Vocab{Size: n, Special: map[string]int{}}
	typ := t.Model.Type
	if typ == "" && len(t.Model.Merges) > 0 {
		typ = "BPE"
	}
	if typ != "BPE" {
		return nil, fmt.Errorf("tokenizer.json: %w: model type %q (only BPE tokenizers map to GGUF here)", ErrUnsupported, t.Model.Type)
	}
	switch {
	case t.Model.ByteFallback:
		v.Model = TokenizerLlama
		v.Pre = "default"
	case containsType(t.PreTokenizer, "ByteLevel"):
		v.Model = TokenizerGPT2
		if pre != "" {
			v.Pre = pre
		} else {
			digest := splitRegexDigest(t.PreTokenizer)
			name, ok := preDigests[digest]
			if !ok {
				return nil, fmt.Errorf("tokenizer.json: %w: pre-tokenizer regex digest %s; name llama.cpp's pre-tokenizer with --pre (e.g. llama-bpe)", ErrPreTokenizer, digest)
			}
			v.Pre = name
		}
	default:
		return nil, fmt.Errorf("tokenizer.json: %w: BPE tokenizer that is neither byte-level nor byte-fallback", ErrUnsupported)
	}
	if pre != "" {
		v.Pre = pre
	}

	var vocab map[string]int
	if err := json.Unmarshal(t.Model.Vocab, &vocab); err != nil {
		return nil, fmt.Errorf("tokenizer.json: model.vocab: %w: %v", ErrInvalid, err)
	}
	if len(vocab) > MaxVocab || len(t.AddedTokens) > MaxVocab {
		return nil, fmt.Errorf("tokenizer.json: %w: %d tokens", ErrInvalid, len(vocab)+len(t.AddedTokens))
	}
	tokens := make([]string, n)
	have := make([]bool, n)
	for s, id := range vocab {
		if id < 0 || id >= n {
			return nil, fmt.Errorf("tokenizer.json: %w: token %q has id %d, but the model has %d token embeddings", ErrInvalid, s, id, n)
		}
		if have[id] {
			return nil, fmt.Errorf("tokenizer.json: %w: id %d used twice in model.vocab", ErrInvalid, id)
		}
		if len(s) > MaxTokenBytes {
			return nil, fmt.Errorf("tokenizer.json: %w: token %d is %d bytes long", ErrInvalid, id, len(s))
		}
		tokens[id], have[id] = s, true
	}
	types := make([]int32, n)
	for i := range types {
		types[i] = TokenNormal
	}
	special := map[int]bool{}
	for _, a := range t.AddedTokens {
		if a.ID < 0 || a.ID >= n {
			return nil, fmt.Errorf("tokenizer.json: %w: added token %q has id %d, but the model has %d token embeddings", ErrInvalid, a.Content, a.ID, n)
		}
		if len(a.Content) > MaxTokenBytes {
			return nil, fmt.Errorf("tokenizer.json: %w: added token %d is %d bytes long", ErrInvalid, a.ID, len(a.Content))
		}
		tokens[a.ID], have[a.ID] = a.Content, true
		if a.Special || looksSpecial(a.Content) {
			types[a.ID] = TokenControl
			special[a.ID] = true
		} else {
			types[a.ID] = TokenUserDefined
		}
	}
	if v.Model == TokenizerLlama {
		// llama.cpp's SentencePiece tokenizer merges the adjacent pair whose union has
		// the highest score. The BPE merges of a tokenizer.json converted from
		// SentencePiece are sorted by that score, so a token's score is minus the rank
		// of the first merge that makes it; tokens no merge makes rank below all.
		merges, err := readMerges(t.Model.Merges)
		if err != nil {
			return nil, err
		}
		rank := make(map[string]int, len(merges))
		for i, m := range merges {
			a, b, ok := strings.Cut(m, " ")
			if !ok {
				continue
			}
			if _, seen := rank[a+b]; !seen {
				rank[a+b] = i
			}
		}
		v.Scores = make([]float32, n)
		unk := ""
		if t.Model.UnkToken != nil {
			unk = *t.Model.UnkToken
		}
		for id := range tokens {
			switch {
			case !have[id]:
			case byteToken.MatchString(tokens[id]) && !special[id]:
				types[id] = TokenByte
			case tokens[id] == unk && unk != "":
				types[id] = TokenUnknown
			case types[id] == TokenNormal:
				if r, ok := rank[tokens[id]]; ok {
					v.Scores[id] = -float32(r)
				} else {
					v.Scores[id] = -float32(len(merges) + id)
				}
			}
		}
		v.AddSpacePrefix = boolPtr(prependsSpace(t.Normalizer, t.PreTokenizer))
		for _, a := range t.AddedTokens {
			if a.RStrip && a.Special {
				v.Warnings = append(v.Warnings, fmt.Sprintf("special tokens such as %q strip the whitespace after them (as Phi-3's do); "+
					"llama.cpp does so only for a model whose general.name contains \"phi3\" or \"phi-3\" (see --name)", a.Content))
				break
			}
		}
	}
	seen := make(map[string]int, n)
	dups := 0
	for id := range tokens {
		if !have[id] {
			tokens[id], types[id] = fmt.Sprintf("[PAD%d]", id), TokenUnused
		}
		if first, dup := seen[tokens[id]]; dup {
			// llama.cpp asserts token strings are unique.
			if dups == 0 {
				v.Warnings = append(v.Warnings, fmt.Sprintf("token %d repeats token %d (%q); renamed [PAD%d]", id, first, tokens[id], id))
			}
			dups++
			tokens[id], types[id] = fmt.Sprintf("[PAD%d]", id), TokenUnused
		}
		seen[tokens[id]] = id
	}
	if dups > 1 {
		v.Warnings = append(v.Warnings, fmt.Sprintf("%d duplicate token strings renamed in all", dups))
	}
	v.Tokens, v.Types = tokens, types

	if v.Model == TokenizerGPT2 {
		merges, err := readMerges(t.Model.Merges)
		if err != nil {
			return nil, err
		}
		if len(merges) == 0 {
			// llama.cpp needs the key for gpt2 ("cannot find tokenizer merges"); GGUF
			// writers refuse empty arrays.
			return nil, fmt.Errorf("tokenizer.json: %w: byte-level BPE without merges", ErrInvalid)
		}
		v.Merges = merges
	}

	// Special tokens: tokenizer_config.json <typ>_token looked up among the added tokens,
	// then config.json <typ>_token_id when a plain integer; the first value found wins.
	content := map[string]string{}
	for _, s := range specialTypes {
		c, ok := tokenContent(tc[s.typ+"_token"])
		if !ok {
			continue
		}
		content[s.typ] = c
		for _, a := range t.AddedTokens {
			if a.Content == c {
				v.setSpecial(s.typ, a.ID)
				break
			}
		}
	}
	v.specialFromConfig(files["config.json"])
	v.addFlagsFromPostProcessor(t.PostProcessor, content)
	for _, typ := range []string{"bos", "eos"} {
		if raw, ok := tc["add_"+typ+"_token"]; ok {
			var b bool
			if json.Unmarshal(raw, &b) == nil && (bytes.Equal(bytes.TrimSpace(raw), []byte("true")) || bytes.Equal(bytes.TrimSpace(raw), []byte("false"))) {
				if typ == "bos" {
					v.AddBOS = boolPtr(b)
				} else {
					v.AddEOS = boolPtr(b)
				}
			}
		}
	}
	if err := v.readChatTemplate(tc["chat_template"], files["chat_template.jinja"]); err != nil {
		return nil, err
	}
	return v, nil
}

// MinimalVocab returns the vocabulary written for a checkpoint without tokenizer files
// (spec §3.7, §8): model "llama" with the 256 byte tokens <0x00>…<0xFF> and [PAD<i>]
// up to n, enough for front ends that tokenize a test string on load. For n < 256 it
// returns a no_vocab vocabulary, which decodes token ids but cannot tokenize text.
func MinimalVocab(n int) *Vocab {
	v := &Vocab{Size: n, Special: map[string]int{}, Minimal: true}
	if n < 256 {
		v.Model = TokenizerNoVocab
		v.Warnings = append(v.Warnings, fmt.Sprintf("no tokenizer files and only %d token embeddings: writing a vocabulary-less file (llama.cpp decodes token ids; front ends that tokenize text abort)", n))
		return v
	}
	v.Model = TokenizerLlama
	v.Tokens = make([]string, n)
	v.Types = make([]int32, n)
	for i := range v.Tokens {
		if i < 256 {
			v.Tokens[i], v.Types[i] = fmt.Sprintf("<0x%02X>", i), TokenByte
		} else {
			v.Tokens[i], v.Types[i] = fmt.Sprintf("[PAD%d]", i), TokenUnused
		}
	}
	v.Warnings = append(v.Warnings, "no tokenizer files: writing a minimal byte vocabulary (<0x00>…<0xFF>); text tokenized by llama.cpp will not match the model's own tokenizer")
	return v
}

// NoVocab returns a vocabulary-less description of n tokens (tokenizer.ggml.model
// "no_vocab" and llama.vocab_size only).
func NoVocab(n int) *Vocab {
	return &Vocab{Model: TokenizerNoVocab, Size: n, Special: map[string]int{}}
}

var byteToken = regexp.MustCompile(`^<0x[0-9A-Fa-f]{2}>$`)

func boolPtr(b bool) *bool { return &b }

// looksSpecial is gguf-py's does_token_look_special.
func looksSpecial(s string) bool {
	switch s {
	case "<pad>", "<mask>", "<2mass>", "[@BOS@]":
		return true
	}
	return strings.HasPrefix(s, "<|") && strings.HasSuffix(s, "|>") && len(s) >= 4 ||
		strings.HasPrefix(s, "<｜") && strings.HasSuffix(s, "｜>") ||
		strings.HasPrefix(s, "<unused") && strings.HasSuffix(s, ">")
}

// tokenContent reads a tokenizer_config.json special token: a string or {"content": …}.
func tokenContent(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var o struct {
		Content *string `json:"content"`
	}
	if json.Unmarshal(raw, &o) == nil && o.Content != nil {
		return *o.Content, true
	}
	return "", false
}

func (v *Vocab) setSpecial(typ string, id int) {
	if _, done := v.Special[typ]; done {
		return
	}
	if id < 0 || id >= v.Size {
		v.Warnings = append(v.Warnings, fmt.Sprintf("%s token id %d is outside the vocabulary of %d; not written", typ, id, v.Size))
		return
	}
	v.Special[typ] = id
}

// specialFromConfig takes <typ>_token_id from config.json where it is a plain integer.
func (v *Vocab) specialFromConfig(cfg []byte) {
	if v.Model == TokenizerNoVocab || len(cfg) == 0 {
		return
	}
	var c map[string]json.RawMessage
	if json.Unmarshal(cfg, &c) != nil {
		return
	}
	for _, s := range specialTypes {
		raw := bytes.TrimSpace(c[s.typ+"_token_id"])
		if len(raw) == 0 || raw[0] == '[' || raw[0] == 'n' {
			continue
		}
		var id int
		if json.Unmarshal(raw, &id) == nil {
			v.setSpecial(s.typ, id)
		}
	}
}

// addFlagsFromPostProcessor sets add_bos/add_eos from a TemplateProcessing post-processor
// (possibly inside a Sequence), as gguf-py's SpecialVocab does; tokenizer_config.json's
// add_bos_token/add_eos_token override it.
func (v *Vocab) addFlagsFromPostProcessor(raw json.RawMessage, content map[string]string) {
	type item struct {
		SpecialToken *struct {
			ID string `json:"id"`
		} `json:"SpecialToken"`
	}
	type proc struct {
		Type       string            `json:"type"`
		Processors []json.RawMessage `json:"processors"`
		Single     []item            `json:"single"`
	}
	var p proc
	if len(raw) == 0 || json.Unmarshal(raw, &p) != nil {
		return
	}
	procs := []json.RawMessage{raw}
	if p.Type == "Sequence" {
		procs = p.Processors
	}
	for _, r := range procs {
		var q proc
		if json.Unmarshal(r, &q) != nil {
			continue
		}
		if q.Type == "RobertaProcessing" {
			v.AddBOS, v.AddEOS = boolPtr(true), boolPtr(true)
			return
		}
		if q.Type != "TemplateProcessing" {
			continue
		}
		if len(q.Single) > 1 {
			if st := q.Single[0].SpecialToken; st != nil {
				v.AddBOS = boolPtr(st.ID == content["bos"] || st.ID == content["cls"] || content["bos"] == "")
			}
			if st := q.Single[len(q.Single)-1].SpecialToken; st != nil {
				v.AddEOS = boolPtr(st.ID == content["eos"] || content["eos"] == "")
			}
		}
		return
	}
}

func (v *Vocab) readChatTemplate(raw json.RawMessage, jinja []byte) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		return json.Unmarshal(raw, &v.ChatTemplate)
	}
	if len(raw) > 0 && raw[0] == '[' {
		var list []struct {
			Name     string `json:"name"`
			Template string `json:"template"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			return fmt.Errorf("tokenizer_config.json: chat_template: %w: %v", ErrInvalid, err)
		}
		for _, e := range list {
			if e.Name == "default" {
				v.ChatTemplate = e.Template
			} else if validKeySegment(e.Name) {
				v.NamedTemplates = append(v.NamedTemplates, NamedTemplate{e.Name, e.Template})
			} else {
				v.Warnings = append(v.Warnings, fmt.Sprintf("chat template %q skipped: not a valid key segment", e.Name))
			}
		}
		return nil
	}
	if len(jinja) > 0 {
		v.ChatTemplate = string(jinja)
	}
	return nil
}

var keySegment = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func validKeySegment(s string) bool { return keySegment.MatchString(s) }

// containsType reports whether a normalizer/pre-tokenizer JSON value has, at any depth,
// an object of the given "type".
func containsType(raw json.RawMessage, typ string) bool {
	var v any
	if len(raw) == 0 || json.Unmarshal(raw, &v) != nil {
		return false
	}
	var walk func(any, int) bool
	walk = func(x any, depth int) bool {
		if depth > 16 {
			return false
		}
		switch x := x.(type) {
		case map[string]any:
			if t, _ := x["type"].(string); t == typ {
				return true
			}
			for _, c := range x {
				if walk(c, depth+1) {
					return true
				}
			}
		case []any:
			for _, c := range x {
				if walk(c, depth+1) {
					return true
				}
			}
		}
		return false
	}
	return walk(v, 0)
}

// prependsSpace reports whether a SentencePiece-style tokenizer adds "▁" before the
// text: a Prepend normalizer, or a Metaspace pre-tokenizer with a prepend scheme other
// than "never" (legacy add_prefix_space true).
func prependsSpace(normalizer, pre json.RawMessage) bool {
	if containsType(normalizer, "Prepend") {
		return true
	}
	var found, prepend bool
	var v any
	if json.Unmarshal(pre, &v) == nil {
		var walk func(any, int)
		walk = func(x any, depth int) {
			if depth > 16 {
				return
			}
			switch x := x.(type) {
			case map[string]any:
				if t, _ := x["type"].(string); t == "Metaspace" {
					found = true
					scheme, _ := x["prepend_scheme"].(string)
					add, hasAdd := x["add_prefix_space"].(bool)
					prepend = scheme == "always" || scheme == "first" || (scheme == "" && (!hasAdd || add))
				}
				for _, c := range x {
					walk(c, depth+1)
				}
			case []any:
				for _, c := range x {
					walk(c, depth+1)
				}
			}
		}
		walk(v, 0)
	}
	return found && prepend
}

// splitRegexDigest concatenates the Regex patterns of the Split pre-tokenizers (the
// pre-tokenizer itself or the entries of a Sequence) and returns their SHA-256 in hex.
func splitRegexDigest(raw json.RawMessage) string {
	type split struct {
		Type    string `json:"type"`
		Pattern struct {
			Regex *string `json:"Regex"`
		} `json:"pattern"`
		Pretokenizers []json.RawMessage `json:"pretokenizers"`
	}
	var top split
	var sb strings.Builder
	if json.Unmarshal(raw, &top) == nil {
		entries := []json.RawMessage{raw}
		if top.Type == "Sequence" {
			entries = top.Pretokenizers
		}
		for _, e := range entries {
			var s split
			if json.Unmarshal(e, &s) == nil && s.Type == "Split" && s.Pattern.Regex != nil {
				sb.WriteString(*s.Pattern.Regex)
			}
		}
	}
	sum := sha256.Sum256([]byte(sb.String()))
	return hex.EncodeToString(sum[:])
}

// readMerges reads model.merges: "a b" strings, or [a, b] pairs (transformers ≥ 4.45),
// joined with one space after replacing spaces inside a part by U+0120.
func readMerges(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("tokenizer.json: model.merges: %w: %v", ErrInvalid, err)
	}
	if len(items) > MaxVocab {
		return nil, fmt.Errorf("tokenizer.json: model.merges: %w: %d merges", ErrInvalid, len(items))
	}
	out := make([]string, len(items))
	for i, it := range items {
		var s string
		if json.Unmarshal(it, &s) == nil {
			out[i] = s
			continue
		}
		var pair []string
		if err := json.Unmarshal(it, &pair); err != nil || len(pair) != 2 {
			return nil, fmt.Errorf("tokenizer.json: model.merges[%d]: %w: neither \"a b\" nor [a, b]", i, ErrInvalid)
		}
		out[i] = strings.ReplaceAll(pair[0], " ", "\u0120") + " " + strings.ReplaceAll(pair[1], " ", "\u0120")
	}
	return out, nil
}

// KVs returns the tokenizer.* metadata in the documented order: model, pre, tokens,
// scores, token_type, merges, special ids, add_* flags, chat templates.
func (v *Vocab) KVs() []gguf.KV {
	kvs := []gguf.KV{{Key: "tokenizer.ggml.model", Value: v.Model}}
	if v.Model == TokenizerNoVocab {
		return kvs
	}
	if v.Pre != "" {
		kvs = append(kvs, gguf.KV{Key: "tokenizer.ggml.pre", Value: v.Pre})
	}
	kvs = append(kvs, gguf.KV{Key: "tokenizer.ggml.tokens", Value: v.Tokens})
	if v.Scores != nil {
		kvs = append(kvs, gguf.KV{Key: "tokenizer.ggml.scores", Value: v.Scores})
	}
	kvs = append(kvs, gguf.KV{Key: "tokenizer.ggml.token_type", Value: v.Types})
	if len(v.Merges) > 0 {
		kvs = append(kvs, gguf.KV{Key: "tokenizer.ggml.merges", Value: v.Merges})
	}
	for _, s := range specialTypes {
		if id, ok := v.Special[s.typ]; ok {
			kvs = append(kvs, gguf.KV{Key: s.key, Value: uint32(id)})
		}
	}
	if v.AddBOS != nil {
		kvs = append(kvs, gguf.KV{Key: "tokenizer.ggml.add_bos_token", Value: *v.AddBOS})
	}
	if v.AddEOS != nil {
		kvs = append(kvs, gguf.KV{Key: "tokenizer.ggml.add_eos_token", Value: *v.AddEOS})
	}
	if v.AddSpacePrefix != nil {
		kvs = append(kvs, gguf.KV{Key: "tokenizer.ggml.add_space_prefix", Value: *v.AddSpacePrefix})
	}
	if v.ChatTemplate != "" {
		kvs = append(kvs, gguf.KV{Key: "tokenizer.chat_template", Value: v.ChatTemplate})
	}
	if len(v.NamedTemplates) > 0 {
		names := make([]string, len(v.NamedTemplates))
		for i, t := range v.NamedTemplates {
			names[i] = t.Name
			kvs = append(kvs, gguf.KV{Key: "tokenizer.chat_template." + t.Name, Value: t.Template})
		}
		kvs = append(kvs, gguf.KV{Key: "tokenizer.chat_templates", Value: names})
	}
	return kvs
}
