package pyjson

import (
	"bytes"
	"fmt"
	"unicode/utf8"

	"github.com/lorakit/lorakit/pkg/errclass"
)

// Bounds on hostile input.
const (
	MaxBytes = 16 << 20 // documents larger than this are refused
	MaxDepth = 64       // nesting deeper than this is refused
)

// ErrInvalid is matched (errors.Is) by every error Decode returns.
var ErrInvalid = errclass.New(errclass.Invalid, "pyjson: invalid JSON")

// DecodeError is a Decode failure; Offset is -1 when it has no position.
type DecodeError struct {
	Offset int
	Msg    string
}

func (e *DecodeError) Error() string {
	if e.Offset < 0 {
		return e.Msg
	}
	return fmt.Sprintf("offset %d: %s", e.Offset, e.Msg)
}

// Unwrap makes errors.Is(err, ErrInvalid) (and its class) true.
func (e *DecodeError) Unwrap() error { return ErrInvalid }

// Decode parses one JSON document with Python's json.loads grammar:
// RFC 8259 plus NaN, Infinity and -Infinity; no control characters inside
// strings; whitespace is space, tab, CR, LF. Duplicate object keys behave
// as in Python: the last value wins, at the first key's position. Lone
// UTF-16 surrogates become U+FFFD. Input must be valid UTF-8, at most
// MaxBytes long and nested at most MaxDepth deep.
func Decode(data []byte) (Value, error) {
	if len(data) > MaxBytes {
		return Value{}, &DecodeError{-1, fmt.Sprintf("%d bytes exceeds the %d byte limit", len(data), MaxBytes)}
	}
	if !utf8.Valid(data) {
		return Value{}, &DecodeError{-1, "invalid UTF-8"}
	}
	p := &parser{s: data}
	p.ws()
	v, err := p.value(0)
	if err != nil {
		return Value{}, err
	}
	p.ws()
	if p.i != len(p.s) {
		return Value{}, p.errorf("extra data after the JSON value")
	}
	return v, nil
}

type parser struct {
	s []byte
	i int
}

func (p *parser) errorf(format string, args ...any) error {
	return &DecodeError{p.i, fmt.Sprintf(format, args...)}
}

func (p *parser) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) lit(word string) bool {
	if bytes.HasPrefix(p.s[p.i:], []byte(word)) {
		p.i += len(word)
		return true
	}
	return false
}

func (p *parser) value(depth int) (Value, error) {
	if depth > MaxDepth {
		return Value{}, p.errorf("nesting deeper than %d", MaxDepth)
	}
	if p.i >= len(p.s) {
		return Value{}, p.errorf("unexpected end of input")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		s, err := p.str()
		return String(s), err
	case p.lit("null"):
		return Null, nil
	case p.lit("true"):
		return Bool(true), nil
	case p.lit("false"):
		return Bool(false), nil
	case p.lit("NaN"):
		return Number("NaN"), nil
	case p.lit("Infinity"):
		return Number("Infinity"), nil
	case p.lit("-Infinity"):
		return Number("-Infinity"), nil
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	}
	return Value{}, p.errorf("expecting a value")
}

func (p *parser) object(depth int) (Value, error) {
	p.i++ // '{'
	v := Object()
	index := map[string]int{}
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return v, nil
	}
	for {
		p.ws()
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return Value{}, p.errorf("expecting a property name in double quotes")
		}
		k, err := p.str()
		if err != nil {
			return Value{}, err
		}
		p.ws()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return Value{}, p.errorf("expecting ':' delimiter")
		}
		p.i++
		p.ws()
		e, err := p.value(depth + 1)
		if err != nil {
			return Value{}, err
		}
		if j, dup := index[k]; dup {
			v.Obj[j].Value = e
		} else {
			index[k] = len(v.Obj)
			v.Obj = append(v.Obj, Member{k, e})
		}
		p.ws()
		if p.i < len(p.s) && p.s[p.i] == ',' {
			p.i++
			continue
		}
		if p.i < len(p.s) && p.s[p.i] == '}' {
			p.i++
			return v, nil
		}
		return Value{}, p.errorf("expecting ',' delimiter")
	}
}

func (p *parser) array(depth int) (Value, error) {
	p.i++ // '['
	v := Array()
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
		return v, nil
	}
	for {
		p.ws()
		e, err := p.value(depth + 1)
		if err != nil {
			return Value{}, err
		}
		v.Arr = append(v.Arr, e)
		p.ws()
		if p.i < len(p.s) && p.s[p.i] == ',' {
			p.i++
			continue
		}
		if p.i < len(p.s) && p.s[p.i] == ']' {
			p.i++
			return v, nil
		}
		return Value{}, p.errorf("expecting ',' delimiter")
	}
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?
func (p *parser) number() (Value, error) {
	start := p.i
	digits := func() int {
		n := 0
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.s[p.i] == '-' {
		p.i++
	}
	if p.i < len(p.s) && p.s[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		return Value{}, p.errorf("expecting a value")
	}
	if p.i+1 < len(p.s) && p.s[p.i] == '.' && p.s[p.i+1] >= '0' && p.s[p.i+1] <= '9' {
		p.i++
		digits()
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		save := p.i
		p.i++
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			p.i = save // Python's regex leaves a bare 'e' unconsumed
		}
	}
	return Number(string(p.s[start:p.i])), nil
}

// str scans a string starting at the opening quote.
func (p *parser) str() (string, error) {
	p.i++ // opening quote
	var b []byte
	for {
		if p.i >= len(p.s) {
			return "", p.errorf("unterminated string")
		}
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return string(b), nil
		case c < 0x20:
			return "", p.errorf("invalid control character in string")
		case c != '\\':
			b = append(b, c)
			p.i++
			continue
		}
		p.i++
		if p.i >= len(p.s) {
			return "", p.errorf("unterminated string")
		}
		e := p.s[p.i]
		p.i++
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", p.errorf("invalid \\uXXXX escape")
			}
			if r >= 0xd800 && r < 0xdc00 && p.i+1 < len(p.s) && p.s[p.i] == '\\' && p.s[p.i+1] == 'u' {
				save := p.i
				p.i += 2
				if lo, ok := p.hex4(); ok && lo >= 0xdc00 && lo < 0xe000 {
					r = 0x10000 + (r-0xd800)<<10 + (lo - 0xdc00)
				} else {
					p.i = save
				}
			}
			if r >= 0xd800 && r < 0xe000 {
				r = utf8.RuneError
			}
			b = utf8.AppendRune(b, r)
		default:
			return "", p.errorf("invalid escape")
		}
	}
}

func (p *parser) hex4() (rune, bool) {
	if p.i+4 > len(p.s) {
		return 0, false
	}
	var r rune
	for _, c := range p.s[p.i : p.i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	p.i += 4
	return r, true
}
