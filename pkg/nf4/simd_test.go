package nf4

import (
	"math"
	"slices"
	"testing"
)

// TestKernelsMatchGeneric compares the dispatched full-block kernel (SIMD
// when built with GOEXPERIMENT=simd on AVX-512) with its plain-Go twin.
func TestKernelsMatchGeneric(t *testing.T) {
	t.Logf("simdKernels = %v", simdKernels)
	// Blocks whose absmax is exactly 1 (s = x, so threshold neighbours stay
	// exact) or 2 (s = x/2 exactly), blocks of random scale, zero and tiny
	// blocks, and blocks holding Inf or NaN.
	var x []float32
	for _, p := range nibbleProbes() {
		if p >= -1 && p <= 1 {
			x = append(x, p)
		}
	}
	const bs0 = 32
	var src []float32
	for i := 0; i+bs0-1 <= len(x); i += bs0 - 1 {
		blk := append([]float32{1}, x[i:i+bs0-1]...)
		if (i/(bs0-1))%2 == 1 {
			for j := range blk {
				blk[j] *= 2
			}
		}
		src = append(src, blk...)
	}
	src = append(src, randFloats(9, 64*bs0, 0.03)...)
	src = append(src, make([]float32, 4096)...)
	for range 4096 {
		src = append(src, 1e-41)
	}
	special := randFloats(10, 4*4096, 1)
	special[5] = float32(math.NaN())
	special[4096+7] = float32(math.Inf(-1))
	special[2*4096+4095] = float32(math.Inf(1))
	src = append(src, special...)
	src = src[:len(src)/4096*4096]
	for _, bs := range []int{32, 64, 128, 256, 512, 1024, 2048, 4096} {
		for _, typ := range []Type{NF4, FP4} {
			nb := len(src) / bs
			p1, p2 := make([]byte, len(src)/2), make([]byte, len(src)/2)
			a1, a2 := make([]float32, nb), make([]float32, nb)
			quantizeFull(p1, a1, src, bs, typ)
			quantizeFullGeneric(p2, a2, src, bs, typ)
			if !slices.Equal(p1, p2) {
				i := 0
				for p1[i] == p2[i] {
					i++
				}
				t.Fatalf("bs %d %v: byte %d (x %v %v): %02x, generic %02x", bs, typ, i, src[2*i], src[2*i+1], p1[i], p2[i])
			}
			for i := range a1 {
				if math.Float32bits(a1[i]) != math.Float32bits(a2[i]) && !(a1[i] != a1[i] && a2[i] != a2[i]) {
					t.Fatalf("bs %d %v: absmax[%d] %v, generic %v", bs, typ, i, a1[i], a2[i])
				}
			}
		}
	}
}
