package quantize

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/lorakit/lorakit/pkg/nf4"
)

// maxConfigDepth bounds the nesting of a config.json.
const maxConfigDepth = 64

// jsonValue is a JSON value that keeps the order of object members, so a
// config.json can be rewritten the way Python's json module does it
// (json.load into dicts, which keep insertion order, then json.dump).
type jsonValue struct {
	kind    byte // 'o' object, 'a' array, 's' string, 'n' number, 'b' bool, 'z' null
	str     string
	num     json.Number
	b       bool
	members []jsonMember
	elems   []jsonValue
}

type jsonMember struct {
	key string
	val jsonValue
}

// parseJSONOrdered parses one JSON document. Duplicate keys behave as in
// Python: the last value wins, at the position of the first occurrence.
func parseJSONOrdered(b []byte) (jsonValue, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
	if err != nil {
		return jsonValue{}, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return jsonValue{}, fmt.Errorf("extra data after the JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder, depth int) (jsonValue, error) {
	if depth > maxConfigDepth {
		return jsonValue{}, fmt.Errorf("nested deeper than %d levels", maxConfigDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return jsonValue{}, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			v := jsonValue{kind: 'o'}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return jsonValue{}, err
				}
				key, ok := kt.(string)
				if !ok {
					return jsonValue{}, fmt.Errorf("object key is not a string")
				}
				val, err := decodeValue(dec, depth+1)
				if err != nil {
					return jsonValue{}, err
				}
				v.set(key, val)
			}
			if _, err := dec.Token(); err != nil {
				return jsonValue{}, err
			}
			return v, nil
		case '[':
			v := jsonValue{kind: 'a'}
			for dec.More() {
				e, err := decodeValue(dec, depth+1)
				if err != nil {
					return jsonValue{}, err
				}
				v.elems = append(v.elems, e)
			}
			if _, err := dec.Token(); err != nil {
				return jsonValue{}, err
			}
			return v, nil
		}
		return jsonValue{}, fmt.Errorf("unexpected %v", t)
	case string:
		return jsonValue{kind: 's', str: t}, nil
	case json.Number:
		return jsonValue{kind: 'n', num: t}, nil
	case bool:
		return jsonValue{kind: 'b', b: t}, nil
	case nil:
		return jsonValue{kind: 'z'}, nil
	}
	return jsonValue{}, fmt.Errorf("unexpected token %v", tok)
}

// get returns the member called key of an object.
func (v *jsonValue) get(key string) (*jsonValue, bool) {
	for i := range v.members {
		if v.members[i].key == key {
			return &v.members[i].val, true
		}
	}
	return nil, false
}

// set replaces the member key in place, or appends it.
func (v *jsonValue) set(key string, val jsonValue) {
	if p, ok := v.get(key); ok {
		*p = val
		return
	}
	v.members = append(v.members, jsonMember{key, val})
}

// remove deletes the member key; it reports whether it was present.
func (v *jsonValue) remove(key string) bool {
	for i := range v.members {
		if v.members[i].key == key {
			v.members = append(v.members[:i], v.members[i+1:]...)
			return true
		}
	}
	return false
}

// pythonIndent renders v as Python's json.dumps(v, indent=2) does (the
// format of json.dump(cfg, f, indent=2), with no trailing newline): ", " and
// ": " become ",\n" and ": ", empty containers stay "{}" and "[]", strings
// are escaped with ensure_ascii, integers print exactly and other numbers
// as float.__repr__.
func pythonIndent(v jsonValue) []byte {
	var b bytes.Buffer
	v.writePython(&b, 0)
	return b.Bytes()
}

func (v jsonValue) writePython(b *bytes.Buffer, level int) {
	nl := func(l int) {
		b.WriteByte('\n')
		b.WriteString(strings.Repeat("  ", l))
	}
	switch v.kind {
	case 'o':
		if len(v.members) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteByte('{')
		for i, m := range v.members {
			if i > 0 {
				b.WriteByte(',')
			}
			nl(level + 1)
			writePythonString(b, m.key)
			b.WriteString(": ")
			m.val.writePython(b, level+1)
		}
		nl(level)
		b.WriteByte('}')
	case 'a':
		if len(v.elems) == 0 {
			b.WriteString("[]")
			return
		}
		b.WriteByte('[')
		for i, e := range v.elems {
			if i > 0 {
				b.WriteByte(',')
			}
			nl(level + 1)
			e.writePython(b, level+1)
		}
		nl(level)
		b.WriteByte(']')
	case 's':
		writePythonString(b, v.str)
	case 'n':
		b.WriteString(pythonNumber(string(v.num)))
	case 'b':
		if v.b {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	default:
		b.WriteString("null")
	}
}

// pythonNumber is how a JSON number literal reads back from Python's
// json.loads + json.dumps: integers as exact decimal integers, anything with
// a fraction or exponent as float.__repr__.
func pythonNumber(lit string) string {
	if !strings.ContainsAny(lit, ".eE") {
		if n, ok := new(big.Int).SetString(lit, 10); ok {
			return n.String()
		}
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil && !isRangeErr(err) {
		return lit
	}
	return nf4.PythonFloat(f)
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// writePythonString writes s as json.dumps(ensure_ascii=True) does: \" \\
// \b \f \n \r \t, \u00XX for other control characters and DEL, \uXXXX
// (lower-case hex, surrogate pairs above U+FFFF) for everything non-ASCII.
func writePythonString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	u := func(r rune) {
		b.WriteString(`\u`)
		b.WriteByte(hex[r>>12&15])
		b.WriteByte(hex[r>>8&15])
		b.WriteByte(hex[r>>4&15])
		b.WriteByte(hex[r&15])
	}
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r >= 0x20 && r < 0x7f:
			b.WriteByte(byte(r))
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			u(r1)
			u(r2)
		default:
			u(r)
		}
	}
	b.WriteByte('"')
}
