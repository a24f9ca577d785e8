package peft

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file holds a small ordered JSON tree (object members keep their
// order, numbers keep their literal text) and a writer that reproduces
// Python's json.dumps(v, indent=2, sort_keys=True) byte for byte.

const (
	maxConfigBytes = 16 << 20 // adapter_config.json larger than this is refused
	maxDepth       = 64       // nesting depth bound for hostile input
)

type jkind uint8

const (
	jNull jkind = iota
	jBool
	jNum // s holds the literal (JSON syntax)
	jStr
	jArr
	jObj
)

type jvalue struct {
	kind jkind
	b    bool
	s    string
	arr  []jvalue
	obj  []jmember
}

type jmember struct {
	key string
	val jvalue
}

var jnull = jvalue{kind: jNull}

func jbool(b bool) jvalue     { return jvalue{kind: jBool, b: b} }
func jstr(s string) jvalue    { return jvalue{kind: jStr, s: s} }
func jint(i int64) jvalue     { return jvalue{kind: jNum, s: strconv.FormatInt(i, 10)} }
func jfloat(f float64) jvalue { return jvalue{kind: jNum, s: pyFloat(f)} }

// jstrOrNull maps "" to null.
func jstrOrNull(s string) jvalue {
	if s == "" {
		return jnull
	}
	return jstr(s)
}

func jstrList(l []string) jvalue {
	if l == nil {
		return jnull
	}
	v := jvalue{kind: jArr, arr: make([]jvalue, len(l))}
	for i, s := range l {
		v.arr[i] = jstr(s)
	}
	return v
}

// isIntLiteral reports whether a JSON number literal is -?digits (Python's
// json module makes it an int; fractions, exponents, NaN and Infinity make
// a float).
func isIntLiteral(lit string) bool { return allDigits(strings.TrimPrefix(lit, "-")) }

// decodeJSON parses one JSON document into an ordered tree with Python's
// json.loads grammar: RFC 8259 plus NaN, Infinity and -Infinity; no
// control characters inside strings; whitespace is space, tab, CR, LF.
// Duplicate object keys behave as in Python: the last value wins, at the
// first key's position. Lone UTF-16 surrogates become U+FFFD.
func decodeJSON(data []byte) (jvalue, error) {
	if len(data) > maxConfigBytes {
		return jvalue{}, fmt.Errorf("%d bytes exceeds the %d byte limit", len(data), maxConfigBytes)
	}
	if !utf8.Valid(data) {
		return jvalue{}, errors.New("invalid UTF-8")
	}
	p := &jparser{s: data}
	p.ws()
	v, err := p.value(0)
	if err != nil {
		return jvalue{}, err
	}
	p.ws()
	if p.i != len(p.s) {
		return jvalue{}, fmt.Errorf("offset %d: extra data after the JSON value", p.i)
	}
	return v, nil
}

type jparser struct {
	s []byte
	i int
}

func (p *jparser) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *jparser) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jparser) lit(word string) bool {
	if bytes.HasPrefix(p.s[p.i:], []byte(word)) {
		p.i += len(word)
		return true
	}
	return false
}

func (p *jparser) value(depth int) (jvalue, error) {
	if depth > maxDepth {
		return jvalue{}, p.errorf("nesting deeper than %d", maxDepth)
	}
	if p.i >= len(p.s) {
		return jvalue{}, p.errorf("unexpected end of input")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		p.i++
		v := jvalue{kind: jObj, obj: []jmember{}}
		index := map[string]int{}
		p.ws()
		if p.i < len(p.s) && p.s[p.i] == '}' {
			p.i++
			return v, nil
		}
		for {
			p.ws()
			if p.i >= len(p.s) || p.s[p.i] != '"' {
				return jvalue{}, p.errorf("expecting a property name in double quotes")
			}
			k, err := p.str()
			if err != nil {
				return jvalue{}, err
			}
			p.ws()
			if p.i >= len(p.s) || p.s[p.i] != ':' {
				return jvalue{}, p.errorf("expecting ':' delimiter")
			}
			p.i++
			p.ws()
			e, err := p.value(depth + 1)
			if err != nil {
				return jvalue{}, err
			}
			if j, dup := index[k]; dup {
				v.obj[j].val = e
			} else {
				index[k] = len(v.obj)
				v.obj = append(v.obj, jmember{key: k, val: e})
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
			return jvalue{}, p.errorf("expecting ',' delimiter")
		}
	case c == '[':
		p.i++
		v := jvalue{kind: jArr, arr: []jvalue{}}
		p.ws()
		if p.i < len(p.s) && p.s[p.i] == ']' {
			p.i++
			return v, nil
		}
		for {
			p.ws()
			e, err := p.value(depth + 1)
			if err != nil {
				return jvalue{}, err
			}
			v.arr = append(v.arr, e)
			p.ws()
			if p.i < len(p.s) && p.s[p.i] == ',' {
				p.i++
				continue
			}
			if p.i < len(p.s) && p.s[p.i] == ']' {
				p.i++
				return v, nil
			}
			return jvalue{}, p.errorf("expecting ',' delimiter")
		}
	case c == '"':
		s, err := p.str()
		return jstr(s), err
	case p.lit("null"):
		return jnull, nil
	case p.lit("true"):
		return jbool(true), nil
	case p.lit("false"):
		return jbool(false), nil
	case p.lit("NaN"):
		return jvalue{kind: jNum, s: "NaN"}, nil
	case p.lit("Infinity"):
		return jvalue{kind: jNum, s: "Infinity"}, nil
	case p.lit("-Infinity"):
		return jvalue{kind: jNum, s: "-Infinity"}, nil
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	}
	return jvalue{}, p.errorf("expecting a value")
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?
func (p *jparser) number() (jvalue, error) {
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
		return jvalue{}, p.errorf("expecting a value")
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
	return jvalue{kind: jNum, s: string(p.s[start:p.i])}, nil
}

// str scans a string starting at the opening quote.
func (p *jparser) str() (string, error) {
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

func (p *jparser) hex4() (rune, bool) {
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

// rawOf encodes v as compact standard JSON (object order and number
// literals preserved), for json.RawMessage fields.
func rawOf(v jvalue) json.RawMessage {
	var b bytes.Buffer
	writeCompact(&b, v)
	return json.RawMessage(b.Bytes())
}

func writeCompact(b *bytes.Buffer, v jvalue) {
	switch v.kind {
	case jNull:
		b.WriteString("null")
	case jBool:
		b.WriteString(strconv.FormatBool(v.b))
	case jNum:
		b.WriteString(v.s)
	case jStr:
		writePyString(b, v.s)
	case jArr:
		b.WriteByte('[')
		for i, e := range v.arr {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCompact(b, e)
		}
		b.WriteByte(']')
	case jObj:
		b.WriteByte('{')
		for i, m := range v.obj {
			if i > 0 {
				b.WriteByte(',')
			}
			writePyString(b, m.key)
			b.WriteByte(':')
			writeCompact(b, m.val)
		}
		b.WriteByte('}')
	}
}

// fromRaw parses a json.RawMessage field; nil or empty means null.
func fromRaw(r json.RawMessage) (jvalue, error) {
	if len(bytes.TrimSpace(r)) == 0 {
		return jnull, nil
	}
	return decodeJSON(r)
}

// writePython writes v as Python's json.dumps(v, indent=2, sort_keys=True,
// ensure_ascii=True) does.
func writePython(b *bytes.Buffer, v jvalue, level int) {
	switch v.kind {
	case jNull:
		b.WriteString("null")
	case jBool:
		if v.b {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case jNum:
		b.WriteString(pyNumber(v.s))
	case jStr:
		writePyString(b, v.s)
	case jArr:
		if len(v.arr) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteString("[\n")
		for i, e := range v.arr {
			if i > 0 {
				b.WriteString(",\n")
			}
			indent(b, level+1)
			writePython(b, e, level+1)
		}
		b.WriteByte('\n')
		indent(b, level)
		b.WriteByte(']')
	case jObj:
		if len(v.obj) == 0 {
			b.WriteString("{}")
			return
		}
		members := append([]jmember(nil), v.obj...)
		sort.SliceStable(members, func(i, j int) bool { return members[i].key < members[j].key })
		b.WriteString("{\n")
		for i, m := range members {
			if i > 0 {
				b.WriteString(",\n")
			}
			indent(b, level+1)
			writePyString(b, m.key)
			b.WriteString(": ")
			writePython(b, m.val, level+1)
		}
		b.WriteByte('\n')
		indent(b, level)
		b.WriteByte('}')
	}
}

func indent(b *bytes.Buffer, level int) {
	for i := 0; i < level; i++ {
		b.WriteString("  ")
	}
}

// pyNumber renders a JSON number literal the way Python re-serialises it:
// integers keep their digits ("-0" becomes "0"), everything else goes
// through float and repr.
func pyNumber(lit string) string {
	if isIntLiteral(lit) {
		neg := strings.HasPrefix(lit, "-")
		digits := strings.TrimLeft(strings.TrimPrefix(lit, "-"), "0")
		if digits == "" {
			return "0"
		}
		if neg {
			return "-" + digits
		}
		return digits
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return lit // not reachable for literals from encoding/json
	}
	return pyFloat(f)
}

// pyFloat is Python's repr(float) as json.dumps writes it: the shortest
// round-tripping digits, fixed notation when the decimal exponent is in
// [-4, 16), else scientific with a two-digit minimum exponent ("1e-05");
// integral values get ".0"; NaN and infinities as NaN/Infinity/-Infinity.
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0:
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	s := strconv.FormatFloat(f, 'e', -1, 64) // [-]d[.ddd]e±XX
	sign := ""
	if s[0] == '-' {
		sign, s = "-", s[1:]
	}
	epos := strings.IndexByte(s, 'e')
	mant, exps := s[:epos], s[epos+1:]
	exp, _ := strconv.Atoi(exps)
	digits := strings.Replace(mant, ".", "", 1)
	decpt := exp + 1
	if decpt <= -4 || decpt > 16 {
		out := sign + digits[:1]
		if len(digits) > 1 {
			out += "." + digits[1:]
		}
		e := exp
		esign := "+"
		if e < 0 {
			esign, e = "-", -e
		}
		es := strconv.Itoa(e)
		if len(es) < 2 {
			es = "0" + es
		}
		return out + "e" + esign + es
	}
	switch {
	case decpt <= 0:
		return sign + "0." + strings.Repeat("0", -decpt) + digits
	case decpt >= len(digits):
		return sign + digits + strings.Repeat("0", decpt-len(digits)) + ".0"
	default:
		return sign + digits[:decpt] + "." + digits[decpt:]
	}
}

// writePyString writes s as a JSON string with Python's ensure_ascii
// escaping: every character outside ' '..'~' is escaped, with \uXXXX
// (lower-case hex, surrogate pairs above U+FFFF) except for the short forms
// \" \\ \n \r \t \b \f.
func writePyString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	u4 := func(r rune) {
		b.WriteString(`\u`)
		b.WriteByte(hex[r>>12&0xf])
		b.WriteByte(hex[r>>8&0xf])
		b.WriteByte(hex[r>>4&0xf])
		b.WriteByte(hex[r&0xf])
	}
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			switch {
			case r >= ' ' && r <= '~':
				b.WriteByte(byte(r))
			case r > 0xffff:
				r -= 0x10000
				u4(0xd800 | (r>>10)&0x3ff)
				u4(0xdc00 | r&0x3ff)
			default:
				u4(r)
			}
		}
	}
	b.WriteByte('"')
}

// truthy is Python's bool() of a JSON value.
func truthy(v jvalue) bool {
	switch v.kind {
	case jNull:
		return false
	case jBool:
		return v.b
	case jNum:
		f, err := strconv.ParseFloat(v.s, 64)
		return err != nil || f != 0 // out-of-range literals are non-zero
	case jStr:
		return v.s != ""
	case jArr:
		return len(v.arr) > 0
	case jObj:
		return len(v.obj) > 0
	}
	return false
}

// rawTruthy is truthy for a json.RawMessage field; unparsable input counts
// as set (so it is refused rather than ignored).
func rawTruthy(r json.RawMessage) bool {
	v, err := fromRaw(r)
	if err != nil {
		return true
	}
	return truthy(v)
}
