package jinja

import (
	"fmt"
	"slices"
)

type node any

type (
	nData   struct{ s string }
	nOutput struct{ e expr }
	nIf     struct {
		conds  []expr
		bodies [][]node
		els    []node
	}
	nFor struct {
		targets   []string
		iter      expr
		cond      expr
		body, els []node
	}
	nSet struct {
		names []string // one name, or several for tuple unpacking
		ns    expr     // set ns.attr = ...: the namespace expression
		attr  string
		value expr   // nil for a block set
		body  []node // block set
	}
	nMacro struct {
		name     string
		params   []string
		defaults []expr // aligned with params; nil when required
		body     []node
	}
	nBreak      struct{}
	nContinue   struct{}
	nGeneration struct{ body []node }
	nFilterBlk  struct {
		f    *eFilter
		body []node
	}
)

type expr any

type (
	eConst   struct{ v any }
	eName    struct{ name string }
	eGetAttr struct {
		obj  expr
		name string
	}
	eGetItem struct{ obj, key expr }
	eSlice   struct{ obj, lo, hi, step expr }
	eCall    struct {
		fn      expr
		args    []expr
		kwnames []string
		kwargs  []expr
	}
	eFilter struct {
		val     expr // nil inside a filter block
		name    string
		args    []expr
		kwnames []string
		kwargs  []expr
	}
	eTest struct {
		val  expr
		name string
		args []expr
		neg  bool
	}
	eBin struct {
		op   string
		l, r expr
	}
	eNeg  struct{ x expr }
	eNot  struct{ x expr }
	eCond struct{ cond, yes, no expr }
	eList struct {
		items []expr
		tuple bool
	}
	eDict    struct{ keys, vals []expr }
	eCompare struct {
		first expr
		ops   []string
		rest  []expr
	}
)

type parser struct {
	toks []token
	i    int
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) errf(format string, a ...any) error {
	return fmt.Errorf("jinja: at %d: %s", p.peek().pos, fmt.Sprintf(format, a...))
}

func (p *parser) isOp(v string) bool {
	t := p.peek()
	return t.kind == tOp && t.val == v
}

func (p *parser) isName(v string) bool {
	t := p.peek()
	return t.kind == tName && t.val == v
}

func (p *parser) expectOp(v string) error {
	if !p.isOp(v) {
		return p.errf("expected %q", v)
	}
	p.next()
	return nil
}

func (p *parser) expectName() (string, error) {
	t := p.peek()
	if t.kind != tName {
		return "", p.errf("expected a name")
	}
	p.next()
	return t.val, nil
}

func (p *parser) expectBlockEnd() error {
	if p.peek().kind != tBlockEnd {
		return p.errf("expected end of tag")
	}
	p.next()
	return nil
}

// parseBody parses nodes until a block tag named in ends; it returns the
// name of that tag (its block-begin and name are consumed).
func (p *parser) parseBody(ends ...string) ([]node, string, error) {
	var body []node
	for {
		t := p.peek()
		switch t.kind {
		case tEOF:
			if len(ends) == 0 {
				return body, "", nil
			}
			return nil, "", p.errf("missing {%% %s %%}", ends[0])
		case tData:
			p.next()
			body = append(body, nData{t.val})
		case tVarBegin:
			p.next()
			e, err := p.parseTuple()
			if err != nil {
				return nil, "", err
			}
			if p.peek().kind != tVarEnd {
				return nil, "", p.errf("expected }}")
			}
			p.next()
			body = append(body, nOutput{e})
		case tBlockBegin:
			p.next()
			name := p.peek()
			if name.kind != tName {
				return nil, "", p.errf("expected a statement")
			}
			if slices.Contains(ends, name.val) {
				p.next()
				return body, name.val, nil
			}
			n, err := p.parseStatement()
			if err != nil {
				return nil, "", err
			}
			body = append(body, n)
		default:
			return nil, "", p.errf("unexpected token")
		}
	}
}

func (p *parser) parseStatement() (node, error) {
	kw := p.next().val
	switch kw {
	case "if":
		n := &nIf{}
		for {
			c, err := p.parseExpr()
			if err != nil {
				return nil, err
			}
			if err := p.expectBlockEnd(); err != nil {
				return nil, err
			}
			body, end, err := p.parseBody("elif", "else", "endif")
			if err != nil {
				return nil, err
			}
			n.conds = append(n.conds, c)
			n.bodies = append(n.bodies, body)
			switch end {
			case "elif":
				continue
			case "else":
				if err := p.expectBlockEnd(); err != nil {
					return nil, err
				}
				if n.els, _, err = p.parseBody("endif"); err != nil {
					return nil, err
				}
			}
			return n, p.expectBlockEnd()
		}
	case "for":
		n := &nFor{}
		for {
			name, err := p.expectName()
			if err != nil {
				return nil, err
			}
			n.targets = append(n.targets, name)
			if !p.isOp(",") {
				break
			}
			p.next()
		}
		if !p.isName("in") {
			return nil, p.errf("expected 'in'")
		}
		p.next()
		var err error
		if n.iter, err = p.parseTupleNoCond(); err != nil {
			return nil, err
		}
		if p.isName("if") {
			p.next()
			if n.cond, err = p.parseExpr(); err != nil {
				return nil, err
			}
		}
		if p.isName("recursive") {
			return nil, p.errf("recursive loops are not supported")
		}
		if err := p.expectBlockEnd(); err != nil {
			return nil, err
		}
		body, end, err := p.parseBody("else", "endfor")
		if err != nil {
			return nil, err
		}
		n.body = body
		if end == "else" {
			if err := p.expectBlockEnd(); err != nil {
				return nil, err
			}
			if n.els, _, err = p.parseBody("endfor"); err != nil {
				return nil, err
			}
		}
		return n, p.expectBlockEnd()
	case "set":
		n := &nSet{}
		name, err := p.expectName()
		if err != nil {
			return nil, err
		}
		if p.isOp(".") {
			p.next()
			attr, err := p.expectName()
			if err != nil {
				return nil, err
			}
			n.ns, n.attr = eName{name}, attr
		} else {
			n.names = []string{name}
			for p.isOp(",") {
				p.next()
				name, err := p.expectName()
				if err != nil {
					return nil, err
				}
				n.names = append(n.names, name)
			}
		}
		if p.isOp("=") {
			p.next()
			if n.value, err = p.parseTuple(); err != nil {
				return nil, err
			}
			return n, p.expectBlockEnd()
		}
		if n.ns != nil || len(n.names) != 1 {
			return nil, p.errf("block set needs one name")
		}
		if err := p.expectBlockEnd(); err != nil {
			return nil, err
		}
		if n.body, _, err = p.parseBody("endset"); err != nil {
			return nil, err
		}
		return n, p.expectBlockEnd()
	case "macro":
		n := &nMacro{}
		var err error
		if n.name, err = p.expectName(); err != nil {
			return nil, err
		}
		if err := p.expectOp("("); err != nil {
			return nil, err
		}
		for !p.isOp(")") {
			name, err := p.expectName()
			if err != nil {
				return nil, err
			}
			var def expr
			if p.isOp("=") {
				p.next()
				if def, err = p.parseExpr(); err != nil {
					return nil, err
				}
			}
			n.params = append(n.params, name)
			n.defaults = append(n.defaults, def)
			if !p.isOp(",") {
				break
			}
			p.next()
		}
		if err := p.expectOp(")"); err != nil {
			return nil, err
		}
		if err := p.expectBlockEnd(); err != nil {
			return nil, err
		}
		if n.body, _, err = p.parseBody("endmacro"); err != nil {
			return nil, err
		}
		return n, p.expectBlockEnd()
	case "break":
		return nBreak{}, p.expectBlockEnd()
	case "continue":
		return nContinue{}, p.expectBlockEnd()
	case "generation":
		if err := p.expectBlockEnd(); err != nil {
			return nil, err
		}
		body, _, err := p.parseBody("endgeneration")
		if err != nil {
			return nil, err
		}
		return nGeneration{body}, p.expectBlockEnd()
	case "filter":
		f, err := p.parseFilter(nil)
		if err != nil {
			return nil, err
		}
		if err := p.expectBlockEnd(); err != nil {
			return nil, err
		}
		body, _, err := p.parseBody("endfilter")
		if err != nil {
			return nil, err
		}
		return nFilterBlk{f, body}, p.expectBlockEnd()
	}
	return nil, p.errf("unsupported statement %q", kw)
}

// parseTuple parses an expression, or a tuple when commas follow.
func (p *parser) parseTuple() (expr, error) { return p.tuple(true) }

func (p *parser) parseTupleNoCond() (expr, error) { return p.tuple(false) }

func (p *parser) tuple(withCond bool) (expr, error) {
	parse := p.parseExpr
	if !withCond {
		parse = p.parseOr
	}
	e, err := parse()
	if err != nil {
		return nil, err
	}
	if !p.isOp(",") {
		return e, nil
	}
	items := []expr{e}
	for p.isOp(",") {
		p.next()
		if t := p.peek(); t.kind == tVarEnd || t.kind == tBlockEnd || p.isOp(")") {
			break
		}
		e, err := parse()
		if err != nil {
			return nil, err
		}
		items = append(items, e)
	}
	return eList{items, true}, nil
}

// parseExpr: or-expression with an optional "x if c else y".
func (p *parser) parseExpr() (expr, error) {
	e, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	for p.isName("if") {
		p.next()
		c, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		var no expr
		if p.isName("else") {
			p.next()
			if no, err = p.parseExpr(); err != nil {
				return nil, err
			}
		}
		e = eCond{c, e, no}
	}
	return e, nil
}

func (p *parser) parseOr() (expr, error) {
	l, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	for p.isName("or") {
		p.next()
		r, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		l = eBin{"or", l, r}
	}
	return l, nil
}

func (p *parser) parseAnd() (expr, error) {
	l, err := p.parseNot()
	if err != nil {
		return nil, err
	}
	for p.isName("and") {
		p.next()
		r, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		l = eBin{"and", l, r}
	}
	return l, nil
}

func (p *parser) parseNot() (expr, error) {
	if p.isName("not") {
		p.next()
		x, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		return eNot{x}, nil
	}
	return p.parseCompare()
}

func (p *parser) parseCompare() (expr, error) {
	first, err := p.parseMath1()
	if err != nil {
		return nil, err
	}
	c := eCompare{first: first}
	for {
		var op string
		t := p.peek()
		switch {
		case t.kind == tOp && (t.val == "==" || t.val == "!=" || t.val == "<" || t.val == ">" || t.val == "<=" || t.val == ">="):
			op = t.val
			p.next()
		case p.isName("in"):
			op = "in"
			p.next()
		case p.isName("not") && p.toks[p.i+1].kind == tName && p.toks[p.i+1].val == "in":
			op = "not in"
			p.next()
			p.next()
		}
		if op == "" {
			break
		}
		r, err := p.parseMath1()
		if err != nil {
			return nil, err
		}
		c.ops = append(c.ops, op)
		c.rest = append(c.rest, r)
	}
	if len(c.ops) == 0 {
		return first, nil
	}
	return c, nil
}

func (p *parser) parseMath1() (expr, error) {
	l, err := p.parseConcat()
	if err != nil {
		return nil, err
	}
	for p.isOp("+") || p.isOp("-") {
		op := p.next().val
		r, err := p.parseConcat()
		if err != nil {
			return nil, err
		}
		l = eBin{op, l, r}
	}
	return l, nil
}

func (p *parser) parseConcat() (expr, error) {
	l, err := p.parseMath2()
	if err != nil {
		return nil, err
	}
	for p.isOp("~") {
		p.next()
		r, err := p.parseMath2()
		if err != nil {
			return nil, err
		}
		l = eBin{"~", l, r}
	}
	return l, nil
}

func (p *parser) parseMath2() (expr, error) {
	l, err := p.parsePow()
	if err != nil {
		return nil, err
	}
	for p.isOp("*") || p.isOp("/") || p.isOp("//") || p.isOp("%") {
		op := p.next().val
		r, err := p.parsePow()
		if err != nil {
			return nil, err
		}
		l = eBin{op, l, r}
	}
	return l, nil
}

func (p *parser) parsePow() (expr, error) {
	l, err := p.parseUnary(true)
	if err != nil {
		return nil, err
	}
	for p.isOp("**") {
		p.next()
		r, err := p.parseUnary(true)
		if err != nil {
			return nil, err
		}
		l = eBin{"**", l, r}
	}
	return l, nil
}

func (p *parser) parseUnary(withFilter bool) (expr, error) {
	var e expr
	var err error
	switch {
	case p.isOp("-"):
		p.next()
		x, err := p.parseUnary(false)
		if err != nil {
			return nil, err
		}
		e = eNeg{x}
	case p.isOp("+"):
		p.next()
		if e, err = p.parseUnary(false); err != nil {
			return nil, err
		}
	default:
		if e, err = p.parsePrimary(); err != nil {
			return nil, err
		}
		if e, err = p.parsePostfix(e); err != nil {
			return nil, err
		}
	}
	if withFilter {
		return p.parseFilterExpr(e)
	}
	return e, nil
}

func (p *parser) parsePrimary() (expr, error) {
	t := p.next()
	switch t.kind {
	case tName:
		switch t.val {
		case "true", "True":
			return eConst{true}, nil
		case "false", "False":
			return eConst{false}, nil
		case "none", "None":
			return eConst{nil}, nil
		}
		return eName{t.val}, nil
	case tString:
		s := t.val
		for p.peek().kind == tString {
			s += p.next().val
		}
		return eConst{s}, nil
	case tInt:
		return eConst{t.i}, nil
	case tFloat:
		return eConst{t.f}, nil
	case tOp:
		switch t.val {
		case "(":
			if p.isOp(")") {
				p.next()
				return eList{tuple: true}, nil
			}
			e, err := p.parseTuple()
			if err != nil {
				return nil, err
			}
			return e, p.expectOp(")")
		case "[":
			var items []expr
			for !p.isOp("]") {
				e, err := p.parseExpr()
				if err != nil {
					return nil, err
				}
				items = append(items, e)
				if !p.isOp(",") {
					break
				}
				p.next()
			}
			return eList{items: items}, p.expectOp("]")
		case "{":
			d := eDict{}
			for !p.isOp("}") {
				k, err := p.parseExpr()
				if err != nil {
					return nil, err
				}
				if err := p.expectOp(":"); err != nil {
					return nil, err
				}
				v, err := p.parseExpr()
				if err != nil {
					return nil, err
				}
				d.keys = append(d.keys, k)
				d.vals = append(d.vals, v)
				if !p.isOp(",") {
					break
				}
				p.next()
			}
			return d, p.expectOp("}")
		}
	}
	p.i--
	return nil, p.errf("unexpected token in expression")
}

func (p *parser) parsePostfix(e expr) (expr, error) {
	for {
		switch {
		case p.isOp("."):
			p.next()
			t := p.next()
			switch t.kind {
			case tName:
				e = eGetAttr{e, t.val}
			case tInt:
				e = eGetItem{e, eConst{t.i}}
			default:
				return nil, p.errf("expected attribute name")
			}
		case p.isOp("["):
			p.next()
			var parts [3]expr
			n, colon := 0, false
			for {
				if p.isOp(":") {
					colon = true
					p.next()
					n++
					if n > 2 {
						return nil, p.errf("bad slice")
					}
					continue
				}
				if p.isOp("]") {
					break
				}
				x, err := p.parseExpr()
				if err != nil {
					return nil, err
				}
				parts[n] = x
				if !colon && p.isOp(",") {
					return nil, p.errf("tuple subscripts are not supported")
				}
			}
			p.next()
			if colon {
				e = eSlice{e, parts[0], parts[1], parts[2]}
			} else {
				if parts[0] == nil {
					return nil, p.errf("empty subscript")
				}
				e = eGetItem{e, parts[0]}
			}
		case p.isOp("("):
			c, err := p.parseCall(e)
			if err != nil {
				return nil, err
			}
			e = c
		default:
			return e, nil
		}
	}
}

func (p *parser) parseArgs() (args []expr, kwnames []string, kwargs []expr, err error) {
	if err := p.expectOp("("); err != nil {
		return nil, nil, nil, err
	}
	for !p.isOp(")") {
		if p.peek().kind == tName && p.toks[p.i+1].kind == tOp && p.toks[p.i+1].val == "=" {
			name := p.next().val
			p.next()
			v, err := p.parseExpr()
			if err != nil {
				return nil, nil, nil, err
			}
			kwnames = append(kwnames, name)
			kwargs = append(kwargs, v)
		} else {
			if p.isOp("*") || p.isOp("**") {
				return nil, nil, nil, p.errf("*args are not supported")
			}
			v, err := p.parseExpr()
			if err != nil {
				return nil, nil, nil, err
			}
			args = append(args, v)
		}
		if !p.isOp(",") {
			break
		}
		p.next()
	}
	return args, kwnames, kwargs, p.expectOp(")")
}

func (p *parser) parseCall(fn expr) (expr, error) {
	a, kn, kv, err := p.parseArgs()
	if err != nil {
		return nil, err
	}
	return eCall{fn, a, kn, kv}, nil
}

func (p *parser) parseFilter(val expr) (*eFilter, error) {
	name, err := p.expectName()
	if err != nil {
		return nil, err
	}
	for p.isOp(".") { // dotted filter names
		p.next()
		n, err := p.expectName()
		if err != nil {
			return nil, err
		}
		name += "." + n
	}
	f := &eFilter{val: val, name: name}
	if p.isOp("(") {
		if f.args, f.kwnames, f.kwargs, err = p.parseArgs(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (p *parser) parseFilterExpr(e expr) (expr, error) {
	for {
		switch {
		case p.isOp("|"):
			p.next()
			f, err := p.parseFilter(e)
			if err != nil {
				return nil, err
			}
			e = *f
		case p.isName("is"):
			p.next()
			neg := false
			if p.isName("not") {
				p.next()
				neg = true
			}
			name, err := p.expectName()
			if err != nil {
				return nil, err
			}
			t := eTest{val: e, name: name, neg: neg}
			if p.isOp("(") {
				args, _, _, err := p.parseArgs()
				if err != nil {
					return nil, err
				}
				t.args = args
			} else if nt := p.peek(); (nt.kind == tName || nt.kind == tString || nt.kind == tInt || nt.kind == tFloat ||
				(nt.kind == tOp && (nt.val == "[" || nt.val == "{"))) &&
				!(nt.kind == tName && (nt.val == "else" || nt.val == "or" || nt.val == "and")) {
				a, err := p.parsePrimary()
				if err != nil {
					return nil, err
				}
				if a, err = p.parsePostfix(a); err != nil {
					return nil, err
				}
				t.args = []expr{a}
			}
			e = t
		case p.isOp("("):
			c, err := p.parseCall(e)
			if err != nil {
				return nil, err
			}
			e = c
		default:
			return e, nil
		}
	}
}
