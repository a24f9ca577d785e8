package tokenizer

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// normStr is a piece of text with, for each of its bytes, the range of the
// original input it came from. lo == nil means the identity mapping starting
// at base.
type normStr struct {
	s      string
	base   int
	lo, hi []int32
}

func (n *normStr) span(k int) (int, int) {
	if n.lo == nil {
		return n.base + k, n.base + k + 1
	}
	return int(n.lo[k]), int(n.hi[k])
}

// origRange maps the byte range [a, b) of n.s to the original input.
func (n *normStr) origRange(a, b int) (int, int) {
	if a >= b {
		if a < len(n.s) {
			x, _ := n.span(a)
			return x, x
		}
		if len(n.s) > 0 {
			_, y := n.span(len(n.s) - 1)
			return y, y
		}
		return n.base, n.base
	}
	x, _ := n.span(a)
	_, y := n.span(b - 1)
	return x, y
}

// sub returns the sub-piece n.s[a:b] with its alignment.
func (n *normStr) sub(a, b int) normStr {
	if n.lo == nil {
		return normStr{s: n.s[a:b], base: n.base + a}
	}
	return normStr{s: n.s[a:b], lo: n.lo[a:b], hi: n.hi[a:b]}
}

func (n *normStr) materialize() {
	if n.lo != nil {
		return
	}
	n.lo = make([]int32, len(n.s))
	n.hi = make([]int32, len(n.s))
	for k := range n.s {
		n.lo[k] = int32(n.base + k)
		n.hi[k] = int32(n.base + k + 1)
	}
}

// builder assembles a new normStr from pieces of an old one.
type builder struct {
	b      strings.Builder
	lo, hi []int32
}

func (w *builder) add(s string, lo, hi int) {
	w.b.WriteString(s)
	for range len(s) {
		w.lo = append(w.lo, int32(lo))
		w.hi = append(w.hi, int32(hi))
	}
}

// copyFrom appends n.s[a:b] keeping its alignment.
func (w *builder) copyFrom(n *normStr, a, b int) {
	w.b.WriteString(n.s[a:b])
	for k := a; k < b; k++ {
		x, y := n.span(k)
		w.lo = append(w.lo, int32(x))
		w.hi = append(w.hi, int32(y))
	}
}

func (w *builder) done() normStr {
	return normStr{s: w.b.String(), lo: w.lo, hi: w.hi}
}

// normalizer is one step of tokenizer.json's "normalizer".
type normalizer interface {
	normalize(n normStr) normStr
}

type normSequence []normalizer

func (q normSequence) normalize(n normStr) normStr {
	for _, x := range q {
		n = x.normalize(n)
	}
	return n
}

// normPrepend prepends a string to non-empty input; the new bytes align with
// the first original character.
type normPrepend struct{ prefix string }

func (p normPrepend) normalize(n normStr) normStr {
	if n.s == "" {
		return n
	}
	_, w := utf8.DecodeRuneInString(n.s)
	lo, _ := n.span(0)
	_, hi := n.span(w - 1)
	var b builder
	b.add(p.prefix, lo, hi)
	b.copyFrom(&n, 0, len(n.s))
	return b.done()
}

// normReplace replaces a literal string or regex matches with content.
type normReplace struct {
	lit     string
	re      *regexp.Regexp
	content string
}

func (p normReplace) normalize(n normStr) normStr {
	var idx [][]int
	if p.re != nil {
		idx = p.re.FindAllStringIndex(n.s, -1)
	} else if p.lit != "" {
		for off := 0; ; {
			k := strings.Index(n.s[off:], p.lit)
			if k < 0 {
				break
			}
			idx = append(idx, []int{off + k, off + k + len(p.lit)})
			off += k + len(p.lit)
		}
	}
	if len(idx) == 0 {
		return n
	}
	var b builder
	prev := 0
	for _, m := range idx {
		b.copyFrom(&n, prev, m[0])
		if m[1] > m[0] {
			lo, _ := n.span(m[0])
			_, hi := n.span(m[1] - 1)
			b.add(p.content, lo, hi)
		}
		prev = m[1]
	}
	b.copyFrom(&n, prev, len(n.s))
	return b.done()
}

// normMapRunes applies a rune-by-rune mapping (Lowercase).
type normMapRunes struct{ f func(rune) string }

func (p normMapRunes) normalize(n normStr) normStr {
	var b builder
	for i := 0; i < len(n.s); {
		r, w := utf8.DecodeRuneInString(n.s[i:])
		lo, _ := n.span(i)
		_, hi := n.span(i + w - 1)
		b.add(p.f(r), lo, hi)
		i += w
	}
	return b.done()
}

func lowerRune(r rune) string {
	if r == 'İ' { // Rust's to_lowercase: "i̇"
		return "i\u0307"
	}
	return string(unicode.ToLower(r))
}

// normStrip removes leading and/or trailing whitespace.
type normStrip struct{ left, right bool }

func (p normStrip) normalize(n normStr) normStr {
	a, b := 0, len(n.s)
	if p.left {
		for a < b {
			r, w := utf8.DecodeRuneInString(n.s[a:])
			if !unicode.IsSpace(r) {
				break
			}
			a += w
		}
	}
	if p.right {
		for b > a {
			r, w := utf8.DecodeLastRuneInString(n.s[a:b])
			if !unicode.IsSpace(r) {
				break
			}
			b -= w
		}
	}
	if a == 0 && b == len(n.s) {
		return n
	}
	return n.sub(a, b)
}

// normUnicode is one of the Unicode normalization forms (NFC, NFD, NFKC,
// NFKD). Each normalized segment (a starter and the marks that follow it)
// aligns with the input segment it comes from; unchanged text keeps its
// byte-by-byte alignment.
type normUnicode struct{ form norm.Form }

func (p normUnicode) normalize(n normStr) normStr {
	// (x/text's quick check can miss unnormalized text after invalid UTF-8.)
	if utf8.ValidString(n.s) && p.form.IsNormalString(n.s) {
		return n
	}
	var (
		b       builder
		it      norm.Iter
		pending []byte // output of segments that did not advance the input yet
	)
	it.InitString(p.form, n.s)
	for start := 0; !it.Done(); {
		pending = append(pending, it.Next()...)
		end := it.Pos()
		if end == start {
			continue // a long decomposition comes in several pieces
		}
		if string(pending) == n.s[start:end] {
			b.copyFrom(&n, start, end)
		} else {
			lo, _ := n.span(start)
			_, hi := n.span(end - 1)
			b.add(string(pending), lo, hi)
		}
		pending = pending[:0]
		start = end
	}
	return b.done()
}
