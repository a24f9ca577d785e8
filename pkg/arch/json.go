package arch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// object is one JSON object of a config.json (the file itself, its text_config
// or a rope block) with typed, bounded getters. A getter distinguishes a key
// that is absent (the config class's default applies) from one set to null
// (transformers' None) where that matters. Every error names the key and
// wraps ErrConfig.
type object struct {
	where string // "config.json", "text_config", "rope_scaling", ... for messages
	m     map[string]json.RawMessage
}

func parseObject(where string, b []byte) (*object, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]json.RawMessage
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrConfig, where, err)
	}
	if m == nil {
		return nil, fmt.Errorf("%w: %s: not a JSON object", ErrConfig, where)
	}
	return &object{where: where, m: m}, nil
}

// key formats a key for messages: "rope_scaling.factor".
func (o *object) key(k string) string {
	if o.where == "config.json" {
		return k
	}
	return o.where + "." + k
}

func (o *object) errorf(k, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, o.key(k), fmt.Sprintf(format, a...))
}

// raw returns the value of k, and whether it is present and not null.
func (o *object) raw(k string) (json.RawMessage, bool) {
	v, ok := o.m[k]
	if !ok || isNull(v) {
		return nil, false
	}
	return v, true
}

// present reports whether k is in the object, even as null.
func (o *object) present(k string) bool {
	_, ok := o.m[k]
	return ok
}

// isNull reports whether k is present and null.
func (o *object) isNull(k string) bool {
	v, ok := o.m[k]
	return ok && isNull(v)
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// number reads k as a finite number; ok is false when absent or null.
func (o *object) number(k string) (v float64, ok bool, err error) {
	r, ok := o.raw(k)
	if !ok {
		return 0, false, nil
	}
	var n json.Number
	if t := bytes.TrimSpace(r); len(t) > 0 && t[0] == '"' || json.Unmarshal(r, &n) != nil {
		return 0, false, o.errorf(k, "want a number, got %s", short(r))
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false, o.errorf(k, "want a finite number, got %s", short(r))
	}
	return f, true, nil
}

// integer reads k as an integer in [lo, hi] (an integral float such as 4096.0
// is accepted, as Python's json would load it as a float that transformers
// then uses); def is returned when k is absent or null.
func (o *object) integer(k string, def, lo, hi int) (int, error) {
	v, ok, err := o.optInteger(k, lo, hi)
	if err != nil || !ok {
		return def, err
	}
	return v, nil
}

// optInteger is integer without a default: ok is false when absent or null.
func (o *object) optInteger(k string, lo, hi int) (int, bool, error) {
	f, ok, err := o.number(k)
	if err != nil || !ok {
		return 0, false, err
	}
	if f != math.Trunc(f) || f < float64(lo) || f > float64(hi) {
		return 0, false, o.errorf(k, "%v is not an integer in [%d, %d]", f, lo, hi)
	}
	return int(f), true, nil
}

// float reads k as a number in [lo, hi]; def when absent or null.
func (o *object) float(k string, def, lo, hi float64) (float64, error) {
	f, ok, err := o.number(k)
	if err != nil || !ok {
		return def, err
	}
	if f < lo || f > hi {
		return 0, o.errorf(k, "%v is out of range [%g, %g]", f, lo, hi)
	}
	return f, nil
}

// boolean reads k; def when absent or null.
func (o *object) boolean(k string, def bool) (bool, error) {
	r, ok := o.raw(k)
	if !ok {
		return def, nil
	}
	var b bool
	if err := json.Unmarshal(r, &b); err != nil {
		return false, o.errorf(k, "want true or false, got %s", short(r))
	}
	return b, nil
}

// str reads k as a string; def when absent or null.
func (o *object) str(k, def string) (string, error) {
	r, ok := o.raw(k)
	if !ok {
		return def, nil
	}
	var s string
	if err := json.Unmarshal(r, &s); err != nil {
		return "", o.errorf(k, "want a string, got %s", short(r))
	}
	if len(s) > 256 {
		return "", o.errorf(k, "string of %d bytes", len(s))
	}
	return s, nil
}

// strs reads k as a list of at most max strings; nil when absent or null.
func (o *object) strs(k string, max int) ([]string, error) {
	r, ok := o.raw(k)
	if !ok {
		return nil, nil
	}
	var s []string
	if err := json.Unmarshal(r, &s); err != nil {
		return nil, o.errorf(k, "want a list of strings, got %s", short(r))
	}
	if len(s) > max {
		return nil, o.errorf(k, "%d entries (at most %d)", len(s), max)
	}
	return s, nil
}

// floats reads k as a list of at most max finite numbers; nil when absent or null.
func (o *object) floats(k string, max int) ([]float64, error) {
	r, ok := o.raw(k)
	if !ok {
		return nil, nil
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(r, &raws); err != nil {
		return nil, o.errorf(k, "want a list of numbers, got %s", short(r))
	}
	if len(raws) > max {
		return nil, o.errorf(k, "%d entries (at most %d)", len(raws), max)
	}
	ns := make([]json.Number, len(raws))
	for i, e := range raws {
		if t := bytes.TrimSpace(e); len(t) > 0 && t[0] == '"' || json.Unmarshal(e, &ns[i]) != nil {
			return nil, o.errorf(k, "entry %d: %s is not a number", i, short(e))
		}
	}
	out := make([]float64, len(ns))
	for i, n := range ns {
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, o.errorf(k, "entry %d: %q is not a finite number", i, string(n))
		}
		out[i] = f
	}
	return out, nil
}

// sub reads k as a nested object; nil when absent or null.
func (o *object) sub(k string) (*object, error) {
	r, ok := o.raw(k)
	if !ok {
		return nil, nil
	}
	s, err := parseObject(o.key(k), r)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// tokenIDs reads a token id field that may be absent, null, an integer or a
// list of integers.
func (o *object) tokenIDs(k string) ([]int, error) {
	r, ok := o.raw(k)
	if !ok {
		return nil, nil
	}
	if id, ok, err := o.optInteger(k, 0, 1<<31-1); err == nil && ok {
		return []int{id}, nil
	}
	vals, err := o.floats(k, 64)
	if err != nil {
		return nil, o.errorf(k, "want a token id or a list of at most 64, got %s", short(r))
	}
	ids := make([]int, len(vals))
	for i, v := range vals {
		if v != math.Trunc(v) || v < 0 || v > 1<<31-1 {
			return nil, o.errorf(k, "entry %d: %v is not a token id", i, v)
		}
		ids[i] = int(v)
	}
	return ids, nil
}

// short quotes a raw value for a message, cut to a readable length.
func short(r json.RawMessage) string {
	s := string(bytes.TrimSpace(r))
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}
