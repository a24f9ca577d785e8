// Package gemm holds the float32 GEMM micro-kernels and the packing
// routines that feed them; the blocking, threading and operand handling live
// in pkg/compute/cpu.
//
// A micro-kernel computes one MR×NR block of C from a packed panel of A
// (kc steps of MR values, the broadcast side; or, where the tier supports
// it, MR rows of A read in place) and a packed panel of B (kc steps of NR
// values, the vector side):
//
//	C[i·ldc+j] = fma(acc[i][j], alpha, C[i·ldc+j]),  acc = Σₖ A[i,k]·b[k·NR+j]
//
// With overwrite, C's old values are taken as +0 and not read (a GEMM with
// beta = 0 needs no clearing pass).
//
// Contract. In the FMA tiers (avx2, avx512, neon) acc is the chain
// acc ← fma(a, b, acc) over k from 0 and the update one more fused
// multiply-add, whatever MR and NR: those tiers are bit-identical to each
// other and to Reference. The generic tier computes the same sums with
// separately rounded products and additions where the Go compiler does not
// fuse them (amd64 does not; arm64 may), so it differs from Reference by at
// most the rounding of kc+1 products: |Δ| ≤ (kc+2)·2⁻²⁴·(|C| + |alpha|·Σₖ|a·b|).
package gemm

import (
	"fmt"

	"github.com/lorakit/lorakit/internal/kernels/fma"
)

// Kernel is a micro-kernel of one tier.
type Kernel struct {
	MR, NR int    // block rows (A, broadcast) and columns (B, vectors)
	Name   string // "generic", "avx2", "avx512", "neon"
	// FMA reports whether the kernel follows Reference bit for bit.
	FMA bool
	// StridedA reports whether Block accepts lda > 0 (rows of A in place).
	StridedA bool
	fn       func(kc int, a, b, c []float32, lda, ldc int, alpha float32, overwrite bool)
	// Assembly packers of full NR-wide panels of B (nil: plain Go), each
	// covering k below a multiple of tk (packT) or all k (packN).
	packT     func(dst, src []float32, ld, kb int)
	packTBF16 func(dst []float32, src []uint16, ld, kb int)
	packN     func(dst, src []float32, ld, kb int)
	packNBF16 func(dst []float32, src []uint16, ld, kb int)
	tk        int
}

// Active returns the micro-kernel of the active tier.
func Active() Kernel { return active }

// Block runs the kernel on one block: b holds kc·NR values, c the block at
// row stride ldc ≥ NR, and a either a packed panel of kc·MR values (lda =
// 0) or MR rows of at least kc values lda apart (lda ≥ kc; only when
// StridedA). It panics if a slice is too short.
func (k Kernel) Block(kc int, a, b, c []float32, lda, ldc int, alpha float32, overwrite bool) {
	needA := kc * k.MR
	if lda != 0 {
		needA = (k.MR-1)*lda + kc
	}
	if kc < 0 || ldc < k.NR || lda < 0 || lda != 0 && (!k.StridedA || lda < kc) ||
		len(a) < needA || len(b) < kc*k.NR || len(c) < (k.MR-1)*ldc+k.NR {
		panic(fmt.Sprintf("gemm: %s block kc=%d lda=%d ldc=%d with a %d, b %d, c %d", k.Name, kc, lda, ldc, len(a), len(b), len(c)))
	}
	k.fn(kc, a, b, c, lda, ldc, alpha, overwrite)
}

// Reference computes what the FMA tiers compute for a packed A, element by
// element with a software fused multiply-add: the definition the tests
// compare against.
func Reference(mr, nr, kc int, a, b, c []float32, ldc int, alpha float32, overwrite bool) {
	for i := range mr {
		for j := range nr {
			var acc float32
			for k := range kc {
				acc = fma.F32(a[k*mr+i], b[k*nr+j], acc)
			}
			old := c[i*ldc+j]
			if overwrite {
				old = 0
			}
			c[i*ldc+j] = fma.F32(acc, alpha, old)
		}
	}
}

var generic = Kernel{MR: 2, NR: 4, Name: "generic", StridedA: true, fn: kernel2x4}

// kernel2x4 is the plain-Go micro-kernel. Eight accumulators, the panel
// values and the loop state fit the sixteen float registers of amd64 (a 4×4
// tile spills and runs at half the speed).
func kernel2x4(kc int, a, b, c []float32, lda, ldc int, alpha float32, overwrite bool) {
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	// A's two values of step k are at a0s[k·as] and a1s[k·as].
	var a0s, a1s []float32
	as := 2
	switch {
	case lda != 0:
		a0s, a1s, as = a[:kc], a[lda:lda+kc], 1
	case kc > 0:
		a0s, a1s = a[:kc*2], a[1:kc*2]
	}
	b = b[:kc*4]
	for k := 0; k < kc; k++ {
		bv := b[k*4 : k*4+4 : k*4+4]
		b0, b1, b2, b3 := bv[0], bv[1], bv[2], bv[3]
		a0, a1 := a0s[k*as], a1s[k*as]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
	}
	if overwrite {
		clear(c[:4])
		clear(c[ldc : ldc+4])
	}
	r := c[:4:4]
	r[0] += alpha * c00
	r[1] += alpha * c01
	r[2] += alpha * c02
	r[3] += alpha * c03
	r = c[ldc : ldc+4 : ldc+4]
	r[0] += alpha * c10
	r[1] += alpha * c11
	r[2] += alpha * c12
	r[3] += alpha * c13
}

// Peak runs n iterations of the active tier's FMA-throughput loop and
// returns the floating-point operations it performed (0 for the generic
// tier): the benchmarks' measure of the core's FMA peak.
func Peak(n int) float64 { return peak(n) }
