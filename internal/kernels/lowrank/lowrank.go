// Package lowrank adds a scaled low-rank product to a block of a weight
// matrix: the inner loop of merging a LoRA adapter (W' = W + s·B·A).
//
// Contract: every element is the chain of float32 fused multiply-adds
// acc ← fma(L[i,k], R[k,j], acc) for k = 0 … rank−1 from acc = 0 (PEFT's
// float32 CPU product, spec peft.md §7.6), then v[i,j] = f32(v[i,j] +
// f32(acc·scale)), with no other fusion. Every tier gives the same bits: the
// assembly tiers use the hardware FMA, the generic tier an exact software
// FMA (internal/kernels/fma).
package lowrank

import (
	"fmt"

	"github.com/lorakit/lorakit/internal/kernels/fma"
)

// Add adds f32(f32(L·R)·scale) to the rows×cols block v, with L rows×rank
// and R rank×cols, all row-major. scratch is reused when large enough; Add
// returns the scratch it used, for the next call.
func Add(v []float32, rows, cols int, l, r []float32, rank int, scale float32, scratch []float32) []float32 {
	if rows < 0 || cols < 0 || rank < 0 || len(v) < rows*cols || len(l) < rows*rank || len(r) < rank*cols {
		panic(fmt.Sprintf("lowrank: %d×%d rank %d with v %d, l %d, r %d", rows, cols, rank, len(v), len(l), len(r)))
	}
	if rows == 0 || cols == 0 {
		return scratch
	}
	if impl.add == nil || rank == 0 {
		return addGo(v, rows, cols, l, r, rank, scale, scratch)
	}
	// L transposed in panels of four rows: lt[p·rank·4 + k·4 + i] = L[4p+i, k].
	panels := (rows + 3) / 4
	if cap(scratch) < panels*rank*4 {
		scratch = make([]float32, panels*rank*4)
	}
	lt := scratch[:panels*rank*4]
	clear(lt[(panels-1)*rank*4:])
	for i := range rows {
		p, o := i/4, i%4
		dst := lt[p*rank*4+o:]
		for k, x := range l[i*rank : i*rank+rank] {
			dst[k*4] = x
		}
	}
	impl.add(v, lt, r, rows, cols, rank, scale)
	if c0 := cols &^ (impl.lanes - 1); c0 < cols {
		tailGo(v, rows, cols, c0, l, r, rank, scale)
	}
	return scratch
}

// Impl names the implementation in use ("generic", "avx2", "avx512",
// "neon").
func Impl() string { return impl.name }

type kernels struct {
	name  string
	lanes int // the kernel covers cols rounded down to a multiple of lanes
	add   func(v, lt, r []float32, rows, cols, rank int, scale float32)
}

var generic = kernels{name: "generic", lanes: 1}

// addGo is the plain-Go tier: per row, the chains of all columns advance
// together over k (R is read row by row), in scratch.
func addGo(v []float32, rows, cols int, l, r []float32, rank int, scale float32, scratch []float32) []float32 {
	if cap(scratch) < cols {
		scratch = make([]float32, cols)
	}
	acc := scratch[:cols]
	for i := 0; i < rows; i++ {
		clear(acc)
		li := l[i*rank : i*rank+rank]
		for k, lk := range li {
			rk := r[k*cols : k*cols+cols]
			// Four independent chains per step: each conversion's false
			// dependency on its register's old value then waits on a
			// different element.
			j := 0
			for ; j+4 <= cols; j += 4 {
				x := (*[4]float32)(rk[j : j+4])
				a := (*[4]float32)(acc[j : j+4])
				s0, ok0 := fma.Fast(lk, x[0], a[0])
				s1, ok1 := fma.Fast(lk, x[1], a[1])
				s2, ok2 := fma.Fast(lk, x[2], a[2])
				s3, ok3 := fma.Fast(lk, x[3], a[3])
				if ok0 && ok1 && ok2 && ok3 {
					a[0], a[1], a[2], a[3] = float32(s0), float32(s1), float32(s2), float32(s3)
					continue
				}
				for q := range a {
					a[q] = fma.F32(lk, x[q], a[q])
				}
			}
			for ; j < cols; j++ {
				acc[j] = fma.F32(lk, rk[j], acc[j])
			}
		}
		vi := v[i*cols : i*cols+cols]
		for j, a := range acc {
			vi[j] = float32(vi[j] + float32(a*scale))
		}
	}
	return scratch
}

// tailGo is addGo over the columns [c0, cols) only.
func tailGo(v []float32, rows, cols, c0 int, l, r []float32, rank int, scale float32) {
	for i := 0; i < rows; i++ {
		li := l[i*rank : i*rank+rank]
		for j := c0; j < cols; j++ {
			var acc float32
			for k, lk := range li {
				acc = fma.F32(lk, r[k*cols+j], acc)
			}
			v[i*cols+j] = float32(v[i*cols+j] + float32(acc*scale))
		}
	}
}
