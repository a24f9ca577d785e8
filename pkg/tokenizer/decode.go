package tokenizer

import (
	"strings"
)

// decoder is one step of tokenizer.json's "decoder": it maps the list of
// token strings to a new list (decode_chain); the result is concatenated.
type decoder interface {
	decodeChain(toks []string) []string
}

type decSequence []decoder

func (q decSequence) decodeChain(t []string) []string {
	for _, d := range q {
		t = d.decodeChain(t)
	}
	return t
}

// decByteLevel maps byte-level runes back to bytes. A token with a rune
// outside the alphabet keeps its UTF-8 bytes. The bytes of all tokens are
// joined and decoded lossily, so one string comes out.
type decByteLevel struct{}

func (decByteLevel) decodeChain(t []string) []string {
	var buf []byte
	for _, s := range t {
		var ok bool
		if buf, ok = byteLevelDecode(buf, s); !ok {
			buf = append(buf, s...)
		}
	}
	return []string{utf8Lossy(buf)}
}

// decReplace replaces a literal in each token.
type decReplace struct{ old, new string }

func (d decReplace) decodeChain(t []string) []string {
	out := make([]string, len(t))
	for i, s := range t {
		out[i] = strings.ReplaceAll(s, d.old, d.new)
	}
	return out
}

// decByteFallback turns runs of <0xNN> tokens into the text they encode,
// or one U+FFFD per byte when the run is not valid UTF-8.
type decByteFallback struct{}

func parseFallback(s string) (byte, bool) {
	if len(s) != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>' {
		return 0, false
	}
	var v byte
	for _, c := range []byte(s[3:5]) {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | (c - '0')
		case c >= 'A' && c <= 'F':
			v = v<<4 | (c - 'A' + 10)
		case c >= 'a' && c <= 'f':
			v = v<<4 | (c - 'a' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}

func (decByteFallback) decodeChain(t []string) []string {
	var out []string
	var pend []byte
	flush := func() {
		if len(pend) == 0 {
			return
		}
		if s := string(pend); isValidUTF8(s) {
			out = append(out, s)
		} else {
			for range pend {
				out = append(out, "\uFFFD")
			}
		}
		pend = pend[:0]
	}
	for _, s := range t {
		if b, ok := parseFallback(s); ok {
			pend = append(pend, b)
			continue
		}
		flush()
		out = append(out, s)
	}
	flush()
	return out
}

// decFuse joins all tokens into one.
type decFuse struct{}

func (decFuse) decodeChain(t []string) []string { return []string{strings.Join(t, "")} }

// decStrip removes up to start leading and stop trailing occurrences of
// content from each token.
type decStrip struct {
	content     string
	start, stop int
}

func (d decStrip) decodeChain(t []string) []string {
	out := make([]string, len(t))
	for i, s := range t {
		for k := 0; k < d.start && strings.HasPrefix(s, d.content); k++ {
			s = s[len(d.content):]
		}
		for k := 0; k < d.stop && strings.HasSuffix(s, d.content); k++ {
			s = s[:len(s)-len(d.content)]
		}
		out[i] = s
	}
	return out
}

// decMetaspace replaces the replacement rune with spaces and drops the
// leading space of the first token when a prefix was prepended.
type decMetaspace struct {
	repl       string
	stripFirst bool
}

func (d decMetaspace) decodeChain(t []string) []string {
	out := make([]string, len(t))
	for i, s := range t {
		if i == 0 && d.stripFirst {
			// tokenizers drops every replacement rune of the first token.
			out[i] = strings.ReplaceAll(s, d.repl, "")
			continue
		}
		out[i] = strings.ReplaceAll(s, d.repl, " ")
	}
	return out
}

// decBPE is BPEDecoder: the end-of-word suffix becomes a space.
type decBPE struct{ suffix string }

func (d decBPE) decodeChain(t []string) []string {
	out := make([]string, len(t))
	for i, s := range t {
		rep := " "
		if i == len(t)-1 {
			rep = ""
		}
		out[i] = strings.ReplaceAll(s, d.suffix, rep)
	}
	return out
}
