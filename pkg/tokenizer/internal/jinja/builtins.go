package jinja

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// globals are the functions every template sees (transformers adds
// raise_exception; strftime_now is left to the caller, who decides the time).
var globals = map[string]any{
	"raise_exception": callable(func(args []any, _ *Dict) (any, error) {
		msg := ""
		if len(args) > 0 {
			msg = str(args[0])
		}
		return nil, &Exception{msg}
	}),
	"range": callable(func(args []any, _ *Dict) (any, error) {
		var n [3]int64
		n[2] = 1
		for i, a := range args {
			v, _, isF, ok := num(a)
			if !ok || isF || i > 2 {
				return nil, fmt.Errorf("jinja: bad range() argument")
			}
			n[i] = v
		}
		start, stop, step := int64(0), n[0], n[2]
		if len(args) >= 2 {
			start, stop = n[0], n[1]
		}
		if step == 0 {
			return nil, fmt.Errorf("jinja: range() step must not be zero")
		}
		var out []any
		for i := start; (step > 0 && i < stop) || (step < 0 && i > stop); i += step {
			if len(out) >= 100000 {
				return nil, fmt.Errorf("jinja: range too big")
			}
			out = append(out, i)
		}
		return out, nil
	}),
	"dict": callable(func(args []any, kw *Dict) (any, error) {
		d := NewDict()
		for _, a := range args {
			if src, ok := a.(*Dict); ok {
				for _, k := range src.keys {
					d.Set(k, src.m[k])
				}
			}
		}
		if kw != nil {
			for _, k := range kw.keys {
				d.Set(k, kw.m[k])
			}
		}
		return d, nil
	}),
	"namespace": callable(func(args []any, kw *Dict) (any, error) {
		d := NewDict()
		for _, a := range args {
			if src, ok := a.(*Dict); ok {
				for _, k := range src.keys {
					d.Set(k, src.m[k])
				}
			}
		}
		if kw != nil {
			for _, k := range kw.keys {
				d.Set(k, kw.m[k])
			}
		}
		return &Namespace{d}, nil
	}),
}

// pyIsSpace is Python's str.isspace for one rune.
func pyIsSpace(r rune) bool {
	switch {
	case r >= 0x09 && r <= 0x0d, r >= 0x1c && r <= 0x20, r == 0x85, r == 0xa0, r == 0x1680,
		r >= 0x2000 && r <= 0x200a, r == 0x2028, r == 0x2029, r == 0x202f, r == 0x205f, r == 0x3000:
		return true
	}
	return false
}

// strip is str.strip/lstrip/rstrip keeping taint (marks are clipped).
func strip(v any, chars *string, left, right bool) any {
	s, _ := plain(v)
	in := func(r rune) bool {
		if chars == nil {
			return pyIsSpace(r)
		}
		return strings.ContainsRune(*chars, r)
	}
	a, b := 0, len(s)
	for left && a < b {
		r, w := utf8.DecodeRuneInString(s[a:])
		if !in(r) {
			break
		}
		a += w
	}
	for right && b > a {
		r, w := utf8.DecodeLastRuneInString(s[a:b])
		if !in(r) {
			break
		}
		b -= w
	}
	return substr(v, a, b)
}

// substr returns v[a:b] keeping the marks that overlap it (clipped).
func substr(v any, a, b int) any {
	t, ok := v.(Tainted)
	if !ok {
		s, _ := plain(v)
		return s[a:b]
	}
	out := Tainted{S: t.S[a:b]}
	for _, m := range t.Marks {
		lo, hi := max(m.Start, a), min(m.End, b)
		if lo > hi || (lo == hi && m.Start != m.End) {
			continue
		}
		out.Marks = append(out.Marks, Mark{lo - a, hi - a, m.Tag})
	}
	if len(out.Marks) == 0 {
		// Keep an empty mark so that an all-whitespace tainted string is
		// still located in the output.
		for _, m := range t.Marks {
			p := min(max(m.Start, a), b) - a
			out.Marks = append(out.Marks, Mark{p, p, m.Tag})
			break
		}
	}
	return out
}

func pyTitle(s string, capOnly bool) string {
	var b strings.Builder
	prevCased := false
	for i, r := range s {
		if capOnly {
			if i == 0 {
				b.WriteRune(unicode.ToUpper(r))
			} else {
				b.WriteRune(unicode.ToLower(r))
			}
			continue
		}
		if unicode.IsLetter(r) {
			if prevCased {
				b.WriteRune(unicode.ToLower(r))
			} else {
				b.WriteRune(unicode.ToTitle(r))
			}
			prevCased = true
		} else {
			b.WriteRune(r)
			prevCased = false
		}
	}
	return b.String()
}

func optStr(args []any, i int) *string {
	if i < len(args) && args[i] != nil {
		if s, ok := plain(args[i]); ok {
			return &s
		}
	}
	return nil
}

// pySplit returns the byte ranges of the parts of Python's
// s.split(sep, maxsplit).
func pySplit(s string, sep *string, maxsplit int) [][2]int {
	var parts [][2]int
	if sep == nil {
		i := 0
		for {
			for i < len(s) {
				r, w := utf8.DecodeRuneInString(s[i:])
				if !pyIsSpace(r) {
					break
				}
				i += w
			}
			if i == len(s) {
				return parts
			}
			if maxsplit >= 0 && len(parts) == maxsplit {
				// The remainder keeps its trailing whitespace.
				return append(parts, [2]int{i, len(s)})
			}
			j := i
			for j < len(s) {
				r, w := utf8.DecodeRuneInString(s[j:])
				if pyIsSpace(r) {
					break
				}
				j += w
			}
			parts = append(parts, [2]int{i, j})
			i = j
		}
	}
	start := 0
	for maxsplit < 0 || len(parts) < maxsplit {
		k := strings.Index(s[start:], *sep)
		if k < 0 {
			break
		}
		parts = append(parts, [2]int{start, start + k})
		start += k + len(*sep)
	}
	return append(parts, [2]int{start, len(s)})
}

func method(f func(args []any, kw *Dict) (any, error)) callable { return callable(f) }

func strMethod(v any, name string) (any, bool) {
	s, _ := plain(v)
	switch name {
	case "strip", "lstrip", "rstrip":
		return method(func(args []any, _ *Dict) (any, error) {
			return strip(v, optStr(args, 0), name != "rstrip", name != "lstrip"), nil
		}), true
	case "split", "rsplit":
		return method(func(args []any, kw *Dict) (any, error) {
			maxsplit := -1
			if len(args) > 1 {
				if n, _, _, ok := num(args[1]); ok {
					maxsplit = int(n)
				}
			}
			if name == "rsplit" && maxsplit >= 0 {
				return nil, fmt.Errorf("jinja: rsplit with maxsplit is not supported")
			}
			sep := optStr(args, 0)
			if sep != nil && *sep == "" {
				return nil, fmt.Errorf("jinja: empty separator")
			}
			// The parts keep the taint of the string they come from.
			var out []any
			for _, p := range pySplit(s, sep, maxsplit) {
				out = append(out, substr(v, p[0], p[1]))
			}
			if out == nil {
				out = []any{}
			}
			return out, nil
		}), true
	case "splitlines":
		return method(func([]any, *Dict) (any, error) {
			var out []any
			for _, l := range strings.Split(strings.TrimSuffix(normalizeSource(s+"\n"), "\n"), "\n") {
				out = append(out, l)
			}
			if s == "" {
				out = []any{}
			}
			return out, nil
		}), true
	case "startswith", "endswith":
		return method(func(args []any, _ *Dict) (any, error) {
			if len(args) == 0 {
				return nil, fmt.Errorf("jinja: %s needs an argument", name)
			}
			cands := []any{args[0]}
			if l, ok := seq(args[0]); ok {
				cands = l
			}
			for _, c := range cands {
				p, _ := plain(c)
				if (name == "startswith" && strings.HasPrefix(s, p)) || (name == "endswith" && strings.HasSuffix(s, p)) {
					return true, nil
				}
			}
			return false, nil
		}), true
	case "upper":
		return method(func([]any, *Dict) (any, error) { return strings.ToUpper(s), nil }), true
	case "lower":
		return method(func([]any, *Dict) (any, error) { return strings.ToLower(s), nil }), true
	case "title":
		return method(func([]any, *Dict) (any, error) { return pyTitle(s, false), nil }), true
	case "capitalize":
		return method(func([]any, *Dict) (any, error) { return pyTitle(s, true), nil }), true
	case "replace":
		return method(func(args []any, _ *Dict) (any, error) {
			if len(args) < 2 {
				return nil, fmt.Errorf("jinja: replace needs 2 arguments")
			}
			o, _ := plain(args[0])
			n, _ := plain(args[1])
			count := -1
			if len(args) > 2 {
				if c, _, _, ok := num(args[2]); ok {
					count = int(c)
				}
			}
			return strings.Replace(s, o, n, count), nil
		}), true
	case "find", "count", "index", "rfind":
		return method(func(args []any, _ *Dict) (any, error) {
			sub := ""
			if len(args) > 0 {
				sub, _ = plain(args[0])
			}
			switch name {
			case "count":
				return int64(strings.Count(s, sub)), nil
			case "rfind":
				return runeIndex(s, strings.LastIndex(s, sub)), nil
			}
			k := strings.Index(s, sub)
			if k < 0 && name == "index" {
				return nil, fmt.Errorf("jinja: substring not found")
			}
			return runeIndex(s, k), nil
		}), true
	case "join":
		return method(func(args []any, _ *Dict) (any, error) {
			if len(args) == 0 {
				return nil, fmt.Errorf("jinja: join needs an argument")
			}
			items, err := iterate(args[0])
			if err != nil {
				return nil, err
			}
			return joinVals(items, s), nil
		}), true
	case "isdigit", "isalpha", "isalnum", "isspace", "isupper", "islower":
		return method(func([]any, *Dict) (any, error) {
			if s == "" {
				return false, nil
			}
			cased := false
			for _, r := range s {
				ok := true
				switch name {
				case "isdigit":
					ok = unicode.IsDigit(r)
				case "isalpha":
					ok = unicode.IsLetter(r)
				case "isalnum":
					ok = unicode.IsLetter(r) || unicode.IsNumber(r)
				case "isspace":
					ok = pyIsSpace(r)
				case "isupper":
					ok = !unicode.IsLower(r)
					cased = cased || unicode.IsUpper(r)
				case "islower":
					ok = !unicode.IsUpper(r)
					cased = cased || unicode.IsLower(r)
				}
				if !ok {
					return false, nil
				}
			}
			if name == "isupper" || name == "islower" {
				return cased, nil
			}
			return true, nil
		}), true
	}
	return nil, false
}

func runeIndex(s string, k int) int64 {
	if k < 0 {
		return -1
	}
	return int64(utf8.RuneCountInString(s[:k]))
}

func joinVals(items []any, sep string) any {
	var acc any = ""
	for i, it := range items {
		if i > 0 {
			acc = concatTainted(acc, sep)
		}
		acc = concatTainted(acc, toStrVal(it))
	}
	return acc
}

func dictMethod(d *Dict, name string) (any, bool) {
	switch name {
	case "items":
		return method(func([]any, *Dict) (any, error) { return dictItems(d), nil }), true
	case "keys":
		return method(func([]any, *Dict) (any, error) {
			l := make([]any, len(d.keys))
			for i, k := range d.keys {
				l[i] = k
			}
			return l, nil
		}), true
	case "values":
		return method(func([]any, *Dict) (any, error) {
			l := make([]any, len(d.keys))
			for i, k := range d.keys {
				l[i] = d.m[k]
			}
			return l, nil
		}), true
	case "get":
		return method(func(args []any, _ *Dict) (any, error) {
			if len(args) == 0 {
				return nil, fmt.Errorf("jinja: get needs a key")
			}
			k, _ := plain(args[0])
			if v, ok := d.Get(k); ok {
				return v, nil
			}
			if len(args) > 1 {
				return args[1], nil
			}
			return nil, nil
		}), true
	}
	return nil, false
}

func dictItems(d *Dict) []any {
	l := make([]any, len(d.keys))
	for i, k := range d.keys {
		l[i] = Tuple{k, d.m[k]}
	}
	return l
}

func getAttr(o any, name string) (any, error) {
	switch x := o.(type) {
	case Undefined:
		return nil, fmt.Errorf("jinja: '%s' is undefined (getting attribute %q)", x.Name, name)
	case *Dict:
		if m, ok := dictMethod(x, name); ok {
			return m, nil
		}
		if v, ok := x.Get(name); ok {
			return v, nil
		}
		return Undefined{name}, nil
	case *Namespace:
		if v, ok := x.d.Get(name); ok {
			return v, nil
		}
		return Undefined{name}, nil
	case *loopVal:
		return x.attr(name), nil
	case string, Tainted:
		if m, ok := strMethod(x, name); ok {
			return m, nil
		}
	case []any:
		if name == "append" || name == "pop" || name == "insert" || name == "extend" || name == "remove" || name == "clear" || name == "sort" || name == "reverse" {
			return nil, fmt.Errorf("jinja: access to attribute %q of 'list' object is unsafe", name)
		}
	}
	return Undefined{name}, nil
}

func getItem(o, k any) (any, error) {
	switch x := o.(type) {
	case Undefined:
		return nil, fmt.Errorf("jinja: '%s' is undefined (getting item %s)", x.Name, repr(k))
	case *Dict:
		if ks, ok := plain(k); ok {
			if v, ok := x.Get(ks); ok {
				return v, nil
			}
			if m, ok := dictMethod(x, ks); ok {
				return m, nil
			}
		}
		return Undefined{repr(k)}, nil
	case *Namespace:
		if ks, ok := plain(k); ok {
			if v, ok := x.d.Get(ks); ok {
				return v, nil
			}
		}
		return Undefined{repr(k)}, nil
	case *loopVal:
		if ks, ok := plain(k); ok {
			return x.attr(ks), nil
		}
		return Undefined{repr(k)}, nil
	case []any, Tuple:
		l, _ := seq(x)
		if i, _, isF, ok := num(k); ok && !isF {
			if i < 0 {
				i += int64(len(l))
			}
			if i >= 0 && i < int64(len(l)) {
				return l[i], nil
			}
		}
		return Undefined{repr(k)}, nil
	case string, Tainted:
		if i, _, isF, ok := num(k); ok && !isF {
			s, _ := plain(x)
			rs := []rune(s)
			if i < 0 {
				i += int64(len(rs))
			}
			if i >= 0 && i < int64(len(rs)) {
				return string(rs[i]), nil
			}
			return Undefined{repr(k)}, nil
		}
		if ks, ok := plain(k); ok {
			return getAttr(x, ks)
		}
	}
	return Undefined{repr(k)}, nil
}

// sliceIdx resolves Python slice bounds for length n.
func sliceIdx(lo, hi, st any, n int) (start, stop, step int, err error) {
	step = 1
	if st != nil {
		v, _, isF, ok := num(st)
		if !ok || isF || v == 0 {
			return 0, 0, 0, fmt.Errorf("jinja: bad slice step")
		}
		step = int(v)
	}
	get := func(v any, def int) (int, error) {
		if v == nil {
			return def, nil
		}
		i, _, isF, ok := num(v)
		if !ok || isF {
			return 0, fmt.Errorf("jinja: slice indices must be integers")
		}
		x := int(i)
		if x < 0 {
			x += n
		}
		if step > 0 {
			return min(max(x, 0), n), nil
		}
		return min(max(x, -1), n-1), nil
	}
	if step > 0 {
		start, err = get(lo, 0)
		if err == nil {
			stop, err = get(hi, n)
		}
	} else {
		start, err = get(lo, n-1)
		if err == nil {
			stop, err = get(hi, -1)
		}
	}
	return start, stop, step, err
}

func slice(o, lo, hi, st any) (any, error) {
	switch x := o.(type) {
	case []any, Tuple:
		l, _ := seq(x)
		a, b, step, err := sliceIdx(lo, hi, st, len(l))
		if err != nil {
			return nil, err
		}
		out := []any{}
		for i := a; (step > 0 && i < b) || (step < 0 && i > b); i += step {
			out = append(out, l[i])
		}
		if _, ok := x.(Tuple); ok {
			return Tuple(out), nil
		}
		return out, nil
	case string, Tainted:
		s, _ := plain(x)
		if s == "" || isASCII(s) {
			a, b, step, err := sliceIdx(lo, hi, st, len(s))
			if err != nil {
				return nil, err
			}
			if step == 1 {
				if a > b {
					return "", nil
				}
				return substr(x, a, b), nil
			}
		}
		rs := []rune(s)
		a, b, step, err := sliceIdx(lo, hi, st, len(rs))
		if err != nil {
			return nil, err
		}
		var out []rune
		for i := a; (step > 0 && i < b) || (step < 0 && i > b); i += step {
			out = append(out, rs[i])
		}
		return string(out), nil
	case Undefined:
		return nil, fmt.Errorf("jinja: '%s' is undefined", x.Name)
	}
	return nil, fmt.Errorf("jinja: %s object is not subscriptable", typeName(o))
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func length(v any) (int64, error) {
	switch x := v.(type) {
	case string, Tainted:
		s, _ := plain(x)
		return int64(utf8.RuneCountInString(s)), nil
	case []any:
		return int64(len(x)), nil
	case Tuple:
		return int64(len(x)), nil
	case *Dict:
		return int64(x.Len()), nil
	case Undefined:
		return 0, nil
	}
	return 0, fmt.Errorf("jinja: object of type %s has no len()", typeName(v))
}

func kwOr(kw *Dict, name string, args []any, i int, def any) any {
	if kw != nil {
		if v, ok := kw.Get(name); ok {
			return v
		}
	}
	if i >= 0 && i < len(args) {
		return args[i]
	}
	return def
}

func (r *renderer) applyFilter(f *eFilter, v any) (any, error) {
	args, kw, err := r.evalArgs(f.args, f.kwnames, f.kwargs)
	if err != nil {
		return nil, err
	}
	return r.filter(f.name, v, args, kw)
}

func (r *renderer) filter(name string, v any, args []any, kw *Dict) (any, error) {
	switch name {
	case "trim":
		return strip(toStrVal(v), optStr(args, 0), true, true), nil
	case "tojson":
		indent := -1
		if iv := kwOr(kw, "indent", args, 0, nil); iv != nil {
			n, _, _, ok := num(iv)
			if !ok {
				return nil, fmt.Errorf("jinja: tojson indent must be an integer")
			}
			indent = int(n)
		}
		itemSep, keySep := ", ", ": "
		if indent >= 0 {
			itemSep = ","
		}
		if sv, ok := seq(kwOr(kw, "separators", nil, -1, nil)); ok && len(sv) == 2 {
			itemSep, _ = plain(sv[0])
			keySep, _ = plain(sv[1])
		}
		sortKeys := truthy(kwOr(kw, "sort_keys", nil, -1, false))
		out, err := toJSON(v, indent, itemSep, keySep, sortKeys)
		if err != nil {
			return nil, err
		}
		// JSON of tainted input (tool-call arguments) is tainted as a whole.
		if tag, ok := taintTag(v, 0); ok {
			return Taint(out, tag), nil
		}
		return out, nil
	case "length", "count":
		return length(v)
	case "string":
		return toStrVal(v), nil
	case "safe", "e", "escape", "forceescape":
		if name == "safe" {
			return v, nil
		}
		s := str(v)
		return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "\"", "&#34;", "'", "&#39;").Replace(s), nil
	case "upper", "lower", "title", "capitalize":
		m, _ := strMethod(str(v), name)
		return m.(callable)(nil, nil)
	case "replace":
		m, _ := strMethod(str(v), "replace")
		return m.(callable)(args, nil)
	case "join":
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		sep := ""
		if s := optStr(args, 0); s != nil {
			sep = *s
		}
		if a := kwOr(kw, "attribute", args, 1, nil); a != nil {
			for i, it := range items {
				if items[i], err = getAttr(it, str(a)); err != nil {
					return nil, err
				}
			}
		}
		return joinVals(items, sep), nil
	case "first", "last":
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		if len(items) == 0 {
			return Undefined{name}, nil
		}
		if name == "first" {
			return items[0], nil
		}
		return items[len(items)-1], nil
	case "list":
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		return append([]any{}, items...), nil
	case "default", "d":
		def := kwOr(kw, "default_value", args, 0, "")
		boolean := truthy(kwOr(kw, "boolean", args, 1, false))
		if isUndef(v) || (boolean && !truthy(v)) {
			return def, nil
		}
		return v, nil
	case "int":
		switch x := v.(type) {
		case int64:
			return x, nil
		case float64:
			return int64(x), nil
		case bool:
			return b2i(x), nil
		case string, Tainted:
			s, _ := plain(x)
			if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
				return n, nil
			}
			if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
				return int64(f), nil
			}
		}
		return kwOr(kw, "default", args, 0, int64(0)), nil
	case "float":
		if _, f, _, ok := num(v); ok {
			return f, nil
		}
		if s, ok := plain(v); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
				return f, nil
			}
		}
		return kwOr(kw, "default", args, 0, 0.0), nil
	case "abs":
		i, f, isF, ok := num(v)
		if !ok {
			return nil, fmt.Errorf("jinja: bad operand for abs()")
		}
		if isF {
			return math.Abs(f), nil
		}
		if i < 0 {
			return -i, nil
		}
		return i, nil
	case "round":
		_, f, _, ok := num(v)
		if !ok {
			return nil, fmt.Errorf("jinja: bad operand for round()")
		}
		prec := int64(0)
		if p := kwOr(kw, "precision", args, 0, nil); p != nil {
			prec, _, _, _ = num(p)
		}
		meth := str(kwOr(kw, "method", args, 1, "common"))
		m := math.Pow(10, float64(prec))
		switch meth {
		case "ceil":
			return math.Ceil(f*m) / m, nil
		case "floor":
			return math.Floor(f*m) / m, nil
		}
		return math.Round(f*m) / m, nil
	case "items":
		switch x := v.(type) {
		case *Dict:
			return dictItems(x), nil
		case Undefined:
			return []any{}, nil
		}
		return nil, fmt.Errorf("jinja: items filter needs a mapping")
	case "dictsort":
		d, ok := v.(*Dict)
		if !ok {
			return nil, fmt.Errorf("jinja: dictsort needs a mapping")
		}
		items := dictItems(d)
		slices.SortStableFunc(items, func(a, b any) int {
			ka := strings.ToLower(a.(Tuple)[0].(string))
			kb := strings.ToLower(b.(Tuple)[0].(string))
			return strings.Compare(ka, kb)
		})
		return items, nil
	case "reverse":
		if s, ok := plain(v); ok {
			rs := []rune(s)
			slices.Reverse(rs)
			return string(rs), nil
		}
		items, err := iterate(v)
		if err != nil {
			return nil, err
		}
		out := append([]any{}, items...)
		slices.Reverse(out)
		return out, nil
	case "map", "select", "reject", "selectattr", "rejectattr", "sort", "unique", "sum", "min", "max":
		return r.seqFilter(name, v, args, kw)
	case "indent":
		s := str(v)
		width := kwOr(kw, "width", args, 0, int64(4))
		ind := ""
		if ws, ok := plain(width); ok {
			ind = ws
		} else if n, _, _, ok := num(width); ok {
			ind = strings.Repeat(" ", int(max(n, 0)))
		}
		first := truthy(kwOr(kw, "first", args, 1, false))
		blank := truthy(kwOr(kw, "blank", args, 2, false))
		s += "\n"
		lines := strings.Split(strings.TrimSuffix(normalizeSource(s+"\n"), "\n"), "\n")
		var rv string
		if blank {
			rv = strings.Join(lines, "\n"+ind)
		} else {
			rv = lines[0]
			if len(lines) > 1 {
				rest := make([]string, len(lines)-1)
				for i, l := range lines[1:] {
					if l != "" {
						l = ind + l
					}
					rest[i] = l
				}
				rv += "\n" + strings.Join(rest, "\n")
			}
		}
		if first {
			rv = ind + rv
		}
		return rv, nil
	case "wordcount":
		return int64(len(strings.FieldsFunc(str(v), func(r rune) bool { return !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_') }))), nil
	}
	return nil, fmt.Errorf("jinja: unknown filter %q", name)
}

func (r *renderer) seqFilter(name string, v any, args []any, kw *Dict) (any, error) {
	items, err := iterate(v)
	if err != nil {
		return nil, err
	}
	attrOf := func(it any, attr string) (any, error) {
		for _, part := range strings.Split(attr, ".") {
			var err error
			if it, err = getItem(it, part); err != nil {
				return nil, err
			}
		}
		return it, nil
	}
	switch name {
	case "map":
		out := []any{}
		if a := kwOr(kw, "attribute", nil, -1, nil); a != nil {
			def := kwOr(kw, "default", nil, -1, nil)
			for _, it := range items {
				x, err := attrOf(it, str(a))
				if err != nil {
					return nil, err
				}
				if isUndef(x) && def != nil {
					x = def
				}
				out = append(out, x)
			}
			return out, nil
		}
		if len(args) == 0 {
			return nil, fmt.Errorf("jinja: map needs a filter or attribute")
		}
		fname := str(args[0])
		for _, it := range items {
			x, err := r.filter(fname, it, args[1:], kw)
			if err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, nil
	case "select", "reject", "selectattr", "rejectattr":
		byAttr := strings.HasSuffix(name, "attr")
		want := strings.HasPrefix(name, "select")
		rest := args
		attr := ""
		if byAttr {
			if len(rest) == 0 {
				return nil, fmt.Errorf("jinja: %s needs an attribute", name)
			}
			attr = str(rest[0])
			rest = rest[1:]
		}
		out := []any{}
		for _, it := range items {
			x := it
			if byAttr {
				if x, err = attrOf(it, attr); err != nil {
					return nil, err
				}
			}
			var ok bool
			if len(rest) == 0 {
				ok = truthy(x)
			} else if ok, err = r.test(str(rest[0]), x, rest[1:]); err != nil {
				return nil, err
			}
			if ok == want {
				out = append(out, it)
			}
		}
		return out, nil
	case "sort", "unique", "min", "max":
		rev := truthy(kwOr(kw, "reverse", args, 0, false))
		cs := truthy(kwOr(kw, "case_sensitive", args, 1, false))
		attr := kwOr(kw, "attribute", args, 2, nil)
		if name != "sort" {
			rev = false
			cs = truthy(kwOr(kw, "case_sensitive", args, 0, false))
			attr = kwOr(kw, "attribute", args, 1, nil)
		}
		key := func(it any) (any, error) {
			if attr != nil {
				var err error
				if it, err = attrOf(it, str(attr)); err != nil {
					return nil, err
				}
			}
			if s, ok := plain(it); ok && !cs {
				return strings.ToLower(s), nil
			}
			return it, nil
		}
		keys := make([]any, len(items))
		for i, it := range items {
			if keys[i], err = key(it); err != nil {
				return nil, err
			}
		}
		if name == "unique" {
			out := []any{}
			var seen []any
			for i, it := range items {
				if !slices.ContainsFunc(seen, func(s any) bool { return equal(s, keys[i]) }) {
					seen = append(seen, keys[i])
					out = append(out, it)
				}
			}
			return out, nil
		}
		idx := make([]int, len(items))
		for i := range idx {
			idx[i] = i
		}
		var cmpErr error
		slices.SortStableFunc(idx, func(a, b int) int {
			lt, err := less(keys[a], keys[b])
			if err != nil {
				cmpErr = err
			}
			gt, _ := less(keys[b], keys[a])
			c := 0
			if lt {
				c = -1
			} else if gt {
				c = 1
			}
			if rev {
				c = -c
			}
			return c
		})
		if cmpErr != nil {
			return nil, cmpErr
		}
		out := make([]any, len(items))
		for i, k := range idx {
			out[i] = items[k]
		}
		switch name {
		case "min":
			if len(out) == 0 {
				return Undefined{"min"}, nil
			}
			return out[0], nil
		case "max":
			if len(out) == 0 {
				return Undefined{"max"}, nil
			}
			return out[len(out)-1], nil
		}
		return out, nil
	case "sum":
		var acc any = kwOr(kw, "start", args, 1, int64(0))
		attr := kwOr(kw, "attribute", args, 0, nil)
		for _, it := range items {
			if attr != nil {
				if it, err = attrOf(it, str(attr)); err != nil {
					return nil, err
				}
			}
			if acc, err = binop("+", acc, it); err != nil {
				return nil, err
			}
		}
		return acc, nil
	}
	return nil, fmt.Errorf("jinja: unknown filter %q", name)
}

func (r *renderer) test(name string, v any, args []any) (bool, error) {
	arg := func() (any, error) {
		if len(args) == 0 {
			return nil, fmt.Errorf("jinja: test %q needs an argument", name)
		}
		return args[0], nil
	}
	switch name {
	case "defined":
		return !isUndef(v), nil
	case "undefined":
		return isUndef(v), nil
	case "none":
		return v == nil, nil
	case "boolean":
		_, ok := v.(bool)
		return ok, nil
	case "true":
		b, ok := v.(bool)
		return ok && b, nil
	case "false":
		b, ok := v.(bool)
		return ok && !b, nil
	case "integer":
		_, ok := v.(int64)
		return ok, nil
	case "float":
		_, ok := v.(float64)
		return ok, nil
	case "number":
		_, _, _, ok := num(v)
		return ok, nil
	case "string":
		_, ok := plain(v)
		return ok, nil
	case "mapping":
		_, ok := v.(*Dict)
		return ok, nil
	case "iterable", "sequence":
		switch v.(type) {
		case string, Tainted, []any, Tuple, *Dict, Undefined:
			return true, nil
		}
		return false, nil
	case "callable":
		switch v.(type) {
		case callable, *Macro:
			return true, nil
		}
		return false, nil
	case "odd", "even":
		i, _, isF, ok := num(v)
		if !ok || isF {
			return false, fmt.Errorf("jinja: %s test needs an integer", name)
		}
		return (i%2 != 0) == (name == "odd"), nil
	case "divisibleby":
		a, err := arg()
		if err != nil {
			return false, err
		}
		i, _, _, ok1 := num(v)
		d, _, _, ok2 := num(a)
		if !ok1 || !ok2 || d == 0 {
			return false, fmt.Errorf("jinja: bad divisibleby")
		}
		return i%d == 0, nil
	case "lower", "upper":
		s, ok := plain(v)
		if !ok {
			return false, nil
		}
		if name == "lower" {
			return s == strings.ToLower(s), nil
		}
		return s == strings.ToUpper(s), nil
	case "in":
		a, err := arg()
		if err != nil {
			return false, err
		}
		return contains(a, v)
	case "sameas":
		a, err := arg()
		if err != nil {
			return false, err
		}
		switch v.(type) {
		case nil, bool:
			return v == a, nil
		}
		return equal(v, a), nil
	case "eq", "equalto", "==", "ne", "!=", "lt", "<", "le", "<=", "gt", ">", "ge", ">=":
		a, err := arg()
		if err != nil {
			return false, err
		}
		op := map[string]string{"eq": "==", "equalto": "==", "==": "==", "ne": "!=", "!=": "!=", "lt": "<", "<": "<",
			"le": "<=", "<=": "<=", "gt": ">", ">": ">", "ge": ">=", ">=": ">="}[name]
		return compare(op, v, a)
	}
	return false, fmt.Errorf("jinja: unknown test %q", name)
}
