package cpu

import (
	"fmt"

	"github.com/lorakit/lorakit/pkg/compute"
)

// Mixed precision: an operation given BF16 float operands runs its F32
// implementation on widened copies and rounds its outputs back once, which
// is the meaning compute states for BF16 operands. The f32 paths are not
// touched, so they stay the exact reference.

// widening holds the F32 stand-ins of one operation's BF16 operands.
type widening struct {
	be   *Backend
	back [][2]*buf // BF16 output, its F32 stand-in
}

// mixed returns a widening when one of bs (nil ones skipped) is BF16, nil
// otherwise.
func (be *Backend) mixed(bs ...compute.Buffer) *widening {
	for _, b := range bs {
		if b != nil && get(b).dt == compute.BF16 {
			return &widening{be: be}
		}
	}
	return nil
}

// in returns b, or a widened F32 copy of a BF16 b.
func (w *widening) in(b compute.Buffer) compute.Buffer {
	if b == nil {
		return nil
	}
	c := get(b)
	if c.dt != compute.BF16 {
		return b
	}
	f := &buf{dt: compute.F32, f: make([]float32, len(c.h))}
	w.be.parallel(len(c.h), elemGrain, func(lo, hi int) {
		for i, h := range c.h[lo:hi] {
			f.f[lo+i] = fromBF16(h)
		}
	})
	return f
}

// out is in for an operand the operation writes (and may read): done
// rounds the stand-in back into it.
func (w *widening) out(b compute.Buffer) compute.Buffer {
	f := w.in(b)
	if f != b {
		w.back = append(w.back, [2]*buf{get(b), get(f)})
	}
	return f
}

// done rounds every output stand-in into its BF16 buffer.
func (w *widening) done() {
	for _, p := range w.back {
		d, s := p[0], p[1]
		w.be.parallel(len(s.f), elemGrain, func(lo, hi int) {
			for i, x := range s.f[lo:hi] {
				d.h[lo+i] = toBF16(x)
			}
		})
	}
}

// gemmBF16 is Gemm into a BF16 C: the F32 product (β·C read widened) rounded
// once.
func (be *Backend) gemmBF16(p compute.Gemm, a, b, c compute.Buffer) {
	w := &widening{be: be}
	cf := w.out(c)
	if p.Beta == 0 {
		clear(get(cf).f) // C is not read: no NaN from it
	}
	be.Gemm(p, a, b, cf)
	w.done()
}

// FillUniform implements compute.Backend.
func (be *Backend) FillUniform(dst compute.Buffer, seed uint64, lo, hi float32) {
	d := get(dst)
	be.parallel(d.Len(), elemGrain, func(s, e int) {
		for i := s; i < e; i++ {
			u := compute.UniformBits(seed, i)
			switch d.dt {
			case compute.F32:
				d.f[i] = compute.UniformValue(u, lo, hi)
			case compute.BF16:
				d.h[i] = toBF16(compute.UniformValue(u, lo, hi))
			case compute.U8:
				d.u[i] = byte(u)
			default:
				panic(fmt.Sprintf("cpu: FillUniform of %v", d.dt))
			}
		}
	})
}
