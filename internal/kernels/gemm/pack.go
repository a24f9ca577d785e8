package gemm

import "math"

// Matrix is an operand of a GEMM seen through op(): element (r, k) is at
// r·RS + k·KS of F (float32) or, when F is nil, of H (bfloat16, widened
// exactly while packing).
type Matrix struct {
	F      []float32
	H      []uint16
	Rows   int
	RS, KS int
}

// Pack writes rows [r0, r0+nrows) × k-columns [k0, k0+kb) of m into dst as
// panels of w rows: dst[q·kb·w + k·w + i] holds row r0+q·w+i, zero past the
// last row of m. dst must hold ceil(nrows/w)·kb·w values. Full panels as
// wide as the active micro-kernel's NR use its assembly packers.
func (m *Matrix) Pack(dst []float32, r0, nrows, k0, kb, w int) {
	if kb <= 0 || nrows <= 0 {
		return
	}
	panels := (nrows + w - 1) / w
	k := active
	for q := range panels {
		p := dst[q*kb*w : (q+1)*kb*w]
		rb := r0 + q*w
		valid := min(w, m.Rows-rb, r0+nrows-rb)
		if valid < w {
			clear(p)
		}
		if m.KS == 1 { // rows contiguous along k: a transpose
			kd := 0
			if valid == w && w == k.NR && k.packT != nil {
				kd = kb &^ (k.tk - 1)
				base := rb*m.RS + k0
				if end := base + (w-1)*m.RS + kb; m.F != nil {
					k.packT(p, m.F[base:end], m.RS, kd)
				} else {
					k.packTBF16(p, m.H[base:end], m.RS, kd)
				}
			}
			if kd < kb {
				m.packRows(p[kd*w:], rb, valid, k0+kd, kb-kd, w)
			}
			continue
		}
		if valid == w && w == k.NR && k.packN != nil {
			base := k0*m.KS + rb
			if end := base + (kb-1)*m.KS + w; m.F != nil {
				k.packN(p, m.F[base:end], m.KS, kb)
			} else {
				k.packNBF16(p, m.H[base:end], m.KS, kb)
			}
			continue
		}
		// RS == 1: contiguous along rows.
		for k := range kb {
			base := (k0+k)*m.KS + rb
			d := p[k*w : k*w+valid]
			if m.F != nil {
				copy(d, m.F[base:base+valid])
				continue
			}
			src := m.H[base : base+valid]
			for i, x := range src {
				d[i] = math.Float32frombits(uint32(x) << 16)
			}
		}
	}
}

// packRows packs valid rows contiguous along k into one panel of width w.
func (m *Matrix) packRows(p []float32, rb, valid, k0, kb, w int) {
	i := 0
	// Four rows at a time: one 16-byte store per k.
	for ; i+4 <= valid; i += 4 {
		base := (rb+i)*m.RS + k0
		if m.F != nil {
			x0 := m.F[base : base+kb]
			x1 := m.F[base+m.RS : base+m.RS+kb]
			x2 := m.F[base+2*m.RS : base+2*m.RS+kb]
			x3 := m.F[base+3*m.RS : base+3*m.RS+kb]
			interleave4(p[i:], w, x0, x1, x2, x3)
			continue
		}
		x0 := m.H[base : base+kb]
		x1 := m.H[base+m.RS : base+m.RS+kb]
		x2 := m.H[base+2*m.RS : base+2*m.RS+kb]
		x3 := m.H[base+3*m.RS : base+3*m.RS+kb]
		for k := range x0 {
			d := p[k*w+i : k*w+i+4 : k*w+i+4]
			d[0] = math.Float32frombits(uint32(x0[k]) << 16)
			d[1] = math.Float32frombits(uint32(x1[k]) << 16)
			d[2] = math.Float32frombits(uint32(x2[k]) << 16)
			d[3] = math.Float32frombits(uint32(x3[k]) << 16)
		}
	}
	for ; i < valid; i++ {
		base := (rb+i)*m.RS + k0
		if m.F != nil {
			for k, x := range m.F[base : base+kb] {
				p[k*w+i] = x
			}
			continue
		}
		for k, x := range m.H[base : base+kb] {
			p[k*w+i] = math.Float32frombits(uint32(x) << 16)
		}
	}
}

// interleave4 writes d[k·w+j] = xj[k] for j < 4 and k < len(x0).
func interleave4(d []float32, w int, x0, x1, x2, x3 []float32) {
	n := len(x0)
	x1, x2, x3 = x1[:n], x2[:n], x3[:n]
	for k := range n {
		e := d[k*w : k*w+4 : k*w+4]
		e[0], e[1], e[2], e[3] = x0[k], x1[k], x2[k], x3[k]
	}
}
