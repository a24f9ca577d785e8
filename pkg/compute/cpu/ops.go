package cpu

import (
	"fmt"
	"math"

	"github.com/lorakit/lorakit/internal/kernels/vec"
	"github.com/lorakit/lorakit/pkg/compute"
)

// elemGrain is the smallest number of elements worth a goroutine.
const elemGrain = 1 << 14

// rowGrain returns how many rows of length dim make one piece of work.
func rowGrain(dim int) int { return max(1, elemGrain/max(dim, 1)) }

// Scale implements compute.Backend.
func (be *Backend) Scale(x compute.Buffer, alpha float32) {
	if w := be.mixed(x); w != nil {
		be.Scale(w.out(x), alpha)
		w.done()
		return
	}
	v := f32(x)
	be.parallel(len(v), elemGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			v[i] *= alpha
		}
	})
}

// Axpy implements compute.Backend.
func (be *Backend) Axpy(y, x compute.Buffer, alpha float32) {
	if w := be.mixed(y, x); w != nil {
		be.Axpy(w.out(y), w.in(x), alpha)
		w.done()
		return
	}
	yv, xv := f32(y), f32(x)
	need("axpy x", len(xv), len(yv))
	be.parallel(len(yv), elemGrain, func(lo, hi int) {
		vec.Axpy(yv[lo:hi], xv[lo:hi], alpha)
	})
}

// Mul implements compute.Backend.
func (be *Backend) Mul(dst, a, b compute.Buffer) {
	if w := be.mixed(dst, a, b); w != nil {
		be.Mul(w.out(dst), w.in(a), w.in(b))
		w.done()
		return
	}
	d, av, bv := f32(dst), f32(a), f32(b)
	need("mul a", len(av), len(d))
	need("mul b", len(bv), len(d))
	be.parallel(len(d), elemGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			d[i] = av[i] * bv[i]
		}
	})
}

// AddMul implements compute.Backend.
func (be *Backend) AddMul(dst, a, b compute.Buffer) {
	if w := be.mixed(dst, a, b); w != nil {
		be.AddMul(w.out(dst), w.in(a), w.in(b))
		w.done()
		return
	}
	d, av, bv := f32(dst), f32(a), f32(b)
	need("addmul a", len(av), len(d))
	need("addmul b", len(bv), len(d))
	be.parallel(len(d), elemGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			d[i] += av[i] * bv[i]
		}
	})
}

// Embedding implements compute.Backend.
func (be *Backend) Embedding(out, table, ids compute.Buffer, dim int) {
	if w := be.mixed(out); w != nil { // the table is read as it is
		be.Embedding(w.out(out), table, ids, dim)
		w.done()
		return
	}
	o, id, t := f32(out), i32(ids), get(table)
	need("embedding out", len(o), len(id)*dim)
	rows := t.Len() / max(dim, 1)
	need("embedding table", t.Len(), rows*dim)
	for _, x := range id {
		if x < 0 || int(x) >= rows {
			panic(fmt.Sprintf("cpu: embedding id %d outside [0, %d)", x, rows))
		}
	}
	be.parallel(len(id), rowGrain(dim), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			dst := o[r*dim : (r+1)*dim]
			src := int(id[r]) * dim
			if t.dt == compute.F32 {
				copy(dst, t.f[src:src+dim])
				continue
			}
			for i, h := range t.h[src : src+dim] {
				dst[i] = fromBF16(h)
			}
		}
	})
}

// RMSNorm implements compute.Backend.
func (be *Backend) RMSNorm(y, rstd, x, w compute.Buffer, rows, dim int, eps float32) {
	if m := be.mixed(y, rstd, x, w); m != nil {
		be.RMSNorm(m.out(y), m.out(rstd), m.in(x), m.in(w), rows, dim, eps)
		m.done()
		return
	}
	yv, xv, wv := f32(y), f32(x), f32(w)
	need("rmsnorm x", len(xv), rows*dim)
	need("rmsnorm y", len(yv), rows*dim)
	need("rmsnorm w", len(wv), dim)
	var rs []float32
	if rstd != nil {
		rs = f32(rstd)
		need("rmsnorm rstd", len(rs), rows)
	}
	be.parallel(rows, rowGrain(dim), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr := xv[r*dim : (r+1)*dim]
			yr := yv[r*dim : (r+1)*dim]
			mean := vec.Dot(xr, xr) / float32(dim)
			s := float32(1 / math.Sqrt(float64(mean+eps)))
			if rs != nil {
				rs[r] = s
			}
			for i, v := range xr {
				yr[i] = wv[i] * (v * s)
			}
		}
	})
}

// RMSNormBackward implements compute.Backend.
func (be *Backend) RMSNormBackward(dx, dy, x, w, rstd compute.Buffer, rows, dim int) {
	if m := be.mixed(dx, dy, x, w, rstd); m != nil {
		be.RMSNormBackward(m.out(dx), m.in(dy), m.in(x), m.in(w), m.in(rstd), rows, dim)
		m.done()
		return
	}
	dxv, dyv, xv, wv, rs := f32(dx), f32(dy), f32(x), f32(w), f32(rstd)
	need("rmsnorm dx", len(dxv), rows*dim)
	need("rmsnorm dy", len(dyv), rows*dim)
	need("rmsnorm x", len(xv), rows*dim)
	need("rmsnorm w", len(wv), dim)
	need("rmsnorm rstd", len(rs), rows)
	be.parallel(rows, rowGrain(dim), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr := xv[r*dim : (r+1)*dim]
			dyr := dyv[r*dim : (r+1)*dim]
			dxr := dxv[r*dim : (r+1)*dim]
			s := rs[r]
			// c = mean(dy⊙w⊙x̂) with x̂ = x·s.
			var acc float64
			for i, v := range xr {
				acc += float64(dyr[i] * wv[i] * v)
			}
			c := float32(acc) * s / float32(dim)
			for i, v := range xr {
				dxr[i] += s * (dyr[i]*wv[i] - v*s*c)
			}
		}
	})
}

// Rope implements compute.Backend.
func (be *Backend) Rope(p compute.Rope, x, pos, cos, sin compute.Buffer) {
	if w := be.mixed(x); w != nil {
		be.Rope(p, w.out(x), pos, cos, sin)
		w.done()
		return
	}
	xv, pv, cv, sv := f32(x), i32(pos), f32(cos), f32(sin)
	rot := p.Dims()
	if rot%2 != 0 || rot <= 0 || rot > p.HeadDim {
		panic(fmt.Sprintf("cpu: rope rotating %d of %d dimensions", rot, p.HeadDim))
	}
	half := rot / 2
	width := p.Heads * p.HeadDim
	need("rope x", len(xv), p.Tokens*width)
	need("rope pos", len(pv), p.Tokens)
	need("rope sin", len(sv), len(cv))
	for _, q := range pv {
		if q < 0 || (int(q)+1)*half > len(cv) {
			panic(fmt.Sprintf("cpu: rope position %d outside the table", q))
		}
	}
	be.parallel(p.Tokens, rowGrain(width), func(lo, hi int) {
		for t := lo; t < hi; t++ {
			off := int(pv[t]) * half
			c, s := cv[off:off+half], sv[off:off+half]
			for h := range p.Heads {
				row := xv[t*width+h*p.HeadDim : t*width+(h+1)*p.HeadDim]
				x1, x2 := row[:half], row[half:rot]
				if p.Inverse {
					for i := range half {
						a, b := x1[i], x2[i]
						x1[i] = a*c[i] + b*s[i]
						x2[i] = b*c[i] - a*s[i]
					}
					continue
				}
				for i := range half {
					a, b := x1[i], x2[i]
					x1[i] = a*c[i] - b*s[i]
					x2[i] = b*c[i] + a*s[i]
				}
			}
		}
	})
}

// gluBlock is the chunk of the GLU loops (scratch for exp).
const gluBlock = 256

// GELU constants as PyTorch writes them: kBeta = √2·(2/√π)·½ = √(2/π).
const (
	geluBeta  = float32(math.Sqrt2 * (2 / math.SqrtPi) * 0.5)
	geluKappa = float32(0.044715)
	invSqrt2  = float32(1 / math.Sqrt2)
	invSqrt2π = 1 / 2.5066282746310002
)

// gateExps fills e with exp(−x) of the gate values x (SiLU), or with
// tanh(√(2/π)·(x + 0.044715·x³)) (GELUTanh); nothing for GELU.
func gateExps(act compute.Activation, e, x []float32) {
	switch act {
	case compute.SiLU:
		for i, v := range x {
			e[i] = -v
		}
		vec.Exps(e)
	case compute.GELUTanh:
		for i, v := range x {
			e[i] = geluBeta * (v + geluKappa*(v*v*v))
		}
		tanhs(e)
	case compute.GELU:
	default:
		panic(fmt.Sprintf("cpu: glu activation %v", act))
	}
}

// tanhs sets t[i] = tanh(t[i]) from exp(−2|x|): (1−e)/(1+e) with x's sign.
func tanhs(t []float32) {
	var sign [gluBlock]bool
	for i, x := range t {
		sign[i] = x < 0
		t[i] = -2 * float32(math.Abs(float64(x)))
	}
	vec.Exps(t)
	for i, e := range t {
		v := (1 - e) / (1 + e)
		if sign[i] {
			v = -v
		}
		t[i] = v
	}
}

// GLU implements compute.Backend.
func (be *Backend) GLU(act compute.Activation, out, gate, up compute.Buffer) {
	if w := be.mixed(out, gate, up); w != nil {
		be.GLU(act, w.out(out), w.in(gate), w.in(up))
		w.done()
		return
	}
	o, g, u := f32(out), f32(gate), f32(up)
	need("glu gate", len(g), len(o))
	need("glu up", len(u), len(o))
	be.parallel(len(o), elemGrain/8, func(lo, hi int) {
		var e [gluBlock]float32
		for b := lo; b < hi; b += gluBlock {
			n := min(gluBlock, hi-b)
			gb, ub, ob := g[b:b+n], u[b:b+n], o[b:b+n]
			gateExps(act, e[:n], gb)
			switch act {
			case compute.SiLU:
				for i, x := range gb {
					ob[i] = x / (1 + e[i]) * ub[i]
				}
			case compute.GELUTanh:
				for i, x := range gb {
					ob[i] = 0.5 * x * (1 + e[i]) * ub[i]
				}
			case compute.GELU:
				for i, x := range gb {
					ob[i] = 0.5 * x * (1 + float32(math.Erf(float64(x*invSqrt2)))) * ub[i]
				}
			}
		}
	})
}

// GLUBackward implements compute.Backend.
func (be *Backend) GLUBackward(act compute.Activation, dgate, dup, dout, gate, up compute.Buffer) {
	if w := be.mixed(dgate, dup, dout, gate, up); w != nil {
		be.GLUBackward(act, w.out(dgate), w.out(dup), w.in(dout), w.in(gate), w.in(up))
		w.done()
		return
	}
	dg, du, do, g, u := f32(dgate), f32(dup), f32(dout), f32(gate), f32(up)
	n := len(do)
	need("glu dgate", len(dg), n)
	need("glu dup", len(du), n)
	need("glu gate", len(g), n)
	need("glu up", len(u), n)
	be.parallel(n, elemGrain/8, func(lo, hi int) {
		var e [gluBlock]float32
		for b := lo; b < hi; b += gluBlock {
			m := min(gluBlock, hi-b)
			gb, ub, dob, dgb, dub := g[b:b+m], u[b:b+m], do[b:b+m], dg[b:b+m], du[b:b+m]
			gateExps(act, e[:m], gb)
			switch act {
			case compute.SiLU:
				for i, x := range gb {
					sig := 1 / (1 + e[i])
					d := dob[i]
					dub[i] = d * (x * sig)
					dgb[i] = d * ub[i] * (sig * (1 + x*(1-sig)))
				}
			case compute.GELUTanh:
				for i, x := range gb {
					t := e[i]
					d := dob[i]
					left := 0.5 * x
					right := 1 + t
					// PyTorch's GeluBackward (tanh): ½(1+t) + ½x·(1−t²)·β(1+3κx²).
					dact := 0.5*right + left*(1-t*t)*(geluBeta*(1+3*geluKappa*(x*x)))
					dub[i] = d * (left * right)
					dgb[i] = d * ub[i] * dact
				}
			case compute.GELU:
				for i, x := range gb {
					cdf := 0.5 * (1 + float32(math.Erf(float64(x*invSqrt2))))
					pdf := float32(math.Exp(-0.5*float64(x)*float64(x)) * invSqrt2π)
					d := dob[i]
					dub[i] = d * (x * cdf)
					dgb[i] = d * ub[i] * (cdf + x*pdf)
				}
			}
		}
	})
}

// capLogit returns c·tanh(x/c) and tanh(x/c), in f32 in transformers'
// order (divide, tanh, multiply).
func capLogit(x, c float32) (z, t float32) {
	t = float32(math.Tanh(float64(x / c)))
	return t * c, t
}

// SoftCap implements compute.Backend.
func (be *Backend) SoftCap(x compute.Buffer, c float32) {
	if w := be.mixed(x); w != nil {
		be.SoftCap(w.out(x), c)
		w.done()
		return
	}
	if !(c > 0) {
		panic(fmt.Sprintf("cpu: soft cap %v", c))
	}
	v := f32(x)
	be.parallel(len(v), elemGrain/8, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			v[i], _ = capLogit(v[i], c)
		}
	})
}

// CrossEntropy implements compute.Backend.
func (be *Backend) CrossEntropy(loss, dlogits, logits, targets compute.Buffer, rows, vocab int, gradScale, softCap float32) {
	lv, xv, tv := f32(loss), f32(logits), i32(targets)
	need("cross-entropy loss", len(lv), rows)
	need("cross-entropy logits", len(xv), rows*vocab)
	need("cross-entropy targets", len(tv), rows)
	var dv []float32
	if dlogits != nil {
		dv = f32(dlogits)
		need("cross-entropy dlogits", len(dv), rows*vocab)
	}
	for _, t := range tv {
		if int(t) >= vocab {
			panic(fmt.Sprintf("cpu: cross-entropy target %d outside [0, %d)", t, vocab))
		}
	}
	if softCap < 0 || softCap != softCap {
		panic(fmt.Sprintf("cpu: cross-entropy soft cap %v", softCap))
	}
	be.parallel(rows, rowGrain(vocab*8), func(lo, hi int) {
		var scratch, capped, tanh []float32
		for r := lo; r < hi; r++ {
			x := xv[r*vocab : (r+1)*vocab]
			if softCap > 0 && tv[r] >= 0 {
				// The capped logits, and tanh for the gradient (dlogits may
				// alias x).
				if capped == nil {
					capped, tanh = make([]float32, vocab), make([]float32, vocab)
				}
				for i, v := range x {
					capped[i], tanh[i] = capLogit(v, softCap)
				}
				x = capped
			}
			var d []float32
			if dv != nil {
				d = dv[r*vocab : (r+1)*vocab]
			}
			t := int(tv[r])
			if t < 0 {
				lv[r] = 0
				clear(d)
				continue
			}
			m := x[0]
			for _, v := range x {
				if v > m {
					m = v
				}
			}
			xt := x[t]
			e := d
			if e == nil {
				if scratch == nil {
					scratch = make([]float32, vocab)
				}
				e = scratch
			}
			for i, v := range x {
				e[i] = v - m
			}
			vec.Exps(e)
			var sum float64
			for _, v := range e {
				sum += float64(v)
			}
			lse := float64(m) + math.Log(sum)
			lv[r] = float32(lse - float64(xt))
			if d == nil {
				continue
			}
			inv := 1 / sum
			for i, v := range d {
				d[i] = gradScale * float32(float64(v)*inv)
			}
			d[t] -= gradScale
			if softCap > 0 {
				for i, th := range tanh {
					d[i] *= 1 - th*th
				}
			}
		}
	})
}

// DropoutMask implements compute.Backend.
func (be *Backend) DropoutMask(mask compute.Buffer, p float32, seed, stream uint64) {
	m := f32(mask)
	key := compute.DropoutKey(seed, stream)
	th := compute.DropoutThreshold(p)
	keep := compute.DropoutScale(p)
	be.parallel(len(m), elemGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if compute.DropoutDrops(key, i, th) {
				m[i] = 0
			} else {
				m[i] = keep
			}
		}
	})
}

// DoRANorm implements compute.Backend.
func (be *Backend) DoRANorm(norm, w, a, b compute.Buffer, out, in, rank int, scale float32) {
	if m := be.mixed(norm, a, b); m != nil { // W is read as it is
		be.DoRANorm(m.out(norm), w, m.in(a), m.in(b), out, in, rank, scale)
		m.done()
		return
	}
	nv, av, bv, wb := f32(norm), f32(a), f32(b), get(w)
	need("dora norm", len(nv), out)
	need("dora W", wb.Len(), out*in)
	need("dora A", len(av), rank*in)
	need("dora B", len(bv), out*rank)
	be.parallel(out, rowGrain(in*max(rank, 1)), func(lo, hi int) {
		row := make([]float32, in)
		for o := lo; o < hi; o++ {
			clear(row)
			for k := range rank {
				// Separately rounded products and sums, in every tier.
				ak, bk := av[k*in:(k+1)*in], bv[o*rank+k]
				for i := range row {
					row[i] += float32(bk * ak[i])
				}
			}
			var ss float64
			for i, d := range row {
				var wi float32
				if wb.dt == compute.F32 {
					wi = wb.f[o*in+i]
				} else {
					wi = fromBF16(wb.h[o*in+i])
				}
				v := float64(wi + scale*d)
				ss += v * v
			}
			nv[o] = float32(math.Sqrt(ss))
		}
	})
}

// DoRAForward implements compute.Backend.
func (be *Backend) DoRAForward(y, comb, base, lora, mag, norm compute.Buffer, rows, cols int, scale float32) {
	if w := be.mixed(y, comb, base, lora, mag, norm); w != nil {
		be.DoRAForward(w.out(y), w.out(comb), w.in(base), w.in(lora), w.in(mag), w.in(norm), rows, cols, scale)
		w.done()
		return
	}
	yv, bv, lv, mv, nv := f32(y), f32(base), f32(lora), f32(mag), f32(norm)
	need("dora y", len(yv), rows*cols)
	need("dora base", len(bv), rows*cols)
	need("dora lora", len(lv), rows*cols)
	need("dora magnitude", len(mv), cols)
	need("dora norm", len(nv), cols)
	var cv []float32
	if comb != nil {
		cv = f32(comb)
		need("dora comb", len(cv), rows*cols)
	}
	be.parallel(rows, rowGrain(cols), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			for c := range cols {
				i := r*cols + c
				g := mv[c] / nv[c]
				b, l := bv[i], lv[i]
				if cv != nil {
					cv[i] = b + scale*l
				}
				yv[i] += (g-1)*b + g*l*scale
			}
		}
	})
}

// DoRABackward implements compute.Backend.
func (be *Backend) DoRABackward(dbase, dlora, dmag, dy, comb, mag, norm compute.Buffer, rows, cols int, scale float32) {
	if w := be.mixed(dbase, dlora, dmag, dy, comb, mag, norm); w != nil {
		be.DoRABackward(w.out(dbase), w.out(dlora), w.out(dmag), w.in(dy), w.in(comb), w.in(mag), w.in(norm), rows, cols, scale)
		w.done()
		return
	}
	dbv, dlv, dmv, dyv, cv, mv, nv := f32(dbase), f32(dlora), f32(dmag), f32(dy), f32(comb), f32(mag), f32(norm)
	for _, s := range []struct {
		name string
		v    []float32
	}{{"dora dbase", dbv}, {"dora dlora", dlv}, {"dora dy", dyv}, {"dora comb", cv}} {
		need(s.name, len(s.v), rows*cols)
	}
	need("dora dmag", len(dmv), cols)
	need("dora magnitude", len(mv), cols)
	need("dora norm", len(nv), cols)
	// Columns are split across workers; each column's sum runs over all rows
	// in order.
	be.parallel(cols, max(16, rowGrain(rows)), func(lo, hi int) {
		acc := make([]float64, hi-lo)
		g := make([]float32, hi-lo)
		for c := lo; c < hi; c++ {
			g[c-lo] = mv[c] / nv[c]
		}
		for r := range rows {
			off := r * cols
			for c := lo; c < hi; c++ {
				d := dyv[off+c]
				gc := g[c-lo]
				dbv[off+c] = (gc - 1) * d
				dlv[off+c] = gc * scale * d
				acc[c-lo] += float64(d) * float64(cv[off+c])
			}
		}
		for c := lo; c < hi; c++ {
			dmv[c] += float32(acc[c-lo] / float64(nv[c]))
		}
	})
}

// AdamWStep implements compute.Backend, following torch.optim.AdamW
// (single-tensor path): scalars are formed in float64 and applied in f32.
func (be *Backend) AdamWStep(h compute.AdamW, p, g, m, v compute.Buffer) {
	pv, gv, mv, vv := f32(p), f32(g), f32(m), f32(v)
	n := len(pv)
	need("adamw grad", len(gv), n)
	need("adamw m", len(mv), n)
	need("adamw v", len(vv), n)
	if h.Step < 1 {
		panic("cpu: adamw step counter starts at 1")
	}
	t := float64(h.Step)
	decay := float32(1 - h.LR*h.WeightDecay)
	w1 := float32(1 - h.Beta1)
	b2 := float32(h.Beta2)
	w2 := float32(1 - h.Beta2)
	bc1 := 1 - math.Pow(h.Beta1, t)
	bc2 := 1 - math.Pow(h.Beta2, t)
	stepSize := float32(-(h.LR / bc1))
	bc2s := float32(math.Sqrt(bc2))
	eps := float32(h.Eps)
	wd := h.WeightDecay != 0
	be.parallel(n, elemGrain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			x := pv[i]
			if wd {
				x *= decay
			}
			gi := gv[i]
			mi := mv[i]
			if w1 < 0.5 {
				mi += w1 * (gi - mi)
			} else {
				mi = gi - (gi-mi)*(1-w1)
			}
			vi := vv[i]*b2 + w2*gi*gi
			denom := float32(math.Sqrt(float64(vi)))/bc2s + eps
			pv[i] = x + stepSize*(mi/denom)
			mv[i], vv[i] = mi, vi
		}
	})
}

// norm2Chunk is the fixed chunk of the Norm2 reduction.
const norm2Chunk = 1 << 12

// Norm2 implements compute.Backend. Squares are summed in float64 per fixed
// chunk and the chunk sums added in order.
func (be *Backend) Norm2(dst, x compute.Buffer) {
	d, xv := f32(dst), f32(x)
	needAtLeast("norm2 dst", len(d), 1)
	chunks := ceilDiv(len(xv), norm2Chunk)
	part := make([]float64, chunks)
	be.parallel(chunks, 4, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			var s float64
			for _, v := range xv[c*norm2Chunk : min(len(xv), (c+1)*norm2Chunk)] {
				s += float64(v) * float64(v)
			}
			part[c] = s
		}
	})
	var s float64
	for _, v := range part {
		s += v
	}
	d[0] = float32(math.Sqrt(s))
}

// ScaleCols implements compute.Backend.
func (be *Backend) ScaleCols(dst, x, v compute.Buffer, rows, cols int, accumulate bool) {
	if w := be.mixed(dst, x, v); w != nil {
		be.ScaleCols(w.out(dst), w.in(x), w.in(v), rows, cols, accumulate)
		w.done()
		return
	}
	dv, xv, vv := f32(dst), f32(x), f32(v)
	need("scalecols dst", len(dv), rows*cols)
	need("scalecols x", len(xv), rows*cols)
	need("scalecols v", len(vv), cols)
	be.parallel(rows, rowGrain(cols), func(lo, hi int) {
		for r := lo; r < hi; r++ {
			d, s := dv[r*cols:(r+1)*cols], xv[r*cols:(r+1)*cols]
			if accumulate {
				for c, w := range vv {
					d[c] += s[c] * w
				}
				continue
			}
			for c, w := range vv {
				d[c] = s[c] * w
			}
		}
	})
}

// ColDot implements compute.Backend. Columns are split across workers; each
// column's sum runs over all rows in order, in float64.
func (be *Backend) ColDot(out, a, b compute.Buffer, rows, cols int) {
	if w := be.mixed(out, a, b); w != nil {
		be.ColDot(w.out(out), w.in(a), w.in(b), rows, cols)
		w.done()
		return
	}
	ov, av, bv := f32(out), f32(a), f32(b)
	need("coldot out", len(ov), cols)
	need("coldot a", len(av), rows*cols)
	need("coldot b", len(bv), rows*cols)
	be.parallel(cols, max(16, rowGrain(rows)), func(lo, hi int) {
		acc := make([]float64, hi-lo)
		for r := range rows {
			x, y := av[r*cols+lo:r*cols+hi], bv[r*cols+lo:r*cols+hi]
			for c := range acc {
				acc[c] += float64(x[c]) * float64(y[c])
			}
		}
		for c := range acc {
			ov[lo+c] += float32(acc[c])
		}
	})
}
