package tokenizer

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"golang.org/x/text/unicode/norm"
)

// Pre-tokenizer regexes with a hand-written matcher (Go's regexp has no
// look-ahead).
const (
	patLlama3 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patQwen2  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patGPT2   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
)

type typed struct {
	Type string `json:"type"`
}

func isNull(b json.RawMessage) bool {
	s := strings.TrimSpace(string(b))
	return s == "" || s == "null"
}

type pattern struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

func parseNormalizer(b json.RawMessage) (normalizer, error) {
	if isNull(b) {
		return nil, nil
	}
	var v struct {
		typed
		Normalizers []json.RawMessage `json:"normalizers"`
		Prepend     string            `json:"prepend"`
		Pattern     pattern           `json:"pattern"`
		Content     string            `json:"content"`
		StripLeft   bool              `json:"strip_left"`
		StripRight  bool              `json:"strip_right"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	switch v.Type {
	case "Sequence":
		var q normSequence
		for _, x := range v.Normalizers {
			n, err := parseNormalizer(x)
			if err != nil {
				return nil, err
			}
			if n != nil {
				q = append(q, n)
			}
		}
		return q, nil
	case "Prepend":
		return normPrepend{v.Prepend}, nil
	case "Replace":
		switch {
		case v.Pattern.String != nil:
			return normReplace{lit: *v.Pattern.String, content: v.Content}, nil
		case v.Pattern.Regex != nil:
			re, err := compileOnig(*v.Pattern.Regex)
			if err != nil {
				return nil, err
			}
			return normReplace{re: re, content: v.Content}, nil
		}
		return nil, fmt.Errorf("Replace without pattern: %w", ErrFormat)
	case "Lowercase":
		return normMapRunes{lowerRune}, nil
	case "Strip":
		return normStrip{v.StripLeft, v.StripRight}, nil
	case "NFC":
		return normUnicode{norm.NFC}, nil
	case "NFD":
		return normUnicode{norm.NFD}, nil
	case "NFKC":
		return normUnicode{norm.NFKC}, nil
	case "NFKD":
		return normUnicode{norm.NFKD}, nil
	}
	return nil, fmt.Errorf("normalizer %q: %w", v.Type, ErrUnsupported)
}

// parsePreTokenizer also reports whether the pipeline is byte-level.
func parsePreTokenizer(b json.RawMessage) (preTokenizer, bool, error) {
	if isNull(b) {
		return nil, false, nil
	}
	var v struct {
		typed
		PreTokenizers    []json.RawMessage `json:"pretokenizers"`
		Pattern          pattern           `json:"pattern"`
		Behavior         string            `json:"behavior"`
		Invert           bool              `json:"invert"`
		AddPrefixSpace   *bool             `json:"add_prefix_space"`
		UseRegex         *bool             `json:"use_regex"`
		Replacement      string            `json:"replacement"`
		PrependScheme    string            `json:"prepend_scheme"`
		Split            *bool             `json:"split"`
		IndividualDigits bool              `json:"individual_digits"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	switch v.Type {
	case "Sequence":
		var q preSequence
		byteLevel := false
		for _, x := range v.PreTokenizers {
			p, bl, err := parsePreTokenizer(x)
			if err != nil {
				return nil, false, err
			}
			if byteLevel && p != nil {
				return nil, false, fmt.Errorf("pre-tokenizer after ByteLevel: %w", ErrUnsupported)
			}
			byteLevel = byteLevel || bl
			if p != nil {
				q = append(q, p)
			}
		}
		switch len(q) {
		case 0:
			return nil, byteLevel, nil
		case 1:
			return q[0], byteLevel, nil
		}
		return q, byteLevel, nil
	case "Split":
		beh, ok := behaviors[v.Behavior]
		if !ok {
			return nil, false, fmt.Errorf("Split behavior %q: %w", v.Behavior, ErrFormat)
		}
		p := &preSplit{beh: beh, invert: v.Invert}
		switch {
		case v.Pattern.String != nil:
			p.lit = *v.Pattern.String
		case v.Pattern.Regex != nil:
			switch *v.Pattern.Regex {
			case patLlama3:
				p.fast = func(s string, emit func(a, b int)) { splitLlama3(s, 3, emit) }
			case patQwen2:
				p.fast = func(s string, emit func(a, b int)) { splitLlama3(s, 1, emit) }
			case patGPT2:
				p.fast = splitGPT2
			default:
				re, spaceLookahead, err := compileSplitRegex(*v.Pattern.Regex)
				if err != nil {
					return nil, false, err
				}
				p.re, p.spaceLookahead = re, spaceLookahead
			}
		default:
			return nil, false, fmt.Errorf("Split without pattern: %w", ErrFormat)
		}
		return p, false, nil
	case "ByteLevel":
		p := &preByteLevel{useRegex: true}
		if v.AddPrefixSpace != nil {
			p.addPrefixSpace = *v.AddPrefixSpace
		}
		if v.UseRegex != nil {
			p.useRegex = *v.UseRegex
		}
		if !p.addPrefixSpace && !p.useRegex {
			return nil, true, nil
		}
		return p, true, nil
	case "Metaspace":
		p := &preMetaspace{repl: v.Replacement, prepend: metaspacePrepend(v.PrependScheme, v.AddPrefixSpace), doSplit: true}
		if p.repl == "" {
			p.repl = "▁"
		}
		if v.Split != nil {
			p.doSplit = *v.Split
		}
		return p, false, nil
	case "Digits":
		return &preDigits{v.IndividualDigits}, false, nil
	case "WhitespaceSplit":
		return preWhitespaceSplit{}, false, nil
	}
	return nil, false, fmt.Errorf("pre-tokenizer %q: %w", v.Type, ErrUnsupported)
}

func metaspacePrepend(scheme string, addPrefixSpace *bool) string {
	switch scheme {
	case "always", "first", "never":
		return scheme
	}
	if addPrefixSpace != nil && !*addPrefixSpace {
		return "never"
	}
	return "always"
}

// spaceTail is the whitespace ending of the GPT-2 family of pre-tokenizer
// regexes (GPT-2, cl100k, o200k, Llama 3, Qwen): a whitespace run followed by
// a non-space leaves its last character to the next piece.
const spaceTail = `|\s+(?!\S)|\s+`

// compileSplitRegex compiles a Split pattern. A pattern that ends with
// spaceTail (the only look-ahead these patterns use) is compiled without its
// look-ahead alternative, and spaceLookahead tells the caller to apply it to
// the matches (see findSplits).
func compileSplitRegex(p string) (re *regexp.Regexp, spaceLookahead bool, err error) {
	if base, ok := strings.CutSuffix(p, spaceTail); ok {
		// The last group marks matches of the final \s+.
		re, err = compileOnig(base + `|(\s+)`)
		return re, true, err
	}
	re, err = compileOnig(p)
	return re, false, err
}

// compileOnig compiles an Oniguruma pattern without look-around with Go's
// regexp, translating the Unicode-aware escapes \s \d \w (ASCII-only in RE2).
// Go's regexp picks the match a backtracking engine picks (leftmost-first).
func compileOnig(p string) (*regexp.Regexp, error) {
	for _, la := range []string{"(?=", "(?!", "(?<=", "(?<!", "(?>", "\\G", "\\K"} {
		if strings.Contains(p, la) {
			return nil, fmt.Errorf("regex %q: look-around: %w", p, ErrUnsupported)
		}
	}
	const ws = `\t\n\v\f\r\x{85}\p{Z}`
	const wd = `\p{L}\p{M}\p{Nd}\p{Pc}`
	var b strings.Builder
	inClass := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '\\' && i+1 < len(p) {
			e := p[i+1]
			i++
			switch {
			case e == 's' && inClass:
				b.WriteString(ws)
			case e == 's':
				b.WriteString("[" + ws + "]")
			case e == 'S' && !inClass:
				b.WriteString("[^" + ws + "]")
			case e == 'd' && inClass:
				b.WriteString(`\p{Nd}`)
			case e == 'd':
				b.WriteString(`\p{Nd}`)
			case e == 'D' && !inClass:
				b.WriteString(`\P{Nd}`)
			case e == 'w' && inClass:
				b.WriteString(wd)
			case e == 'w':
				b.WriteString("[" + wd + "]")
			case e == 'W' && !inClass:
				b.WriteString("[^" + wd + "]")
			case e == 'S' || e == 'D' || e == 'W':
				return nil, fmt.Errorf("regex %q: \\%c in a class: %w", p, e, ErrUnsupported)
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
			}
			continue
		}
		switch c {
		case '[':
			inClass = true
		case ']':
			inClass = false
		}
		b.WriteByte(c)
	}
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("regex %q: %w: %v", p, ErrUnsupported, err)
	}
	return re, nil
}

// modelJSON is tokenizer.json "model"; vocab and merges are scanned by hand.
type modelJSON struct {
	typed
	Vocab        json.RawMessage `json:"vocab"`
	Merges       json.RawMessage `json:"merges"`
	UnkToken     *string         `json:"unk_token"`
	FuseUnk      bool            `json:"fuse_unk"`
	ByteFallback bool            `json:"byte_fallback"`
	IgnoreMerges bool            `json:"ignore_merges"`
	Prefix       *string         `json:"continuing_subword_prefix"`
	Suffix       *string         `json:"end_of_word_suffix"`
}

func parseModel(v *modelJSON, byteLevel bool) (*bpe, error) {
	if v == nil {
		return nil, fmt.Errorf("missing: %w", ErrFormat)
	}
	if v.Type != "BPE" && !(v.Type == "" && v.Merges != nil) {
		return nil, fmt.Errorf("model %q: %w", v.Type, ErrUnsupported)
	}
	m := &bpe{
		vocab:        make(map[string]int32, len(v.Vocab)/16),
		merges:       make(map[uint64]mergeVal, len(v.Merges)/16),
		byteLevel:    byteLevel,
		unk:          -1,
		fuseUnk:      v.FuseUnk,
		byteFallback: v.ByteFallback,
		ignoreMerges: v.IgnoreMerges,
		cache:        map[string][]tok{},
	}
	if v.Prefix != nil {
		m.prefix = *v.Prefix
	}
	if v.Suffix != nil {
		m.suffix = *v.Suffix
	}
	err := scanVocab(v.Vocab, func(s string, id int) error {
		if id < 0 || id >= maxVocab || len(s) > maxTokenLen || len(m.vocab) >= maxVocab {
			return fmt.Errorf("token %q id %d: %w", s, id, ErrFormat)
		}
		m.vocab[s] = int32(id)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if v.UnkToken != nil {
		id, ok := m.vocab[*v.UnkToken]
		if !ok {
			return nil, fmt.Errorf("unk_token %q not in vocab: %w", *v.UnkToken, ErrFormat)
		}
		m.unk = id
	}
	m.hasFallback = true
	for i := range 256 {
		id, ok := m.vocab[fallbackName(byte(i))]
		m.fallbackIDs[i] = id
		m.hasFallback = m.hasFallback && ok
	}
	for c := range m.asciiIDs {
		id, ok := m.vocab[string(rune(c))]
		if !ok {
			id = -1
		}
		m.asciiIDs[c] = id
	}
	if byteLevel {
		m.rawVocab = make(map[string]int32, len(m.vocab))
		var buf []byte
		for s, id := range m.vocab {
			var ok bool
			if buf, ok = byteLevelDecode(buf[:0], s); ok {
				m.rawVocab[string(buf)] = id
			}
		}
		for i := range 256 {
			id, ok := m.vocab[byteToStr[i]]
			if !ok {
				id = -1
			}
			m.byteIDs[i] = id
		}
	}
	var cat []byte
	err = scanMerges(v.Merges, func(i int, a, c string) error {
		if i >= maxMerges {
			return fmt.Errorf("%d merges: %w", i, ErrFormat)
		}
		ia, ok1 := m.vocab[a]
		ic, ok2 := m.vocab[c]
		cat = append(append(cat[:0], a...), c...)
		nw, ok3 := m.vocab[string(cat)]
		if !ok1 || !ok2 || !ok3 {
			return fmt.Errorf("merge %d %q %q: token not in vocab: %w", i, a, c, ErrFormat)
		}
		// A repeated pair takes its last rank, as tokenizers' HashMap collect does.
		m.merges[pairKey(ia, ic)] = mergeVal{uint32(i), nw}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func parseDecoder(b json.RawMessage) (decoder, error) {
	if isNull(b) {
		return nil, nil
	}
	var v struct {
		typed
		Decoders       []json.RawMessage `json:"decoders"`
		Pattern        pattern           `json:"pattern"`
		Content        string            `json:"content"`
		Start          int               `json:"start"`
		Stop           int               `json:"stop"`
		Replacement    string            `json:"replacement"`
		PrependScheme  string            `json:"prepend_scheme"`
		AddPrefixSpace *bool             `json:"add_prefix_space"`
		Suffix         *string           `json:"suffix"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	switch v.Type {
	case "Sequence":
		var q decSequence
		for _, x := range v.Decoders {
			d, err := parseDecoder(x)
			if err != nil {
				return nil, err
			}
			if d != nil {
				q = append(q, d)
			}
		}
		return q, nil
	case "ByteLevel":
		return decByteLevel{}, nil
	case "Replace":
		if v.Pattern.String == nil {
			return nil, fmt.Errorf("Replace decoder with a regex: %w", ErrUnsupported)
		}
		return decReplace{*v.Pattern.String, v.Content}, nil
	case "ByteFallback":
		return decByteFallback{}, nil
	case "Fuse":
		return decFuse{}, nil
	case "Strip":
		if v.Start < 0 || v.Stop < 0 || v.Start > maxTokenLen || v.Stop > maxTokenLen {
			return nil, fmt.Errorf("Strip %d %d: %w", v.Start, v.Stop, ErrFormat)
		}
		return decStrip{v.Content, v.Start, v.Stop}, nil
	case "Metaspace":
		repl := v.Replacement
		if repl == "" {
			repl = "▁"
		}
		return decMetaspace{repl: repl, stripFirst: metaspacePrepend(v.PrependScheme, v.AddPrefixSpace) != "never"}, nil
	case "BPEDecoder":
		suf := "</w>"
		if v.Suffix != nil {
			suf = *v.Suffix
		}
		return decBPE{suf}, nil
	}
	return nil, fmt.Errorf("decoder %q: %w", v.Type, ErrUnsupported)
}

// postItem is one element of the single-sequence template: the sequence
// itself or special token ids.
type postItem struct {
	seq bool
	ids []int
}

func parsePostProcessor(b json.RawMessage, t *Tokenizer) ([]postItem, error) {
	if isNull(b) {
		return nil, nil
	}
	var v struct {
		typed
		Processors []json.RawMessage `json:"processors"`
		Single     []struct {
			SpecialToken *struct {
				ID string `json:"id"`
			} `json:"SpecialToken"`
			Sequence *struct {
				ID string `json:"id"`
			} `json:"Sequence"`
		} `json:"single"`
		SpecialTokens map[string]struct {
			IDs []int `json:"ids"`
		} `json:"special_tokens"`
		Sep [2]json.RawMessage `json:"sep"`
		Cls [2]json.RawMessage `json:"cls"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFormat, err)
	}
	checkID := func(id int) error {
		if id < 0 || id >= len(t.idToTok) {
			return fmt.Errorf("special id %d: %w", id, ErrFormat)
		}
		return nil
	}
	switch v.Type {
	case "Sequence":
		var out []postItem
		for _, x := range v.Processors {
			p, err := parsePostProcessor(x, t)
			if err != nil {
				return nil, err
			}
			if p != nil {
				if out != nil {
					return nil, fmt.Errorf("two templates in a Sequence: %w", ErrUnsupported)
				}
				out = p
			}
		}
		return out, nil
	case "ByteLevel":
		return nil, nil // offsets only
	case "TemplateProcessing":
		var out []postItem
		for _, it := range v.Single {
			switch {
			case it.Sequence != nil:
				out = append(out, postItem{seq: true})
			case it.SpecialToken != nil:
				st, ok := v.SpecialTokens[it.SpecialToken.ID]
				if !ok {
					return nil, fmt.Errorf("special token %q: %w", it.SpecialToken.ID, ErrFormat)
				}
				for _, id := range st.IDs {
					if err := checkID(id); err != nil {
						return nil, err
					}
				}
				out = append(out, postItem{ids: st.IDs})
			}
		}
		return out, nil
	case "RobertaProcessing", "BertProcessing":
		var sep, cls int
		if err := json.Unmarshal(v.Sep[1], &sep); err != nil {
			return nil, fmt.Errorf("sep: %w", ErrFormat)
		}
		if err := json.Unmarshal(v.Cls[1], &cls); err != nil {
			return nil, fmt.Errorf("cls: %w", ErrFormat)
		}
		if checkID(sep) != nil || checkID(cls) != nil {
			return nil, fmt.Errorf("cls/sep: %w", ErrFormat)
		}
		return []postItem{{ids: []int{cls}}, {seq: true}, {ids: []int{sep}}}, nil
	}
	return nil, fmt.Errorf("post-processor %q: %w", v.Type, ErrUnsupported)
}
