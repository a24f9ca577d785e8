package jinja

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Values are Go values: nil (None), bool, int64, float64, string, Tainted,
// []any (list; tuples too), *Dict, *Namespace, Undefined, *Macro, callable.

// Tuple is a Python tuple (printed with parentheses).
type Tuple []any

// seq returns the elements of a list or tuple.
func seq(v any) ([]any, bool) {
	switch x := v.(type) {
	case []any:
		return x, true
	case Tuple:
		return x, true
	}
	return nil, false
}

// Undefined is a missing variable, attribute or item.
type Undefined struct{ Name string }

// Tainted is a string whose bytes are tracked through rendering: wherever
// they end up in the output is reported as a Mark with their Tag.
type Tainted struct {
	S     string
	Marks []Mark // ranges of S, sorted
}

// Mark is a tagged byte range.
type Mark struct {
	Start, End int
	Tag        int
}

// Taint returns s with all of it tagged.
func Taint(s string, tag int) Tainted { return Tainted{S: s, Marks: []Mark{{0, len(s), tag}}} }

// TaintAll returns v with every string inside it (in lists and dict values,
// at any depth) tagged; dicts are changed in place.
func TaintAll(v any, tag int) any {
	switch x := v.(type) {
	case string:
		return Taint(x, tag)
	case []any:
		for i := range x {
			x[i] = TaintAll(x[i], tag)
		}
	case *Dict:
		for _, k := range x.keys {
			x.m[k] = TaintAll(x.m[k], tag)
		}
	}
	return v
}

// taintTag returns the tag of the first tainted string inside v (depth-first),
// for values whose rendering as a whole comes from tainted input.
func taintTag(v any, depth int) (int, bool) {
	if depth > maxDepth {
		return 0, false
	}
	switch x := v.(type) {
	case Tainted:
		if len(x.Marks) > 0 {
			return x.Marks[0].Tag, true
		}
	case []any:
		for _, e := range x {
			if t, ok := taintTag(e, depth+1); ok {
				return t, true
			}
		}
	case Tuple:
		for _, e := range x {
			if t, ok := taintTag(e, depth+1); ok {
				return t, true
			}
		}
	case *Dict:
		for _, k := range x.keys {
			if t, ok := taintTag(x.m[k], depth+1); ok {
				return t, true
			}
		}
	}
	return 0, false
}

// Dict is an insertion-ordered map with string keys, like a Python dict.
type Dict struct {
	keys []string
	m    map[string]any
}

// NewDict returns an empty Dict.
func NewDict() *Dict { return &Dict{m: map[string]any{}} }

// Set sets key k, keeping its first insertion position.
func (d *Dict) Set(k string, v any) {
	if _, ok := d.m[k]; !ok {
		d.keys = append(d.keys, k)
	}
	d.m[k] = v
}

// Get returns the value of k.
func (d *Dict) Get(k string) (any, bool) {
	v, ok := d.m[k]
	return v, ok
}

// Keys returns the keys in insertion order.
func (d *Dict) Keys() []string { return d.keys }

// Len returns the number of keys.
func (d *Dict) Len() int { return len(d.keys) }

// Namespace is the mutable object made by namespace().
type Namespace struct{ d *Dict }

// callable is a Go function value (global or bound method).
type callable func(args []any, kw *Dict) (any, error)

// FromJSON decodes JSON into values, keeping object key order; integers
// become int64 and other numbers float64.
func FromJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := fromJSON(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("jinja: trailing data after JSON value")
	}
	return v, nil
}

func fromJSON(dec *json.Decoder, depth int) (any, error) {
	if depth > 256 {
		return nil, fmt.Errorf("jinja: JSON nested too deep")
	}
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch x := t.(type) {
	case json.Delim:
		switch x {
		case '[':
			l := []any{}
			for dec.More() {
				v, err := fromJSON(dec, depth+1)
				if err != nil {
					return nil, err
				}
				l = append(l, v)
			}
			_, err := dec.Token()
			return l, err
		case '{':
			d := NewDict()
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := fromJSON(dec, depth+1)
				if err != nil {
					return nil, err
				}
				d.Set(k.(string), v)
			}
			_, err := dec.Token()
			return d, err
		}
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i, nil
		}
		f, err := strconv.ParseFloat(string(x), 64)
		return f, err
	case string, bool, nil:
		return x, nil
	}
	return nil, fmt.Errorf("jinja: unexpected JSON token %v", t)
}

// FromGo converts common Go values (maps, slices, ints) into values.
func FromGo(v any) any {
	switch x := v.(type) {
	case int:
		return int64(x)
	case int32:
		return int64(x)
	case float32:
		return float64(x)
	case map[string]any:
		d := NewDict()
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			d.Set(k, FromGo(x[k]))
		}
		return d
	case []any:
		l := make([]any, len(x))
		for i := range x {
			l[i] = FromGo(x[i])
		}
		return l
	case []string:
		l := make([]any, len(x))
		for i := range x {
			l[i] = x[i]
		}
		return l
	}
	return v
}

// plain returns the string of a string value.
func plain(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case Tainted:
		return x.S, true
	}
	return "", false
}

func isUndef(v any) bool {
	_, ok := v.(Undefined)
	return ok
}

func truthy(v any) bool {
	switch x := v.(type) {
	case nil, Undefined:
		return false
	case bool:
		return x
	case int64:
		return x != 0
	case float64:
		return x != 0
	case string:
		return x != ""
	case Tainted:
		return x.S != ""
	case []any:
		return len(x) > 0
	case Tuple:
		return len(x) > 0
	case *Dict:
		return x.Len() > 0
	}
	return true
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "NoneType"
	case Undefined:
		return "Undefined"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string, Tainted:
		return "str"
	case []any:
		return "list"
	case Tuple:
		return "tuple"
	case *Dict:
		return "dict"
	case *Namespace:
		return "Namespace"
	}
	return "function"
}

// str is Python's str() as Jinja prints values.
func str(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case Undefined:
		return ""
	case string:
		return x
	case Tainted:
		return x.S
	}
	return repr(v)
}

// repr is Python's repr().
func repr(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case Undefined:
		return ""
	case bool:
		if x {
			return "True"
		}
		return "False"
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return pyFloat(x)
	case string:
		return pyStrRepr(x)
	case Tainted:
		return pyStrRepr(x.S)
	case []any:
		var b strings.Builder
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(repr(e))
		}
		b.WriteByte(']')
		return b.String()
	case Tuple:
		var b strings.Builder
		b.WriteByte('(')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(repr(e))
		}
		if len(x) == 1 {
			b.WriteByte(',')
		}
		b.WriteByte(')')
		return b.String()
	case *Dict:
		var b strings.Builder
		b.WriteByte('{')
		for i, k := range x.keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(pyStrRepr(k))
			b.WriteString(": ")
			b.WriteString(repr(x.m[k]))
		}
		b.WriteByte('}')
		return b.String()
	case *Namespace:
		return "<Namespace " + repr(x.d) + ">"
	}
	return "<function>"
}

// pyFloat formats like Python's repr(float).
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	// Shortest round-trip digits, then Python's layout: scientific when the
	// exponent is < -4 or >= 16.
	digits := strconv.FormatFloat(math.Abs(f), 'e', -1, 64) // d.ddde±XX
	mant, expS, _ := strings.Cut(digits, "e")
	exp, _ := strconv.Atoi(expS)
	ds := strings.Replace(mant, ".", "", 1)
	sign := ""
	if math.Signbit(f) {
		sign = "-"
	}
	if exp < -4 || exp >= 16 {
		m := ds[:1]
		if len(ds) > 1 {
			m += "." + ds[1:]
		}
		es := fmt.Sprintf("%+03d", exp)
		return sign + m + "e" + es
	}
	if exp >= 0 {
		if len(ds) <= exp+1 {
			return sign + ds + strings.Repeat("0", exp+1-len(ds)) + ".0"
		}
		return sign + ds[:exp+1] + "." + ds[exp+1:]
	}
	return sign + "0." + strings.Repeat("0", -exp-1) + ds
}

// pyStrRepr is Python's repr(str).
func pyStrRepr(s string) string {
	q := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == ' ' || unicode.IsPrint(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x10000:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// toJSON is transformers' tojson: json.dumps(x, ensure_ascii=False,
// indent=indent, separators=sep, sort_keys=sortKeys).
func toJSON(v any, indent int, itemSep, keySep string, sortKeys bool) (string, error) {
	var b strings.Builder
	if err := writeJSON(&b, v, indent, 0, itemSep, keySep, sortKeys); err != nil {
		return "", err
	}
	return b.String(), nil
}

func writeJSON(b *strings.Builder, v any, indent, level int, itemSep, keySep string, sortKeys bool) error {
	nl := func(l int) {
		if indent >= 0 {
			b.WriteByte('\n')
			b.WriteString(strings.Repeat(" ", indent*l))
		}
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case float64:
		switch {
		case math.IsNaN(x):
			b.WriteString("NaN")
		case math.IsInf(x, 1):
			b.WriteString("Infinity")
		case math.IsInf(x, -1):
			b.WriteString("-Infinity")
		default:
			b.WriteString(pyFloat(x))
		}
	case string, Tainted:
		s, _ := plain(x)
		jsonString(b, s)
	case []any:
		if len(x) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(itemSep)
			}
			nl(level + 1)
			if err := writeJSON(b, e, indent, level+1, itemSep, keySep, sortKeys); err != nil {
				return err
			}
		}
		nl(level)
		b.WriteByte(']')
	case *Dict:
		if x.Len() == 0 {
			b.WriteString("{}")
			return nil
		}
		keys := x.keys
		if sortKeys {
			keys = slices.Clone(keys)
			slices.Sort(keys)
		}
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(itemSep)
			}
			nl(level + 1)
			jsonString(b, k)
			b.WriteString(keySep)
			if err := writeJSON(b, x.m[k], indent, level+1, itemSep, keySep, sortKeys); err != nil {
				return err
			}
		}
		nl(level)
		b.WriteByte('}')
	case *Namespace:
		return writeJSON(b, x.d, indent, level, itemSep, keySep, sortKeys)
	case Tuple:
		return writeJSON(b, []any(x), indent, level, itemSep, keySep, sortKeys)
	default:
		return fmt.Errorf("Object of type %s is not JSON serializable", typeName(v))
	}
	return nil
}

func jsonString(b *strings.Builder, s string) {
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
			if r < 0x20 {
				fmt.Fprintf(b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

// Func makes a Go function callable from templates.
func Func(f func(args []any) (any, error)) any {
	return callable(func(args []any, _ *Dict) (any, error) { return f(args) })
}
