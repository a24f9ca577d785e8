package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// Character classes of the pre-tokenizer regexes: \p{L}, \p{N}, \s (Unicode
// White_Space, as Oniguruma's \s), and everything else.
const (
	clsOther uint8 = iota
	clsLetter
	clsNumber
	clsSpace
)

var asciiClass [utf8.RuneSelf]uint8

func init() {
	for r := rune(0); r < utf8.RuneSelf; r++ {
		asciiClass[r] = classOf(r)
	}
}

func classOf(r rune) uint8 {
	switch {
	case unicode.IsLetter(r):
		return clsLetter
	case unicode.IsNumber(r):
		return clsNumber
	case unicode.IsSpace(r):
		return clsSpace
	}
	return clsOther
}

// runeAt decodes the rune at s[i] with its class. Invalid UTF-8 yields
// U+FFFD (class other) of width 1.
func runeAt(s string, i int) (rune, int, uint8) {
	c := s[i]
	if c < utf8.RuneSelf {
		return rune(c), 1, asciiClass[c]
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	return r, w, classOf(r)
}

// runEnd returns the end of the run of runes of class cls starting at i.
func runEnd(s string, i int, cls uint8) int {
	for i < len(s) {
		_, w, c := runeAt(s, i)
		if c != cls {
			break
		}
		i += w
	}
	return i
}

// contraction returns the length of a contraction suffix ("s", "t", "re",
// "ve", "m", "ll", "d") at s[i:], or 0. fold makes the match case-insensitive
// with Unicode simple case folding (the only non-ASCII fold of these letters
// is U+017F LATIN SMALL LETTER LONG S for "s").
func contraction(s string, i int, fold bool) int {
	at := func(k int, want byte) (int, bool) {
		if k >= len(s) {
			return 0, false
		}
		c := s[k]
		if c == want || (fold && c == want-32) {
			return 1, true
		}
		if fold && want == 's' && k+1 < len(s) && c == 0xC5 && s[k+1] == 0xBF {
			return 2, true
		}
		return 0, false
	}
	if n, ok := at(i, 's'); ok {
		return n
	}
	if n, ok := at(i, 't'); ok {
		return n
	}
	if n, ok := at(i, 'r'); ok {
		if m, ok := at(i+n, 'e'); ok {
			return n + m
		}
	}
	if n, ok := at(i, 'v'); ok {
		if m, ok := at(i+n, 'e'); ok {
			return n + m
		}
	}
	if n, ok := at(i, 'm'); ok {
		return n
	}
	if n, ok := at(i, 'l'); ok {
		if m, ok := at(i+n, 'l'); ok {
			return n + m
		}
	}
	if n, ok := at(i, 'd'); ok {
		return n
	}
	return 0
}

// whitespaceTail handles the trailing alternatives common to the GPT-2 and
// Llama 3 patterns for a whitespace run starting at i: `\s+(?!\S)|\s+`.
func whitespaceTail(s string, i int) int {
	j, last := i, i
	for j < len(s) {
		_, w, c := runeAt(s, j)
		if c != clsSpace {
			break
		}
		last = j
		j += w
	}
	if j == len(s) || last == i {
		return j
	}
	return last
}

// splitLlama3 reproduces the Llama 3 pre-tokenizer regex with find_iter
// semantics (leftmost-first alternation, greedy quantifiers, backtracking):
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// maxDigits is 3 for Llama 3; Qwen 2 uses the same pattern with \p{N} (1).
// Every rune belongs to some alternative, so the matches tile s.
func splitLlama3(s string, maxDigits int, emit func(a, b int)) {
	i := 0
	for i < len(s) {
		r, w, c := runeAt(s, i)
		// (?i:'s|'t|'re|'ve|'m|'ll|'d)
		if r == '\'' {
			if n := contraction(s, i+1, true); n > 0 {
				emit(i, i+1+n)
				i += 1 + n
				continue
			}
		}
		// [^\r\n\p{L}\p{N}]?\p{L}+
		if c == clsLetter {
			j := runEnd(s, i, clsLetter)
			emit(i, j)
			i = j
			continue
		}
		if r != '\r' && r != '\n' && c != clsNumber && i+w < len(s) {
			if _, _, c2 := runeAt(s, i+w); c2 == clsLetter {
				j := runEnd(s, i+w, clsLetter)
				emit(i, j)
				i = j
				continue
			}
		}
		// \p{N}{1,3}
		if c == clsNumber {
			j := i
			for n := 0; n < maxDigits && j < len(s); n++ {
				_, w2, c2 := runeAt(s, j)
				if c2 != clsNumber {
					break
				}
				j += w2
			}
			emit(i, j)
			i = j
			continue
		}
		// ` ?[^\s\p{L}\p{N}]+[\r\n]*`
		j := i
		if r == ' ' && i+1 < len(s) {
			if _, _, c2 := runeAt(s, i+1); c2 == clsOther {
				j = i + 1
			}
		}
		if j > i || c == clsOther {
			k := runEnd(s, j, clsOther)
			for k < len(s) && (s[k] == '\r' || s[k] == '\n') {
				k++
			}
			emit(i, k)
			i = k
			continue
		}
		// Here r is whitespace. \s*[\r\n]+
		nl := -1
		for k := i; k < len(s); {
			_, w2, c2 := runeAt(s, k)
			if c2 != clsSpace {
				break
			}
			if s[k] == '\r' || s[k] == '\n' {
				nl = k
			}
			k += w2
		}
		if nl >= 0 {
			emit(i, nl+1)
			i = nl + 1
			continue
		}
		// \s+(?!\S)|\s+
		j = whitespaceTail(s, i)
		emit(i, j)
		i = j
	}
}

// splitGPT2 reproduces GPT-2's pattern (ByteLevel use_regex):
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
func splitGPT2(s string, emit func(a, b int)) {
	i := 0
	for i < len(s) {
		r, _, c := runeAt(s, i)
		if r == '\'' {
			if n := contraction(s, i+1, false); n > 0 {
				emit(i, i+1+n)
				i += 1 + n
				continue
			}
		}
		j, cls := i, c
		if r == ' ' && i+1 < len(s) {
			if _, _, c2 := runeAt(s, i+1); c2 != clsSpace {
				j, cls = i+1, c2
			}
		}
		if cls != clsSpace {
			k := runEnd(s, j, cls)
			emit(i, k)
			i = k
			continue
		}
		k := whitespaceTail(s, i)
		emit(i, k)
		i = k
	}
}
