package main

import (
	"github.com/mmcloughlin/avo/attr"
	"github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/ir"
	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/pass"
	"github.com/mmcloughlin/avo/printer"
	"github.com/mmcloughlin/avo/reg"
)

// amd64Gen builds one amd64 assembly file with avo. Kernels are written with
// the embedded Context's instruction methods (operands in Go assembler order:
// sources first, destination last).
type amd64Gen struct {
	*build.Context
	consts map[string]operand.Mem
}

func newAMD64() *amd64Gen {
	c := build.NewContext()
	c.ConstraintExpr("!purego")
	return &amd64Gen{Context: c, consts: map[string]operand.Mem{}}
}

// fn starts the function name with the given Go signature and doc lines; it
// is declared //go:noescape.
func (g *amd64Gen) fn(name, sig string, doc ...string) {
	g.Function(name)
	g.Attributes(attr.NOSPLIT)
	g.SignatureExpr(sig)
	g.Pragma("noescape")
	g.Doc(doc...)
}

// ptr loads the pointer of slice parameter p.
func (g *amd64Gen) ptr(p string) reg.GPVirtual {
	r := g.GP64()
	g.Load(g.Param(p).Base(), r)
	return r
}

// length loads the length of slice parameter p.
func (g *amd64Gen) length(p string) reg.GPVirtual {
	r := g.GP64()
	g.Load(g.Param(p).Len(), r)
	return r
}

// u32 returns a 4-byte read-only constant v, for broadcasts.
func (g *amd64Gen) u32(name string, v uint32) operand.Mem {
	return g.table(name, []uint32{v})
}

// u16 returns a 2-byte read-only constant v, for broadcasts.
func (g *amd64Gen) u16(name string, v uint16) operand.Mem {
	if m, ok := g.consts[name]; ok {
		return m
	}
	m := g.StaticGlobal(name)
	g.DataAttributes(attr.RODATA | attr.NOPTR)
	g.AppendDatum(operand.U16(v))
	g.consts[name] = m
	return m
}

// vconst returns a read-only 32-byte vector of eight copies of v, for
// AVX2 memory operands.
func (g *amd64Gen) vconst(name string, v uint32) operand.Mem {
	return g.table(name, []uint32{v, v, v, v, v, v, v, v})
}

// table returns a read-only constant holding vs.
func (g *amd64Gen) table(name string, vs []uint32) operand.Mem {
	if m, ok := g.consts[name]; ok {
		return m
	}
	m := g.StaticGlobal(name)
	g.DataAttributes(attr.RODATA | attr.NOPTR)
	for _, v := range vs {
		g.AppendDatum(operand.U32(v))
	}
	g.consts[name] = m
	return m
}

func (g *amd64Gen) print(pkg string) (asm, stubs []byte, err error) {
	f, err := g.Result()
	if err != nil {
		return nil, nil, err
	}
	if err := pass.Compile.Execute(f); err != nil {
		return nil, nil, err
	}
	cfg := printer.Config{Name: generatedBy, Pkg: pkg}
	if asm, err = printer.NewGoAsm(cfg).Print(f); err != nil {
		return nil, nil, err
	}
	stubs, err = printer.NewStubs(cfg).Print(f)
	return asm, stubs, err
}

// paramMem returns the stack operand of parameter p.
func (g *amd64Gen) paramMem(p string) operand.Mem {
	b, err := g.Param(p).Resolve()
	if err != nil {
		panic(err)
	}
	return b.Addr
}

// mem returns the operand at base + disp.
func mem(base reg.Register, disp int) operand.Mem { return operand.Mem{Base: base, Disp: disp} }

// idx returns the operand at base + index·scale + disp.
func idx(base, index reg.Register, scale uint8, disp int) operand.Mem {
	return operand.Mem{Base: base, Index: index, Scale: scale, Disp: disp}
}

var _ = ir.Pragma{}
