package jinja

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

type tokKind int

const (
	tData tokKind = iota
	tVarBegin
	tVarEnd
	tBlockBegin
	tBlockEnd
	tName
	tString
	tInt
	tFloat
	tOp
	tEOF
)

type token struct {
	kind tokKind
	val  string
	i    int64
	f    float64
	pos  int
}

// normalizeSource does what Jinja's lexer does first: source.splitlines()
// joined by "\n", which turns every Python line boundary into "\n" and drops
// one trailing newline (keep_trailing_newline=False).
func normalizeSource(src string) string {
	var b strings.Builder
	for i := 0; i < len(src); {
		r, w := utf8.DecodeRuneInString(src[i:])
		switch r {
		case '\r':
			if i+1 < len(src) && src[i+1] == '\n' {
				w = 2
			}
			b.WriteByte('\n')
		case '\n', '\v', '\f', 0x1c, 0x1d, 0x1e, 0x85, 0x2028, 0x2029:
			b.WriteByte('\n')
		default:
			b.WriteString(src[i : i+w])
		}
		i += w
	}
	return strings.TrimSuffix(b.String(), "\n")
}

type lexer struct {
	src  string
	pos  int
	toks []token
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// lex tokenizes a template with trim_blocks and lstrip_blocks on, as
// transformers configures Jinja.
func lex(src string) ([]token, error) {
	src = normalizeSource(src)
	lx := &lexer{src: src}
	lineStarting := true
	stripNext := false // previous tag ended with '-': strip leading whitespace
	for {
		j := nextTag(src, lx.pos)
		data := src[lx.pos:]
		if j >= 0 {
			data = src[lx.pos:j]
		}
		if stripNext {
			data = strings.TrimLeft(data, " \t\n\r\f\v")
			stripNext = false
		}
		if j < 0 {
			lx.emitData(data)
			break
		}
		kind := src[j+1]
		k := j + 2
		mod := byte(0)
		if k < len(src) && (src[k] == '-' || src[k] == '+') {
			mod = src[k]
			k++
		}
		switch {
		case mod == '-':
			data = strings.TrimRight(data, " \t\n\r\f\v")
		case mod == 0 && kind != '{':
			lp := strings.LastIndexByte(data, '\n') + 1
			if lp > 0 || lineStarting {
				if strings.Trim(data[lp:], " \t") == "" {
					data = data[:lp]
				}
			}
		}
		lx.emitData(data)
		lx.pos = k
		var err error
		switch kind {
		case '#':
			end := strings.Index(src[k:], "#}")
			if end < 0 {
				return nil, fmt.Errorf("jinja: unclosed comment at %d", j)
			}
			e := k + end
			lx.pos = e + 2
			if e > k && src[e-1] == '-' {
				stripNext = true
			} else if lx.pos < len(src) && src[lx.pos] == '\n' {
				lx.pos++
			}
			lineStarting = lx.pos > 0 && src[lx.pos-1] == '\n'
			continue
		case '{':
			lx.toks = append(lx.toks, token{kind: tVarBegin, pos: j})
			stripNext, err = lx.tagBody("}}", false)
		case '%':
			if raw, ok := lx.rawBlock(); ok {
				lx.emitData(raw)
				lineStarting = lx.pos > 0 && src[lx.pos-1] == '\n'
				continue
			}
			lx.toks = append(lx.toks, token{kind: tBlockBegin, pos: j})
			stripNext, err = lx.tagBody("%}", true)
		}
		if err != nil {
			return nil, err
		}
		lineStarting = lx.pos > 0 && src[lx.pos-1] == '\n'
	}
	lx.toks = append(lx.toks, token{kind: tEOF, pos: len(src)})
	return lx.toks, nil
}

func nextTag(s string, from int) int {
	for i := from; i+1 < len(s); i++ {
		if s[i] == '{' && (s[i+1] == '{' || s[i+1] == '%' || s[i+1] == '#') {
			return i
		}
	}
	return -1
}

func (lx *lexer) emitData(s string) {
	if s != "" {
		lx.toks = append(lx.toks, token{kind: tData, val: s})
	}
}

// rawBlock handles {% raw %}...{% endraw %} at lx.pos (just after "{%").
func (lx *lexer) rawBlock() (string, bool) {
	s := lx.src
	i := lx.pos
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	if !strings.HasPrefix(s[i:], "raw") {
		return "", false
	}
	i += 3
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	if strings.HasPrefix(s[i:], "-%}") {
		i += 3
	} else if strings.HasPrefix(s[i:], "%}") {
		i += 2
	} else {
		return "", false
	}
	for k := i; k < len(s); k++ {
		if !strings.HasPrefix(s[k:], "{%") {
			continue
		}
		m := k + 2
		if m < len(s) && (s[m] == '-' || s[m] == '+') {
			m++
		}
		for m < len(s) && isSpace(s[m]) {
			m++
		}
		if !strings.HasPrefix(s[m:], "endraw") {
			continue
		}
		m += 6
		for m < len(s) && isSpace(s[m]) {
			m++
		}
		end := -1
		if strings.HasPrefix(s[m:], "-%}") {
			end = m + 3
			for end < len(s) && isSpace(s[end]) {
				end++
			}
		} else if strings.HasPrefix(s[m:], "%}") {
			end = m + 2
			if end < len(s) && s[end] == '\n' {
				end++
			}
		}
		if end < 0 {
			continue
		}
		body := s[i:k]
		if s[k+2] == '-' {
			body = strings.TrimRight(body, " \t\n\r\f\v")
		}
		lx.pos = end
		return body, true
	}
	return "", false
}

var ops3 = []string{"//", "**", "==", "!=", "<=", ">="}

// tagBody tokenizes the inside of a tag until its end marker (with
// balanced brackets), and reports whether the end had a '-'.
func (lx *lexer) tagBody(end string, block bool) (bool, error) {
	s := lx.src
	depth := 0
	for {
		for lx.pos < len(s) && isSpace(s[lx.pos]) {
			lx.pos++
		}
		if lx.pos >= len(s) {
			return false, fmt.Errorf("jinja: unclosed tag")
		}
		p := lx.pos
		if depth == 0 {
			if strings.HasPrefix(s[p:], "-"+end) || strings.HasPrefix(s[p:], "+"+end) || strings.HasPrefix(s[p:], end) {
				strip := s[p] == '-'
				if s[p] == '-' || s[p] == '+' {
					p++
				}
				lx.pos = p + len(end)
				kind := tVarEnd
				if block {
					kind = tBlockEnd
				}
				lx.toks = append(lx.toks, token{kind: kind, pos: p})
				if strip {
					return true, nil
				}
				if block && lx.pos < len(s) && s[lx.pos] == '\n' {
					lx.pos++
				}
				return false, nil
			}
		}
		c := s[p]
		switch {
		case c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
			q := p + 1
			for q < len(s) && (s[q] == '_' || (s[q] >= 'a' && s[q] <= 'z') || (s[q] >= 'A' && s[q] <= 'Z') || (s[q] >= '0' && s[q] <= '9')) {
				q++
			}
			lx.toks = append(lx.toks, token{kind: tName, val: s[p:q], pos: p})
			lx.pos = q
		case c >= '0' && c <= '9':
			q := p
			for q < len(s) && (s[q] >= '0' && s[q] <= '9' || s[q] == '_') {
				q++
			}
			isFloat := false
			if q+1 < len(s) && s[q] == '.' && s[q+1] >= '0' && s[q+1] <= '9' {
				isFloat = true
				q++
				for q < len(s) && (s[q] >= '0' && s[q] <= '9' || s[q] == '_') {
					q++
				}
			}
			if q < len(s) && (s[q] == 'e' || s[q] == 'E') {
				r := q + 1
				if r < len(s) && (s[r] == '+' || s[r] == '-') {
					r++
				}
				if r < len(s) && s[r] >= '0' && s[r] <= '9' {
					isFloat = true
					q = r
					for q < len(s) && s[q] >= '0' && s[q] <= '9' {
						q++
					}
				}
			}
			lit := strings.ReplaceAll(s[p:q], "_", "")
			if isFloat {
				f, err := strconv.ParseFloat(lit, 64)
				if err != nil {
					return false, fmt.Errorf("jinja: bad number %q", lit)
				}
				lx.toks = append(lx.toks, token{kind: tFloat, f: f, pos: p})
			} else {
				n, err := strconv.ParseInt(lit, 10, 64)
				if err != nil {
					return false, fmt.Errorf("jinja: bad number %q", lit)
				}
				lx.toks = append(lx.toks, token{kind: tInt, i: n, pos: p})
			}
			lx.pos = q
		case c == '\'' || c == '"':
			q := p + 1
			for q < len(s) && s[q] != c {
				if s[q] == '\\' {
					q++
				}
				q++
			}
			if q >= len(s) {
				return false, fmt.Errorf("jinja: unclosed string at %d", p)
			}
			lx.toks = append(lx.toks, token{kind: tString, val: unescape(s[p+1 : q]), pos: p})
			lx.pos = q + 1
		default:
			op := ""
			for _, o := range ops3 {
				if strings.HasPrefix(s[p:], o) {
					op = o
					break
				}
			}
			if op == "" {
				if !strings.ContainsRune("+-*/%~<>=()[]{},.:|!", rune(c)) {
					return false, fmt.Errorf("jinja: unexpected %q at %d", c, p)
				}
				op = string(c)
			}
			switch op {
			case "(", "[", "{":
				depth++
			case ")", "]", "}":
				depth--
			}
			lx.toks = append(lx.toks, token{kind: tOp, val: op, pos: p})
			lx.pos = p + len(op)
		}
	}
}

// unescape decodes Python string-literal escapes (Jinja decodes literals
// with "unicode-escape").
func unescape(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch e := s[i]; e {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '\\', '\'', '"':
			b.WriteByte(e)
		case '\n':
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'v':
			b.WriteByte('\v')
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			if i+1+n <= len(s) {
				if v, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32); err == nil {
					b.WriteRune(rune(v))
					i += n
					continue
				}
			}
			b.WriteByte('\\')
			b.WriteByte(e)
		case '0', '1', '2', '3', '4', '5', '6', '7':
			k := i
			for k < len(s) && k < i+3 && s[k] >= '0' && s[k] <= '7' {
				k++
			}
			v, _ := strconv.ParseUint(s[i:k], 8, 32)
			b.WriteRune(rune(v))
			i = k - 1
		default:
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
	return b.String()
}
