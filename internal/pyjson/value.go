// Package pyjson reads and writes JSON the way Python's json module does:
// an ordered value tree (object members keep their order, numbers keep
// their literal text), a decoder with json.loads's grammar (NaN, Infinity,
// duplicate keys: last value wins at the first key's position), and a
// writer that reproduces json.dumps byte for byte (indent, sort_keys,
// ensure_ascii, separators, float.__repr__).
package pyjson

import (
	"strconv"
	"strings"
)

// Kind is the type of a Value.
type Kind uint8

// The kinds of Value; the zero Value is null.
const (
	KindNull Kind = iota
	KindBool
	KindNumber // Str holds the literal (JSON syntax, or NaN, Infinity, -Infinity)
	KindString
	KindArray
	KindObject
)

// Value is one JSON value.
type Value struct {
	Kind Kind
	Bool bool     // KindBool
	Str  string   // KindString: the text; KindNumber: the literal
	Arr  []Value  // KindArray
	Obj  []Member // KindObject, in order
}

// Member is one object member.
type Member struct {
	Key   string
	Value Value
}

// Null is the JSON null (the zero Value).
var Null = Value{}

// Bool returns a JSON boolean.
func Bool(b bool) Value { return Value{Kind: KindBool, Bool: b} }

// String returns a JSON string.
func String(s string) Value { return Value{Kind: KindString, Str: s} }

// Number returns a number with literal lit, which must be JSON number
// syntax or NaN, Infinity, -Infinity.
func Number(lit string) Value { return Value{Kind: KindNumber, Str: lit} }

// Int returns an integer number.
func Int(i int64) Value { return Number(strconv.FormatInt(i, 10)) }

// Float returns a float number, written as Python's repr(float) (so it
// reads back as a float: 16.0, not 16).
func Float(f float64) Value { return Number(FormatFloat(f)) }

// Array returns an array of elems (never nil, so it is "[]" when empty).
func Array(elems ...Value) Value {
	if elems == nil {
		elems = []Value{}
	}
	return Value{Kind: KindArray, Arr: elems}
}

// Object returns an object with members in that order (never nil).
func Object(members ...Member) Value {
	if members == nil {
		members = []Member{}
	}
	return Value{Kind: KindObject, Obj: members}
}

// Strings returns an array of strings.
func Strings(l []string) Value {
	v := Value{Kind: KindArray, Arr: make([]Value, len(l))}
	for i, s := range l {
		v.Arr[i] = String(s)
	}
	return v
}

// Get returns the member called key of an object.
func (v *Value) Get(key string) (*Value, bool) {
	for i := range v.Obj {
		if v.Obj[i].Key == key {
			return &v.Obj[i].Value, true
		}
	}
	return nil, false
}

// Set replaces the member key in place, or appends it.
func (v *Value) Set(key string, val Value) {
	if p, ok := v.Get(key); ok {
		*p = val
		return
	}
	v.Obj = append(v.Obj, Member{key, val})
}

// Remove deletes the member key; it reports whether it was present.
func (v *Value) Remove(key string) bool {
	for i := range v.Obj {
		if v.Obj[i].Key == key {
			v.Obj = append(v.Obj[:i], v.Obj[i+1:]...)
			return true
		}
	}
	return false
}

// IsInt reports whether v is a number that Python's json module reads as
// an int (a literal -?digits; fractions, exponents, NaN and Infinity make
// a float).
func (v Value) IsInt() bool { return v.Kind == KindNumber && IsIntLiteral(v.Str) }

// IsIntLiteral reports whether a JSON number literal is -?digits.
func IsIntLiteral(lit string) bool {
	lit = strings.TrimPrefix(lit, "-")
	if lit == "" {
		return false
	}
	for i := 0; i < len(lit); i++ {
		if lit[i] < '0' || lit[i] > '9' {
			return false
		}
	}
	return true
}

// Truthy is Python's bool() of v.
func (v Value) Truthy() bool {
	switch v.Kind {
	case KindBool:
		return v.Bool
	case KindNumber:
		f, err := strconv.ParseFloat(v.Str, 64)
		return err != nil || f != 0 // out-of-range literals are non-zero
	case KindString:
		return v.Str != ""
	case KindArray:
		return len(v.Arr) > 0
	case KindObject:
		return len(v.Obj) > 0
	}
	return false
}
