package cpu

import (
	"fmt"
	"sync"

	"github.com/lorakit/lorakit/internal/kernels/gemm"
	"github.com/lorakit/lorakit/pkg/compute"
)

// GEMM (BLIS order): C is cut into tasks of whole column tiles (nc wide)
// over a range of rows (all rows unless there are too few column tiles to
// keep the workers busy). A task walks K in fixed blocks of gemmKC; for
// each it packs its block of op(B) once, into panels of the micro-kernel's
// NR columns, and then, per gemmMC rows, the block of op(A) into panels of
// MR rows (or takes it from op(A) packed once for the whole call), and runs
// the register-blocked micro-kernel of internal/kernels/gemm on every MR×NR
// block. Every element of C is computed by one worker, with a summation
// order that depends only on K and the micro-kernel, never on the tiling
// (edge blocks run the same kernel on a copy of C), so results do not depend
// on the thread count, and a row of C does not depend on the other rows of
// op(A): rows packed into one batch compute what they would compute alone.

const (
	gemmKC = 256 // K block: an NR-wide panel of op(B) stays in L1
	gemmMC = 256 // rows of packed op(A) per block: MC·KC floats stay in L2
	gemmNC = 256 // columns per task: NC·KC floats of packed op(B) in L2
)

// newMatrix describes buffer b as op(X), rows×k, for the kernels.
func newMatrix(b compute.Buffer, name string, rows, k int, trans bool) gemm.Matrix {
	c := get(b)
	need(name, c.Len(), rows*k)
	m := gemm.Matrix{Rows: rows}
	switch c.dt {
	case compute.F32:
		m.F = c.f
	case compute.BF16:
		m.H = c.h
	default:
		panic(fmt.Sprintf("cpu: gemm %s has dtype %v", name, c.dt))
	}
	if trans { // stored k×rows
		m.RS, m.KS = 1, rows
	} else { // stored rows×k
		m.RS, m.KS = k, 1
	}
	return m
}

// Pools of packing scratch: per task, and for a whole pre-packed op(A).
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
	A := newMatrix(a, "gemm A", p.M, p.K, p.TransA)
	B := newMatrix(b, "gemm B", p.N, p.K, !p.TransB) // op(B)ᵀ is N×K
	if p.M == 0 || p.N == 0 {
		return
	}
	kern := gemm.Active()
	mr, nr := kern.MR, kern.NR
	nc := roundUp(min(p.N, gemmNC), nr)
	mt := roundUp(p.M, mr) // rows per task
	// Enough tasks to keep every worker busy: narrower column tiles first,
	// then fewer rows per task.
	for ceilDiv(p.M, mt)*ceilDiv(p.N, nc) < 2*be.threads {
		if nc > nr {
			nc = roundUp(nc/2, nr)
		} else if mt > mr {
			mt = roundUp(mt/2, mr)
		} else {
			break
		}
	}
	tm, tn := ceilDiv(p.M, mt), ceilDiv(p.N, nc)
	kc := min(gemmKC, max(p.K, 1))
	mc := min(roundUp(gemmMC, mr), mt)
	compute := p.K > 0 && p.Alpha != 0
	// A float32 op(A) whose rows run along k is read in place by the
	// kernels that can (all but the partial last block of rows); otherwise,
	// when several column tiles share the rows of op(A), it is packed once:
	// block q of kc steps holds panel ir at q·kc·mpad + ir·kb.
	inPlace := kern.StridedA && A.F != nil && A.KS == 1
	var apre []float32
	mpad := roundUp(p.M, mr)
	if !inPlace && tn > 1 && compute && mpad*p.K <= 1<<23 {
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
				A.Pack(apre[pc*mpad+lo*mr*kb:], lo*mr, (hi-lo)*mr, pc, kb, mr)
			}
		})
	}
	scratch := kc*nc + mr*nr
	if apre == nil {
		scratch += mc * kc
	}
	be.tasks(tm*tn, func(_, t int) {
		i0, jc := (t/tn)*mt, (t%tn)*nc
		mb, nb := min(mt, p.M-i0), min(nc, p.N-jc)
		// Beta: 0 needs no pass when the kernels overwrite C in the first K
		// block.
		if p.Beta != 1 && !(p.Beta == 0 && compute) {
			for i := range mb {
				row := C[(i0+i)*p.N+jc : (i0+i)*p.N+jc+nb]
				if p.Beta == 0 {
					clear(row)
					continue
				}
				for j := range row {
					row[j] *= p.Beta
				}
			}
		}
		if !compute {
			return
		}
		sp, _ := packPool.Get().(*[]float32)
		if sp == nil || cap(*sp) < scratch {
			s := make([]float32, scratch)
			sp = &s
		}
		s := (*sp)[:scratch]
		bp, tmp, ap := s[:kc*nc], s[kc*nc:kc*nc+mr*nr], s[kc*nc+mr*nr:]
		for pc := 0; pc < p.K; pc += kc {
			kb := min(kc, p.K-pc)
			overwrite := pc == 0 && p.Beta == 0
			B.Pack(bp, jc, nb, pc, kb, nr)
			for ic := i0; ic < i0+mb; ic += mc {
				mcb := min(mc, i0+mb-ic)
				a, full := ap, mcb
				switch {
				case inPlace:
					full = mcb / mr * mr
					if full < mcb { // the rows past the last whole block
						A.Pack(ap[full*kb:], ic+full, mcb-full, pc, kb, mr)
					}
				case apre != nil:
					a = apre[pc*mpad+ic*kb:]
				default:
					A.Pack(ap, ic, mcb, pc, kb, mr)
				}
				for jr := 0; jr < nb; jr += nr {
					bpan := bp[jr*kb : (jr+nr)*kb]
					nv := min(nr, nb-jr)
					for ir := 0; ir < mcb; ir += mr {
						apan, lda := a[ir*kb:(ir+mr)*kb], 0
						if ir < full && inPlace {
							apan, lda = A.F[(ic+ir)*A.RS+pc:], A.RS
						}
						mv := min(mr, mcb-ir)
						off := (ic+ir)*p.N + jc + jr
						if mv == mr && nv == nr {
							kern.Block(kb, apan, bpan, C[off:], lda, p.N, p.Alpha, overwrite)
							continue
						}
						// An edge block runs the kernel on a copy of C so that
						// every element of C sees the same arithmetic wherever
						// it lies in the tiling.
						clear(tmp)
						if !overwrite {
							for i := range mv {
								copy(tmp[i*nr:i*nr+nv], C[off+i*p.N:off+i*p.N+nv])
							}
						}
						kern.Block(kb, apan, bpan, tmp, lda, nr, p.Alpha, false)
						for i := range mv {
							copy(C[off+i*p.N:off+i*p.N+nv], tmp[i*nr:i*nr+nv])
						}
					}
				}
			}
		}
		packPool.Put(sp)
	})
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func roundUp(a, m int) int { return ceilDiv(a, m) * m }
