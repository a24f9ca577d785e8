package cpu

import (
	"fmt"
	"math"
	"sync"

	"github.com/lorakit/lorakit/pkg/compute"
)

// GEMM: C is cut into tiles of mc×nc handed to workers; within a tile the K
// dimension is walked in fixed blocks of gemmKC, packing op(A) into panels of
// mr rows and op(B) into panels of nr columns, and a register-blocked
// micro-kernel accumulates each mr×nr block of C. Every element of C is
// computed by one worker, with a summation order that depends only on K and
// the micro-kernel, never on the tiling (edge blocks run the same kernel on
// a copy of C), so results do not depend on the thread count, and a row of C
// does not depend on the other rows of op(A): rows packed into one batch
// compute what they would compute alone.

const gemmKC = 256

// microKernel computes C[i·ldc+j] += alpha·Σ_k a[k·mr+i]·b[k·nr+j] for
// 0 ≤ i < mr, 0 ≤ j < nr, with a and b packed panels of kc steps. alpha is
// passed as float32 bits so that it does not occupy a vector register
// during the loop.
type microKernel struct {
	mr, nr int
	fn     func(kc int, a, b, c []float32, ldc int, alpha uint32)
}

// operand is a matrix of the GEMM seen through op(): element (r, k) is at
// r·rs + k·ks of f (F32) or h (BF16).
type operand struct {
	f      []float32
	h      []uint16
	rows   int
	rs, ks int
}

func newOperand(b compute.Buffer, name string, rows, k int, trans bool) operand {
	c := get(b)
	need(name, c.Len(), rows*k)
	o := operand{rows: rows}
	switch c.dt {
	case compute.F32:
		o.f = c.f
	case compute.BF16:
		o.h = c.h
	default:
		panic(fmt.Sprintf("cpu: gemm %s has dtype %v", name, c.dt))
	}
	if trans { // stored k×rows
		o.rs, o.ks = 1, rows
	} else { // stored rows×k
		o.rs, o.ks = k, 1
	}
	return o
}

// pack writes rows [r0, r0+nrows) × k-columns [k0, k0+kb) of o into dst as
// panels of w rows: dst[q·kb·w + k·w + i] holds row r0+q·w+i, zero past the
// last row.
func (o *operand) pack(dst []float32, r0, nrows, k0, kb, w int) {
	panels := (nrows + w - 1) / w
	for q := range panels {
		p := dst[q*kb*w : (q+1)*kb*w]
		rb := r0 + q*w
		valid := min(w, o.rows-rb, r0+nrows-rb)
		if valid < w {
			clear(p)
		}
		if o.ks == 1 { // rows contiguous along k: a transpose
			i := 0
			// Four rows at a time: one 16-byte store per k.
			for ; i+4 <= valid; i += 4 {
				base := (rb+i)*o.rs + k0
				if o.f != nil {
					x0 := o.f[base : base+kb]
					x1 := o.f[base+o.rs : base+o.rs+kb]
					x2 := o.f[base+2*o.rs : base+2*o.rs+kb]
					x3 := o.f[base+3*o.rs : base+3*o.rs+kb]
					interleave4(p[i:], w, x0, x1, x2, x3)
					continue
				}
				x0 := o.h[base : base+kb]
				x1 := o.h[base+o.rs : base+o.rs+kb]
				x2 := o.h[base+2*o.rs : base+2*o.rs+kb]
				x3 := o.h[base+3*o.rs : base+3*o.rs+kb]
				for k := range x0 {
					d := p[k*w+i : k*w+i+4 : k*w+i+4]
					d[0], d[1], d[2], d[3] = fromBF16(x0[k]), fromBF16(x1[k]), fromBF16(x2[k]), fromBF16(x3[k])
				}
			}
			for ; i < valid; i++ {
				base := (rb+i)*o.rs + k0
				if o.f != nil {
					src := o.f[base : base+kb]
					for k, x := range src {
						p[k*w+i] = x
					}
				} else {
					src := o.h[base : base+kb]
					for k, x := range src {
						p[k*w+i] = fromBF16(x)
					}
				}
			}
			continue
		}
		// o.rs == 1: contiguous along rows.
		for k := range kb {
			base := (k0+k)*o.ks + rb
			d := p[k*w : k*w+valid]
			if o.f != nil {
				copy(d, o.f[base:base+valid])
			} else {
				src := o.h[base : base+valid]
				for i, x := range src {
					d[i] = fromBF16(x)
				}
			}
		}
	}
}

// Pools of packing scratch: per tile, and for a whole pre-packed op(A).
var packPool, prePool sync.Pool

// Gemm implements compute.Backend.
func (be *Backend) Gemm(p compute.Gemm, a, b, c compute.Buffer) {
	if p.M < 0 || p.N < 0 || p.K < 0 {
		panic("cpu: gemm with negative dimensions")
	}
	if get(c).dt == compute.BF16 {
		be.gemmBF16(p, a, b, c) // ops_bf16.go
		return
	}
	C := f32(c)
	need("gemm C", len(C), p.M*p.N)
	A := newOperand(a, "gemm A", p.M, p.K, p.TransA)
	B := newOperand(b, "gemm B", p.N, p.K, !p.TransB) // op(B)ᵀ is N×K
	if p.M == 0 || p.N == 0 {
		return
	}
	kern := gemmKernel
	mr, nr := kern.mr, kern.nr
	mc := roundUp(min(p.M, 192), mr)
	nc := roundUp(min(p.N, 256), nr)
	// Enough tiles to keep every worker busy.
	for ceilDiv(p.M, mc)*ceilDiv(p.N, nc) < 2*be.threads {
		if nc > nr {
			nc = roundUp(nc/2, nr)
		} else if mc > mr {
			mc = roundUp(mc/2, mr)
		} else {
			break
		}
	}
	tm, tn := ceilDiv(p.M, mc), ceilDiv(p.N, nc)
	kc := min(gemmKC, max(p.K, 1))
	scratch := mc*kc + kc*nc + mr*nr
	alphaBits := math.Float32bits(p.Alpha)
	// When several column tiles share the rows of op(A), pack op(A) once:
	// block q of kc steps holds panel ir at q·kc·mpad + ir·kb.
	var apre []float32
	mpad := roundUp(p.M, mr)
	if tn > 1 && p.K > 0 && p.Alpha != 0 && mpad*p.K <= 1<<23 {
		ap, _ := prePool.Get().(*[]float32)
		if ap == nil || cap(*ap) < mpad*p.K {
			s := make([]float32, mpad*p.K)
			ap = &s
		}
		defer prePool.Put(ap)
		apre = (*ap)[:mpad*p.K]
		panels := mpad / mr
		be.parallel(panels, max(1, 4096/max(p.K, 1)), func(lo, hi int) {
			for pc := 0; pc < p.K; pc += kc {
				kb := min(kc, p.K-pc)
				A.pack(apre[pc*mpad+lo*mr*kb:], lo*mr, (hi-lo)*mr, pc, kb, mr)
			}
		})
	}
	be.tasks(tm*tn, func(_, t int) {
		ic, jc := (t/tn)*mc, (t%tn)*nc
		mb, nb := min(mc, p.M-ic), min(nc, p.N-jc)
		// Beta.
		for i := range mb {
			row := C[(ic+i)*p.N+jc : (ic+i)*p.N+jc+nb]
			switch p.Beta {
			case 0:
				clear(row)
			case 1:
			default:
				for j := range row {
					row[j] *= p.Beta
				}
			}
		}
		if p.K == 0 || p.Alpha == 0 {
			return
		}
		sp, _ := packPool.Get().(*[]float32)
		if sp == nil || cap(*sp) < scratch {
			s := make([]float32, scratch)
			sp = &s
		}
		s := (*sp)[:scratch]
		ap, bp, tmp := s[:mc*kc], s[mc*kc:mc*kc+kc*nc], s[mc*kc+kc*nc:]
		for pc := 0; pc < p.K; pc += kc {
			kb := min(kc, p.K-pc)
			a := ap
			if apre != nil {
				a = apre[pc*mpad+ic*kb:]
			} else {
				A.pack(ap, ic, mb, pc, kb, mr)
			}
			B.pack(bp, jc, nb, pc, kb, nr)
			for jr := 0; jr < nb; jr += nr {
				bpan := bp[jr*kb : (jr+nr)*kb]
				nv := min(nr, nb-jr)
				for ir := 0; ir < mb; ir += mr {
					apan := a[ir*kb : (ir+mr)*kb]
					mv := min(mr, mb-ir)
					off := (ic+ir)*p.N + jc + jr
					if mv == mr && nv == nr {
						kern.fn(kb, apan, bpan, C[off:], p.N, alphaBits)
						continue
					}
					// An edge block runs the kernel on a copy of C so that
					// every element of C sees the same arithmetic wherever
					// it lies in the tiling.
					clear(tmp)
					for i := range mv {
						copy(tmp[i*nr:i*nr+nv], C[off+i*p.N:off+i*p.N+nv])
					}
					kern.fn(kb, apan, bpan, tmp, nr, alphaBits)
					for i := range mv {
						copy(C[off+i*p.N:off+i*p.N+nv], tmp[i*nr:i*nr+nv])
					}
				}
			}
		}
		packPool.Put(sp)
	})
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func roundUp(a, m int) int { return ceilDiv(a, m) * m }

// kernel4x4 is the plain-Go micro-kernel (mr = nr = 4).
func kernel4x4(kc int, a, b, c []float32, ldc int, alphaBits uint32) {
	alpha := math.Float32frombits(alphaBits)
	var c00, c01, c02, c03 float32
	var c10, c11, c12, c13 float32
	var c20, c21, c22, c23 float32
	var c30, c31, c32, c33 float32
	a = a[:kc*4]
	b = b[:kc*4]
	for k := 0; k < kc; k++ {
		av := a[k*4 : k*4+4 : k*4+4]
		bv := b[k*4 : k*4+4 : k*4+4]
		b0, b1, b2, b3 := bv[0], bv[1], bv[2], bv[3]
		a0 := av[0]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		a1 := av[1]
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		a2 := av[2]
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		a3 := av[3]
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
	}
	r := c[0*ldc : 0*ldc+4 : 0*ldc+4]
	r[0] += alpha * c00
	r[1] += alpha * c01
	r[2] += alpha * c02
	r[3] += alpha * c03
	r = c[1*ldc : 1*ldc+4 : 1*ldc+4]
	r[0] += alpha * c10
	r[1] += alpha * c11
	r[2] += alpha * c12
	r[3] += alpha * c13
	r = c[2*ldc : 2*ldc+4 : 2*ldc+4]
	r[0] += alpha * c20
	r[1] += alpha * c21
	r[2] += alpha * c22
	r[3] += alpha * c23
	r = c[3*ldc : 3*ldc+4 : 3*ldc+4]
	r[0] += alpha * c30
	r[1] += alpha * c31
	r[2] += alpha * c32
	r[3] += alpha * c33
}

// gemmGeneric is the plain-Go kernel, always compiled.
var gemmGeneric = microKernel{mr: 4, nr: 4, fn: kernel4x4}
