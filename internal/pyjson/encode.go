package pyjson

import (
	"errors"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Options are json.dumps's formatting arguments. The zero Options is
// json.dumps(v, ensure_ascii=False); use Default for json.dumps(v).
type Options struct {
	// Pretty is indent not None: members go on their own lines, each
	// prefixed by Indent once per nesting level ("" is Python's indent=0).
	Pretty bool
	Indent string
	// SortKeys writes object members in key order (Python compares code
	// points, which for Go's UTF-8 strings is byte order); otherwise they
	// keep their order.
	SortKeys bool
	// EnsureASCII escapes every character outside ' '..'~' as \uXXXX
	// (lower-case hex, surrogate pairs above U+FFFF); otherwise only '"',
	// '\\' and control characters are escaped.
	EnsureASCII bool
	// ItemSep and KeySep are the separators; empty means Python's
	// defaults: ", " and ": ", or "," and ": " when Pretty.
	ItemSep, KeySep string
	// RawNumbers writes number literals as they are instead of as Python
	// re-renders them (FormatNumber).
	RawNumbers bool
}

// Common option sets.
var (
	Default = Options{EnsureASCII: true}                             // json.dumps(v)
	Indent2 = Options{Pretty: true, Indent: "  ", EnsureASCII: true} // json.dumps(v, indent=2)
)

// Marshal returns v written with o.
func (o Options) Marshal(v Value) []byte { return o.Append(nil, v) }

// Append appends v written with o to dst.
func (o Options) Append(dst []byte, v Value) []byte { return o.AppendAt(dst, v, 0) }

// AppendAt is Append for a value nested level deep in an enclosing
// document (it matters only when Pretty).
func (o Options) AppendAt(dst []byte, v Value, level int) []byte {
	if o.ItemSep == "" {
		o.ItemSep = ", "
		if o.Pretty {
			o.ItemSep = ","
		}
	}
	if o.KeySep == "" {
		o.KeySep = ": "
	}
	return o.appendValue(dst, v, level)
}

func (o *Options) newline(dst []byte, level int) []byte {
	if !o.Pretty {
		return dst
	}
	dst = append(dst, '\n')
	for i := 0; i < level; i++ {
		dst = append(dst, o.Indent...)
	}
	return dst
}

func (o *Options) appendValue(dst []byte, v Value, level int) []byte {
	switch v.Kind {
	case KindBool:
		if v.Bool {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case KindNumber:
		if o.RawNumbers {
			return append(dst, v.Str...)
		}
		return append(dst, FormatNumber(v.Str)...)
	case KindString:
		return AppendString(dst, v.Str, o.EnsureASCII)
	case KindArray:
		if len(v.Arr) == 0 {
			return append(dst, "[]"...)
		}
		dst = append(dst, '[')
		for i, e := range v.Arr {
			if i > 0 {
				dst = append(dst, o.ItemSep...)
			}
			dst = o.newline(dst, level+1)
			dst = o.appendValue(dst, e, level+1)
		}
		dst = o.newline(dst, level)
		return append(dst, ']')
	case KindObject:
		if len(v.Obj) == 0 {
			return append(dst, "{}"...)
		}
		members := v.Obj
		if o.SortKeys {
			members = append([]Member(nil), members...)
			sort.SliceStable(members, func(i, j int) bool { return members[i].Key < members[j].Key })
		}
		dst = append(dst, '{')
		for i, m := range members {
			if i > 0 {
				dst = append(dst, o.ItemSep...)
			}
			dst = o.newline(dst, level+1)
			dst = AppendString(dst, m.Key, o.EnsureASCII)
			dst = append(dst, o.KeySep...)
			dst = o.appendValue(dst, m.Value, level+1)
		}
		dst = o.newline(dst, level)
		return append(dst, '}')
	}
	return append(dst, "null"...)
}

// AppendString appends s as a JSON string the way json.dumps writes it:
// \" \\ \n \r \t \b \f, \u00XX for other control characters, and with
// ensureASCII \uXXXX (lower-case hex, surrogate pairs above U+FFFF) for
// every other character outside ' '..'~'. Invalid UTF-8 is written as
// U+FFFD.
func AppendString(dst []byte, s string, ensureASCII bool) []byte {
	const hex = "0123456789abcdef"
	u4 := func(r rune) {
		dst = append(dst, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
	}
	dst = append(dst, '"')
	for _, r := range s {
		switch r {
		case '"':
			dst = append(dst, `\"`...)
		case '\\':
			dst = append(dst, `\\`...)
		case '\n':
			dst = append(dst, `\n`...)
		case '\r':
			dst = append(dst, `\r`...)
		case '\t':
			dst = append(dst, `\t`...)
		case '\b':
			dst = append(dst, `\b`...)
		case '\f':
			dst = append(dst, `\f`...)
		default:
			switch {
			case r >= ' ' && r <= '~':
				dst = append(dst, byte(r))
			case !ensureASCII && r >= ' ':
				dst = utf8.AppendRune(dst, r)
			case r > 0xffff:
				r -= 0x10000
				u4(0xd800 | (r>>10)&0x3ff)
				u4(0xdc00 | r&0x3ff)
			default:
				u4(r)
			}
		}
	}
	return append(dst, '"')
}

// FormatNumber renders a JSON number literal the way Python's json.loads
// then json.dumps re-serialises it: integers exactly ("-0" becomes "0"),
// everything else as a float (FormatFloat; out-of-range literals become
// Infinity, -Infinity or 0.0).
func FormatNumber(lit string) string {
	if IsIntLiteral(lit) {
		if n, ok := new(big.Int).SetString(lit, 10); ok {
			return n.String()
		}
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return lit // not a number literal
	}
	return FormatFloat(f)
}

// FormatFloat is Python's repr(float) as json.dumps writes it: the
// shortest round-tripping digits, positional when the decimal exponent is
// in [-4, 16) with at least one fractional digit ("16.0", "0.0001"), else
// scientific with a signed exponent of at least two digits ("1e-05",
// "1e+16"); NaN, Infinity and -Infinity for non-finite values.
func FormatFloat(f float64) string {
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
		e, esign := exp, "+"
		if e < 0 {
			esign, e = "-", -e
		}
		es := strconv.Itoa(e)
		if len(es) < 2 {
			es = "0" + es
		}
		return sign + mant + "e" + esign + es
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
