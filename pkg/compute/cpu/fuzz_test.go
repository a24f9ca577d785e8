package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lorakit/lorakit/pkg/compute"
)

// FuzzGemm compares Gemm on arbitrary shapes, transposes, dtypes, alpha and
// beta with a float64 reference.
func FuzzGemm(f *testing.F) {
	f.Add(uint8(1), uint8(1), uint16(1), uint8(0), int8(2), int8(0), uint64(1))
	f.Add(uint8(37), uint8(45), uint16(300), uint8(3), int8(1), int8(2), uint64(2))
	f.Add(uint8(5), uint8(33), uint16(513), uint8(12), int8(-3), int8(-1), uint64(3))
	f.Add(uint8(64), uint8(64), uint16(0), uint8(5), int8(2), int8(1), uint64(4))
	f.Fuzz(func(t *testing.T, m, n uint8, k uint16, flags uint8, alpha, beta int8, seed uint64) {
		M, N, K := int(m%80), int(n%80), int(k%700)
		p := compute.Gemm{M: M, N: N, K: K, TransA: flags&1 != 0, TransB: flags&2 != 0,
			Alpha: float32(alpha) / 2, Beta: float32(beta) / 2}
		be := New(int(flags>>4)%4 + 1)
		r := rand.New(rand.NewPCG(seed, 1))
		mk := func(n int, bf bool) (compute.Buffer, []float64) {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(2*r.Float64() - 1)
				if bf {
					x[i] = fromBF16(toBF16(x[i]))
				}
			}
			dt := compute.F32
			if bf {
				dt = compute.BF16
			}
			b, _ := be.Alloc(dt, n)
			be.Upload(b, x)
			w := make([]float64, n)
			for i, v := range x {
				w[i] = float64(v)
			}
			return b, w
		}
		a, av := mk(M*K, flags&4 != 0)
		b, bv := mk(K*N, flags&8 != 0)
		c, cv := mk(M*N, false)
		be.Gemm(p, a, b, c)
		got := make([]float32, M*N)
		if err := be.Download(got, c); err != nil {
			t.Fatal(err)
		}
		for i := range M {
			for j := range N {
				var s, mag float64
				for l := range K {
					x, y := av[i*K+l], bv[l*N+j]
					if p.TransA {
						x = av[l*M+i]
					}
					if p.TransB {
						y = bv[j*K+l]
					}
					s += x * y
					mag += math.Abs(x * y)
				}
				want := float64(p.Alpha) * s
				if p.Beta != 0 {
					want += float64(p.Beta) * cv[i*N+j]
				}
				tol := 1e-6 * (math.Abs(float64(p.Alpha))*mag + math.Abs(float64(p.Beta)) + 1) * float64(max(1, K)/64+1)
				if d := math.Abs(float64(got[i*N+j]) - want); d > tol {
					t.Fatalf("%+v: C[%d,%d] = %v, want %v (|Δ| %.3g > %.3g)", p, i, j, got[i*N+j], want, d, tol)
				}
			}
		}
	})
}
