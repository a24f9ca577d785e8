package gemm

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lorakit/lorakit/internal/kernels/ktest"
)

// TestPack compares Pack (with the active tier's packers) with the
// definition, for float32 and bfloat16 operands in both layouts, full and
// partial panels, and k ranges that are and are not multiples of the
// packers' block.
func TestPack(t *testing.T) {
	k := Active()
	ktest.LogTier(t, k.Name)
	r := rand.New(rand.NewPCG(11, 12))
	for _, rows := range []int{1, k.NR - 1, k.NR, 2 * k.NR, 2*k.NR + 3} {
		for _, kdim := range []int{1, 7, 16, 33, 64, 100} {
			for _, trans := range []bool{false, true} {
				for _, bf := range []bool{false, true} {
					f := randSlice(r, rows*kdim)
					m := Matrix{Rows: rows, RS: kdim, KS: 1}
					if trans {
						m.RS, m.KS = 1, rows
					}
					h := make([]uint16, len(f))
					if bf {
						for i, x := range f {
							h[i] = uint16(math.Float32bits(x) >> 16)
						}
						m.H = h
					} else {
						m.F = f
					}
					at := func(row, kk int) float32 {
						if bf {
							return math.Float32frombits(uint32(h[row*m.RS+kk*m.KS]) << 16)
						}
						return f[row*m.RS+kk*m.KS]
					}
					for _, w := range []int{k.NR, k.MR} {
						k0 := r.IntN(kdim)
						kb := kdim - k0
						r0 := r.IntN(rows)
						n := rows - r0
						panels := (n + w - 1) / w
						dst := make([]float32, panels*kb*w+1)
						for i := range dst {
							dst[i] = 7
						}
						m.Pack(dst[:panels*kb*w], r0, n, k0, kb, w)
						for q := range panels {
							for kk := range kb {
								for i := range w {
									want := float32(0)
									if row := r0 + q*w + i; row < rows {
										want = at(row, k0+kk)
									}
									if got := dst[q*kb*w+kk*w+i]; got != want {
										t.Fatalf("%s rows=%d k=%d trans=%v bf16=%v w=%d r0=%d k0=%d: panel %d [%d][%d] = %v, want %v",
											k.Name, rows, kdim, trans, bf, w, r0, k0, q, kk, i, got, want)
									}
								}
							}
						}
						if dst[panels*kb*w] != 7 {
							t.Fatalf("%s: Pack wrote past the panels", k.Name)
						}
					}
				}
			}
		}
	}
}

// BenchmarkPack packs a 768×768 weight as op(B) of Y = X·Wᵀ (transposing,
// every forward projection) and of dX = dY·W (copying, every input
// gradient), in float32 and bfloat16; MB/s counts float32 bytes written.
func BenchmarkPack(b *testing.B) {
	k := Active()
	r := rand.New(rand.NewPCG(1, 2))
	const n = 768
	f := randSlice(r, n*n)
	h := make([]uint16, n*n)
	for i, x := range f {
		h[i] = uint16(math.Float32bits(x) >> 16)
	}
	dst := make([]float32, n*256)
	for _, c := range []struct {
		name string
		m    Matrix
	}{
		{"T", Matrix{F: f, Rows: n, RS: n, KS: 1}}, {"N", Matrix{F: f, Rows: n, RS: 1, KS: n}},
		{"T-bf16", Matrix{H: h, Rows: n, RS: n, KS: 1}}, {"N-bf16", Matrix{H: h, Rows: n, RS: 1, KS: n}},
	} {
		b.Run(c.name+"/"+k.Name, func(b *testing.B) {
			b.SetBytes(n * n * 4)
			for b.Loop() {
				for pc := 0; pc < n; pc += 256 {
					c.m.Pack(dst, 0, n, pc, 256, k.NR)
				}
			}
		})
	}
}
