// Package jinja renders the Jinja2 subset used by Hugging Face chat templates,
// as transformers renders them (an ImmutableSandboxedEnvironment with
// trim_blocks, lstrip_blocks and loop controls, and transformers' tojson).
// Strings can be tainted (see [Tainted]) to learn where their bytes end up in
// the output.
package jinja

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Template is a parsed template.
type Template struct {
	body []node
}

// Parse parses a template.
func Parse(src string) (*Template, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	body, _, err := p.parseBody()
	if err != nil {
		return nil, err
	}
	return &Template{body: body}, nil
}

// Result is a rendered template.
type Result struct {
	Text string
	// Marks are the output ranges of tainted input bytes, in output order.
	Marks []Mark
	// Generation are the output ranges of {% generation %} blocks.
	Generation [][2]int
}

// Exception is the error of raise_exception() in a template.
type Exception struct{ Msg string }

func (e *Exception) Error() string { return e.Msg }

var (
	errBreak    = errors.New("break")
	errContinue = errors.New("continue")
)

// maxSteps bounds the work of one render (a variable for tests).
var maxSteps = 5_000_000

const (
	maxOutput = 64 << 20
	maxDepth  = 200
)

type renderer struct {
	out    strings.Builder
	marks  []Mark
	gen    [][2]int
	scopes []map[string]any
	steps  int
	depth  int
}

// Render renders t with the given variables and globals.
func (t *Template) Render(vars map[string]any) (res Result, err error) {
	r := &renderer{}
	root := map[string]any{}
	for k, v := range globals {
		root[k] = v
	}
	for k, v := range vars {
		root[k] = FromGo(v)
	}
	r.scopes = []map[string]any{root}
	if err := r.exec(t.body); err != nil {
		if err == errBreak || err == errContinue {
			return Result{}, fmt.Errorf("jinja: break or continue outside a loop")
		}
		return Result{}, err
	}
	return Result{Text: r.out.String(), Marks: r.marks, Generation: r.gen}, nil
}

func (r *renderer) lookup(name string) any {
	for i := len(r.scopes) - 1; i >= 0; i-- {
		if v, ok := r.scopes[i][name]; ok {
			return v
		}
	}
	return Undefined{name}
}

func (r *renderer) write(v any) error {
	switch x := v.(type) {
	case Tainted:
		base := r.out.Len()
		for _, m := range x.Marks {
			r.marks = append(r.marks, Mark{base + m.Start, base + m.End, m.Tag})
		}
		r.out.WriteString(x.S)
	default:
		r.out.WriteString(str(v))
	}
	if r.out.Len() > maxOutput {
		return fmt.Errorf("jinja: output over %d bytes", maxOutput)
	}
	return nil
}

func (r *renderer) tick() error {
	r.steps++
	if r.steps > maxSteps {
		return fmt.Errorf("jinja: template runs too long")
	}
	return nil
}

func (r *renderer) exec(body []node) error {
	for _, n := range body {
		if err := r.tick(); err != nil {
			return err
		}
		switch n := n.(type) {
		case nData:
			r.out.WriteString(n.s)
		case nOutput:
			v, err := r.eval(n.e)
			if err != nil {
				return err
			}
			if err := r.write(v); err != nil {
				return err
			}
		case *nIf:
			done := false
			for i, c := range n.conds {
				v, err := r.eval(c)
				if err != nil {
					return err
				}
				if truthy(v) {
					if err := r.exec(n.bodies[i]); err != nil {
						return err
					}
					done = true
					break
				}
			}
			if !done && n.els != nil {
				if err := r.exec(n.els); err != nil {
					return err
				}
			}
		case *nFor:
			if err := r.execFor(n); err != nil {
				return err
			}
		case *nSet:
			if err := r.execSet(n); err != nil {
				return err
			}
		case *nMacro:
			r.scopes[len(r.scopes)-1][n.name] = &Macro{n: n, r: r, scope: r.scopes[0]}
		case nBreak:
			return errBreak
		case nContinue:
			return errContinue
		case nGeneration:
			start := r.out.Len()
			if err := r.exec(n.body); err != nil {
				return err
			}
			r.gen = append(r.gen, [2]int{start, r.out.Len()})
		case nFilterBlk:
			s, err := r.capture(n.body)
			if err != nil {
				return err
			}
			v, err := r.applyFilter(n.f, s)
			if err != nil {
				return err
			}
			if err := r.write(v); err != nil {
				return err
			}
		default:
			return fmt.Errorf("jinja: unknown node %T", n)
		}
	}
	return nil
}

// capture renders body into a string (marks inside it are kept, shifted).
func (r *renderer) capture(body []node) (any, error) {
	saved, savedMarks := r.out, r.marks
	r.out, r.marks = strings.Builder{}, nil
	err := r.exec(body)
	s, marks := r.out.String(), r.marks
	r.out, r.marks = saved, savedMarks
	if err != nil {
		return nil, err
	}
	if len(marks) > 0 {
		return Tainted{S: s, Marks: marks}, nil
	}
	return s, nil
}

func iterate(v any) ([]any, error) {
	switch x := v.(type) {
	case []any:
		return x, nil
	case Tuple:
		return x, nil
	case *Dict:
		l := make([]any, len(x.keys))
		for i, k := range x.keys {
			l[i] = k
		}
		return l, nil
	case string, Tainted:
		s, _ := plain(x)
		var l []any
		for _, c := range s {
			l = append(l, string(c))
		}
		return l, nil
	case Undefined:
		return nil, nil // iterating an undefined value yields nothing
	case nil:
		return nil, fmt.Errorf("jinja: 'NoneType' object is not iterable")
	}
	return nil, fmt.Errorf("jinja: %s object is not iterable", typeName(v))
}

func (r *renderer) execFor(n *nFor) error {
	it, err := r.eval(n.iter)
	if err != nil {
		return err
	}
	items, err := iterate(it)
	if err != nil {
		return err
	}
	// Each iteration gets a fresh scope: an assignment in the body does not
	// carry over to the next iteration (nor out of the loop), as in Jinja2.
	var scope map[string]any
	r.scopes = append(r.scopes, nil)
	defer func() { r.scopes = r.scopes[:len(r.scopes)-1] }()
	newScope := func() {
		scope = map[string]any{}
		r.scopes[len(r.scopes)-1] = scope
	}
	assign := func(item any) error {
		if len(n.targets) == 1 {
			scope[n.targets[0]] = item
			return nil
		}
		l, ok := seq(item)
		if !ok || len(l) != len(n.targets) {
			return fmt.Errorf("jinja: cannot unpack %s into %d names", typeName(item), len(n.targets))
		}
		for i, t := range n.targets {
			scope[t] = l[i]
		}
		return nil
	}
	if n.cond != nil { // loop filter: applied before loop.* is computed
		var kept []any
		for _, item := range items {
			newScope()
			if err := assign(item); err != nil {
				return err
			}
			c, err := r.eval(n.cond)
			if err != nil {
				return err
			}
			if truthy(c) {
				kept = append(kept, item)
			}
		}
		items = kept
	}
	if len(items) == 0 {
		newScope()
		if n.els != nil {
			return r.exec(n.els)
		}
		return nil
	}
	for i, item := range items {
		newScope()
		if err := assign(item); err != nil {
			return err
		}
		scope["loop"] = &loopVal{i: i, items: items}
		err := r.exec(n.body)
		if err == errBreak {
			break
		}
		if err != nil && err != errContinue {
			return err
		}
	}
	return nil
}

func (r *renderer) execSet(n *nSet) error {
	var v any
	var err error
	if n.value != nil {
		v, err = r.eval(n.value)
	} else {
		v, err = r.capture(n.body)
	}
	if err != nil {
		return err
	}
	if n.ns != nil {
		nsv, err := r.eval(n.ns)
		if err != nil {
			return err
		}
		ns, ok := nsv.(*Namespace)
		if !ok {
			return fmt.Errorf("jinja: cannot assign attribute on non-namespace object")
		}
		ns.d.Set(n.attr, v)
		return nil
	}
	scope := r.scopes[len(r.scopes)-1]
	if len(n.names) == 1 {
		scope[n.names[0]] = v
		return nil
	}
	l, ok := seq(v)
	if !ok || len(l) != len(n.names) {
		return fmt.Errorf("jinja: cannot unpack into %d names", len(n.names))
	}
	for i, name := range n.names {
		scope[name] = l[i]
	}
	return nil
}

// loopVal is the loop variable of a for loop.
type loopVal struct {
	i     int
	items []any
}

func (l *loopVal) attr(name string) any {
	n := len(l.items)
	switch name {
	case "index":
		return int64(l.i + 1)
	case "index0":
		return int64(l.i)
	case "revindex":
		return int64(n - l.i)
	case "revindex0":
		return int64(n - l.i - 1)
	case "first":
		return l.i == 0
	case "last":
		return l.i == n-1
	case "length":
		return int64(n)
	case "depth":
		return int64(1)
	case "depth0":
		return int64(0)
	case "previtem":
		if l.i > 0 {
			return l.items[l.i-1]
		}
	case "nextitem":
		if l.i+1 < n {
			return l.items[l.i+1]
		}
	case "cycle":
		return callable(func(args []any, _ *Dict) (any, error) {
			if len(args) == 0 {
				return nil, fmt.Errorf("jinja: no items for cycling given")
			}
			return args[l.i%len(args)], nil
		})
	}
	return Undefined{name}
}

// Macro is a {% macro %} value.
type Macro struct {
	n     *nMacro
	r     *renderer
	scope map[string]any
}

func (m *Macro) call(args []any, kw *Dict) (any, error) {
	r := m.r
	if r.depth > maxDepth {
		return nil, fmt.Errorf("jinja: macro recursion too deep")
	}
	scope := map[string]any{}
	for i, p := range m.n.params {
		switch {
		case i < len(args):
			scope[p] = args[i]
		case kw != nil && hasKey(kw, p):
			scope[p], _ = kw.Get(p)
		case m.n.defaults[i] != nil:
			v, err := r.eval(m.n.defaults[i])
			if err != nil {
				return nil, err
			}
			scope[p] = v
		default:
			scope[p] = Undefined{p}
		}
	}
	saved := r.scopes
	r.scopes = []map[string]any{saved[0], scope}
	r.depth++
	v, err := r.capture(m.n.body)
	r.depth--
	r.scopes = saved
	return v, err
}

func hasKey(d *Dict, k string) bool { _, ok := d.Get(k); return ok }

func (r *renderer) eval(e expr) (any, error) {
	if err := r.tick(); err != nil {
		return nil, err
	}
	switch e := e.(type) {
	case eConst:
		return e.v, nil
	case eName:
		return r.lookup(e.name), nil
	case eGetAttr:
		o, err := r.eval(e.obj)
		if err != nil {
			return nil, err
		}
		return getAttr(o, e.name)
	case eGetItem:
		o, err := r.eval(e.obj)
		if err != nil {
			return nil, err
		}
		k, err := r.eval(e.key)
		if err != nil {
			return nil, err
		}
		return getItem(o, k)
	case eSlice:
		o, err := r.eval(e.obj)
		if err != nil {
			return nil, err
		}
		var b [3]any
		for i, x := range []expr{e.lo, e.hi, e.step} {
			if x == nil {
				continue
			}
			if b[i], err = r.eval(x); err != nil {
				return nil, err
			}
		}
		return slice(o, b[0], b[1], b[2])
	case eCall:
		fn, err := r.eval(e.fn)
		if err != nil {
			return nil, err
		}
		args, kw, err := r.evalArgs(e.args, e.kwnames, e.kwargs)
		if err != nil {
			return nil, err
		}
		return call(fn, args, kw)
	case eFilter:
		v, err := r.eval(e.val)
		if err != nil {
			return nil, err
		}
		return r.applyFilter(&e, v)
	case eTest:
		v, err := r.eval(e.val)
		if err != nil {
			return nil, err
		}
		args, _, err := r.evalArgs(e.args, nil, nil)
		if err != nil {
			return nil, err
		}
		ok, err := r.test(e.name, v, args)
		if err != nil {
			return nil, err
		}
		return ok != e.neg, nil
	case eBin:
		l, err := r.eval(e.l)
		if err != nil {
			return nil, err
		}
		switch e.op {
		case "and":
			if !truthy(l) {
				return l, nil
			}
			return r.eval(e.r)
		case "or":
			if truthy(l) {
				return l, nil
			}
			return r.eval(e.r)
		}
		rv, err := r.eval(e.r)
		if err != nil {
			return nil, err
		}
		return binop(e.op, l, rv)
	case eNeg:
		v, err := r.eval(e.x)
		if err != nil {
			return nil, err
		}
		switch x := v.(type) {
		case int64:
			return -x, nil
		case float64:
			return -x, nil
		case bool:
			return -b2i(x), nil
		}
		return nil, fmt.Errorf("jinja: bad operand type for unary -: %s", typeName(v))
	case eNot:
		v, err := r.eval(e.x)
		if err != nil {
			return nil, err
		}
		return !truthy(v), nil
	case eCond:
		c, err := r.eval(e.cond)
		if err != nil {
			return nil, err
		}
		if truthy(c) {
			return r.eval(e.yes)
		}
		if e.no == nil {
			return Undefined{}, nil
		}
		return r.eval(e.no)
	case eList:
		l := make([]any, len(e.items))
		for i, x := range e.items {
			v, err := r.eval(x)
			if err != nil {
				return nil, err
			}
			l[i] = v
		}
		if e.tuple {
			return Tuple(l), nil
		}
		return l, nil
	case eDict:
		d := NewDict()
		for i := range e.keys {
			k, err := r.eval(e.keys[i])
			if err != nil {
				return nil, err
			}
			v, err := r.eval(e.vals[i])
			if err != nil {
				return nil, err
			}
			ks, ok := plain(k)
			if !ok {
				ks = repr(k)
			}
			d.Set(ks, v)
		}
		return d, nil
	case eCompare:
		l, err := r.eval(e.first)
		if err != nil {
			return nil, err
		}
		for i, op := range e.ops {
			rv, err := r.eval(e.rest[i])
			if err != nil {
				return nil, err
			}
			ok, err := compare(op, l, rv)
			if err != nil {
				return nil, err
			}
			if !ok {
				return false, nil
			}
			l = rv
		}
		return true, nil
	}
	return nil, fmt.Errorf("jinja: unknown expression %T", e)
}

func (r *renderer) evalArgs(args []expr, kwnames []string, kwargs []expr) ([]any, *Dict, error) {
	out := make([]any, len(args))
	for i, a := range args {
		v, err := r.eval(a)
		if err != nil {
			return nil, nil, err
		}
		out[i] = v
	}
	var kw *Dict
	if len(kwnames) > 0 {
		kw = NewDict()
		for i, n := range kwnames {
			v, err := r.eval(kwargs[i])
			if err != nil {
				return nil, nil, err
			}
			kw.Set(n, v)
		}
	}
	return out, kw, nil
}

func call(fn any, args []any, kw *Dict) (any, error) {
	switch f := fn.(type) {
	case callable:
		return f(args, kw)
	case *Macro:
		return f.call(args, kw)
	case Undefined:
		return nil, fmt.Errorf("jinja: '%s' is undefined", f.Name)
	}
	return nil, fmt.Errorf("jinja: %s object is not callable", typeName(fn))
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// num converts numbers (and bools) for arithmetic.
func num(v any) (int64, float64, bool, bool) {
	switch x := v.(type) {
	case int64:
		return x, float64(x), false, true
	case float64:
		return 0, x, true, true
	case bool:
		return b2i(x), float64(b2i(x)), false, true
	}
	return 0, 0, false, false
}

func concatTainted(l, r any) any {
	ls, _ := plain(l)
	rs, _ := plain(r)
	lt, lok := l.(Tainted)
	rt, rok := r.(Tainted)
	if !lok && !rok {
		return ls + rs
	}
	var marks []Mark
	if lok {
		marks = append(marks, lt.Marks...)
	}
	if rok {
		for _, m := range rt.Marks {
			marks = append(marks, Mark{m.Start + len(ls), m.End + len(ls), m.Tag})
		}
	}
	return Tainted{S: ls + rs, Marks: marks}
}

func binop(op string, l, r any) (any, error) {
	if isUndef(l) || isUndef(r) {
		if op == "~" {
			return concatTainted(toStrVal(l), toStrVal(r)), nil
		}
		u := l
		if !isUndef(l) {
			u = r
		}
		return nil, fmt.Errorf("jinja: '%s' is undefined", u.(Undefined).Name)
	}
	if op == "~" {
		return concatTainted(toStrVal(l), toStrVal(r)), nil
	}
	_, lIsStr := plain(l)
	_, rIsStr := plain(r)
	if lIsStr && rIsStr && op == "+" {
		return concatTainted(l, r), nil
	}
	if ll, ok := l.([]any); ok {
		if rl, ok := r.([]any); ok && op == "+" {
			return append(append([]any{}, ll...), rl...), nil
		}
	}
	if ll, ok := l.(Tuple); ok {
		if rl, ok := r.(Tuple); ok && op == "+" {
			return append(Tuple{}, append(append([]any{}, ll...), rl...)...), nil
		}
	}
	if op == "*" {
		if n, _, isF, ok := num(r); ok && !isF {
			if s, ok := plain(l); ok {
				return strings.Repeat(s, int(max(n, 0))), nil
			}
			if ll, ok := l.([]any); ok {
				var out []any
				for range max(n, 0) {
					out = append(out, ll...)
				}
				return out, nil
			}
		}
	}
	li, lf, lIsF, lok := num(l)
	ri, rf, rIsF, rok := num(r)
	if !lok || !rok {
		return nil, fmt.Errorf("jinja: unsupported operand types for %s: %s and %s", op, typeName(l), typeName(r))
	}
	isF := lIsF || rIsF
	switch op {
	case "+":
		if isF {
			return lf + rf, nil
		}
		return li + ri, nil
	case "-":
		if isF {
			return lf - rf, nil
		}
		return li - ri, nil
	case "*":
		if isF {
			return lf * rf, nil
		}
		return li * ri, nil
	case "/":
		if rf == 0 {
			return nil, fmt.Errorf("jinja: division by zero")
		}
		return lf / rf, nil
	case "//":
		if rf == 0 {
			return nil, fmt.Errorf("jinja: division by zero")
		}
		if isF {
			return math.Floor(lf / rf), nil
		}
		q := li / ri
		if (li%ri != 0) && ((li < 0) != (ri < 0)) {
			q--
		}
		return q, nil
	case "%":
		if rf == 0 {
			return nil, fmt.Errorf("jinja: modulo by zero")
		}
		if isF {
			m := math.Mod(lf, rf)
			if m != 0 && (m < 0) != (rf < 0) {
				m += rf
			}
			return m, nil
		}
		m := li % ri
		if m != 0 && (m < 0) != (ri < 0) {
			m += ri
		}
		return m, nil
	case "**":
		if !isF && ri >= 0 {
			out := int64(1)
			for range ri {
				out *= li
			}
			return out, nil
		}
		return math.Pow(lf, rf), nil
	}
	return nil, fmt.Errorf("jinja: unknown operator %s", op)
}

// toStrVal is str() keeping taint.
func toStrVal(v any) any {
	if t, ok := v.(Tainted); ok {
		return t
	}
	return str(v)
}

func equal(a, b any) bool {
	if as, ok := plain(a); ok {
		bs, ok := plain(b)
		return ok && as == bs
	}
	if _, ok := plain(b); ok {
		return false
	}
	ai, af, aIsF, aok := num(a)
	bi, bf, bIsF, bok := num(b)
	if aok && bok {
		if aIsF || bIsF {
			return af == bf
		}
		return ai == bi
	}
	switch x := a.(type) {
	case nil:
		return b == nil
	case Undefined:
		return isUndef(b)
	case Tuple:
		y, ok := b.(Tuple)
		return ok && equal([]any(x), []any(y))
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case *Dict:
		y, ok := b.(*Dict)
		if !ok || x.Len() != y.Len() {
			return false
		}
		for _, k := range x.keys {
			yv, ok := y.Get(k)
			if !ok || !equal(x.m[k], yv) {
				return false
			}
		}
		return true
	}
	return a == b
}

func less(a, b any) (bool, error) {
	if as, ok := plain(a); ok {
		if bs, ok := plain(b); ok {
			return as < bs, nil
		}
	}
	ai, af, aIsF, aok := num(a)
	bi, bf, bIsF, bok := num(b)
	if aok && bok {
		if aIsF || bIsF {
			return af < bf, nil
		}
		return ai < bi, nil
	}
	if x, ok := seq(a); ok {
		if y, ok := seq(b); ok {
			for i := 0; i < len(x) && i < len(y); i++ {
				if !equal(x[i], y[i]) {
					return less(x[i], y[i])
				}
			}
			return len(x) < len(y), nil
		}
	}
	return false, fmt.Errorf("jinja: '<' not supported between %s and %s", typeName(a), typeName(b))
}

func contains(container, item any) (bool, error) {
	switch c := container.(type) {
	case string, Tainted:
		cs, _ := plain(c)
		is, ok := plain(item)
		if !ok {
			return false, fmt.Errorf("jinja: 'in <string>' requires string as left operand")
		}
		return strings.Contains(cs, is), nil
	case []any, Tuple:
		l, _ := seq(c)
		for _, x := range l {
			if equal(x, item) {
				return true, nil
			}
		}
		return false, nil
	case *Dict:
		k, ok := plain(item)
		return ok && hasKey(c, k), nil
	case *Namespace:
		k, ok := plain(item)
		return ok && hasKey(c.d, k), nil
	case Undefined:
		return false, fmt.Errorf("jinja: '%s' is undefined", c.Name)
	}
	return false, fmt.Errorf("jinja: argument of type %s is not iterable", typeName(container))
}

func compare(op string, l, r any) (bool, error) {
	switch op {
	case "==":
		return equal(l, r), nil
	case "!=":
		return !equal(l, r), nil
	case "<":
		return less(l, r)
	case ">":
		return less(r, l)
	case "<=":
		lt, err := less(l, r)
		return lt || equal(l, r), err
	case ">=":
		gt, err := less(r, l)
		return gt || equal(l, r), err
	case "in":
		return contains(r, l)
	case "not in":
		ok, err := contains(r, l)
		return !ok, err
	}
	return false, fmt.Errorf("jinja: unknown comparison %s", op)
}
