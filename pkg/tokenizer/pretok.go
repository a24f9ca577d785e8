package tokenizer

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// preTokenizer splits pieces of normalized text into words.
type preTokenizer interface {
	// split appends the words of n to dst.
	split(dst []normStr, n normStr) []normStr
}

type preSequence []preTokenizer

func (q preSequence) split(dst []normStr, n normStr) []normStr {
	cur := []normStr{n}
	for _, p := range q {
		var next []normStr
		for _, c := range cur {
			next = p.split(next, c)
		}
		cur = next
	}
	return append(dst, cur...)
}

// splitBehavior is tokenizers' SplitDelimiterBehavior.
type splitBehavior int

const (
	behRemoved splitBehavior = iota
	behIsolated
	behMergedWithPrevious
	behMergedWithNext
	behContiguous
)

var behaviors = map[string]splitBehavior{
	"Removed": behRemoved, "Isolated": behIsolated, "MergedWithPrevious": behMergedWithPrevious,
	"MergedWithNext": behMergedWithNext, "Contiguous": behContiguous,
}

type seg struct {
	a, b  int
	match bool
}

// applyBehavior turns matches (sorted, non-overlapping) over s into pieces.
func applyBehavior(dst []normStr, n normStr, matches [][2]int, beh splitBehavior, invert bool) []normStr {
	var segs []seg
	prev := 0
	for _, m := range matches {
		if m[0] > prev {
			segs = append(segs, seg{prev, m[0], invert})
		}
		if m[1] > m[0] {
			segs = append(segs, seg{m[0], m[1], !invert})
		}
		prev = m[1]
	}
	if prev < len(n.s) {
		segs = append(segs, seg{prev, len(n.s), invert})
	}
	var out []seg
	switch beh {
	case behIsolated:
		out = segs
	case behRemoved:
		for _, s := range segs {
			if !s.match {
				out = append(out, s)
			}
		}
	case behContiguous:
		prevMatch := false
		for i, s := range segs {
			if i > 0 && s.match == prevMatch {
				out[len(out)-1].b = s.b
			} else {
				out = append(out, s)
			}
			prevMatch = s.match
		}
	case behMergedWithPrevious:
		prevMatch := false
		for _, s := range segs {
			if s.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].b = s.b
			} else {
				out = append(out, s)
			}
			prevMatch = s.match
		}
	case behMergedWithNext:
		prevMatch := false
		for i := len(segs) - 1; i >= 0; i-- {
			s := segs[i]
			if s.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].a = s.a
			} else {
				out = append(out, s)
			}
			prevMatch = s.match
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	for _, s := range out {
		if s.b > s.a {
			dst = append(dst, n.sub(s.a, s.b))
		}
	}
	return dst
}

// preSplit is the Split pre-tokenizer.
type preSplit struct {
	// exactly one of: lit (String pattern), re (Go regexp), fast (hand-written)
	lit            string
	re             *regexp.Regexp
	spaceLookahead bool // re lacks the \s+(?!\S) alternative (see compileSplitRegex)
	fast           func(s string, emit func(a, b int))
	beh            splitBehavior
	invert         bool
}

// findSplits returns the matches of p.re in s. With spaceLookahead, a match
// of the final \s+ (the last group) of two or more characters followed by a
// non-space gives its last character back, as \s+(?!\S) would have matched
// without it: the next match starts there (" ?\p{L}+" takes it, say).
func (p *preSplit) findSplits(s string) [][2]int {
	var m [][2]int
	if !p.spaceLookahead {
		for _, x := range p.re.FindAllStringIndex(s, -1) {
			m = append(m, [2]int{x[0], x[1]})
		}
		return m
	}
	g := 2 * p.re.NumSubexp()
	for i := 0; i < len(s); {
		loc := p.re.FindStringSubmatchIndex(s[i:])
		if loc == nil {
			break
		}
		a, b := i+loc[0], i+loc[1]
		if b == a { // an empty match: move on one character
			_, w := utf8.DecodeRuneInString(s[a:])
			i = a + max(w, 1)
			continue
		}
		if loc[g] >= 0 && b < len(s) && !isSpaceAt(s, b) {
			if _, w := utf8.DecodeLastRuneInString(s[a:b]); b-w > a {
				b -= w
			}
		}
		m = append(m, [2]int{a, b})
		i = b
	}
	return m
}

func isSpaceAt(s string, i int) bool {
	r, _ := utf8.DecodeRuneInString(s[i:])
	return unicode.IsSpace(r)
}

func (p *preSplit) split(dst []normStr, n normStr) []normStr {
	if p.fast != nil && p.beh == behIsolated && !p.invert {
		// Fast path: the matches tile the input.
		p.fast(n.s, func(a, b int) { dst = append(dst, n.sub(a, b)) })
		return dst
	}
	var m [][2]int
	switch {
	case p.fast != nil:
		p.fast(n.s, func(a, b int) { m = append(m, [2]int{a, b}) })
	case p.re != nil:
		m = p.findSplits(n.s)
	case p.lit != "":
		for off := 0; ; {
			k := strings.Index(n.s[off:], p.lit)
			if k < 0 {
				break
			}
			m = append(m, [2]int{off + k, off + k + len(p.lit)})
			off += k + len(p.lit)
		}
	}
	return applyBehavior(dst, n, m, p.beh, p.invert)
}

// preByteLevel is the ByteLevel pre-tokenizer. The byte-to-rune mapping
// itself is done by the BPE model, which works on raw bytes.
type preByteLevel struct {
	addPrefixSpace bool
	useRegex       bool
}

func (p *preByteLevel) split(dst []normStr, n normStr) []normStr {
	if p.addPrefixSpace && !strings.HasPrefix(n.s, " ") {
		n = normPrepend{" "}.normalize(n)
	}
	if !p.useRegex {
		return append(dst, n)
	}
	splitGPT2(n.s, func(a, b int) { dst = append(dst, n.sub(a, b)) })
	return dst
}

// preMetaspace replaces spaces with the replacement rune, optionally prepends
// it, and optionally splits before each replacement.
type preMetaspace struct {
	repl    string
	prepend string // "always", "first", "never"
	doSplit bool
}

func (p *preMetaspace) split(dst []normStr, n normStr) []normStr {
	n = normReplace{lit: " ", content: p.repl}.normalize(n)
	if !strings.HasPrefix(n.s, p.repl) && n.s != "" {
		first := false
		if p.prepend == "first" {
			a, _ := n.span(0)
			first = a == 0
		}
		if p.prepend == "always" || first {
			n = normPrepend{p.repl}.normalize(n)
		}
	}
	if !p.doSplit {
		return append(dst, n)
	}
	var m [][2]int
	for off := 0; ; {
		k := strings.Index(n.s[off:], p.repl)
		if k < 0 {
			break
		}
		m = append(m, [2]int{off + k, off + k + len(p.repl)})
		off += k + len(p.repl)
	}
	return applyBehavior(dst, n, m, behMergedWithNext, false)
}

// preDigits isolates digits, one by one or in runs.
type preDigits struct{ individual bool }

func (p *preDigits) split(dst []normStr, n normStr) []normStr {
	var m [][2]int
	for i := 0; i < len(n.s); {
		r, w := utf8.DecodeRuneInString(n.s[i:])
		if unicode.IsNumber(r) {
			m = append(m, [2]int{i, i + w})
		}
		i += w
	}
	beh := behContiguous
	if p.individual {
		beh = behIsolated
	}
	return applyBehavior(dst, n, m, beh, false)
}

// preWhitespaceSplit splits on Unicode whitespace, removing it.
type preWhitespaceSplit struct{}

func (preWhitespaceSplit) split(dst []normStr, n normStr) []normStr {
	var m [][2]int
	for i := 0; i < len(n.s); {
		r, w := utf8.DecodeRuneInString(n.s[i:])
		if unicode.IsSpace(r) {
			m = append(m, [2]int{i, i + w})
		}
		i += w
	}
	return applyBehavior(dst, n, m, behRemoved, false)
}
