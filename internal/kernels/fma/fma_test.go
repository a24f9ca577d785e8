package fma

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// exact is a·b + c rounded once to float32, computed with big.Float.
func exact(a, b, c float32) float32 {
	x := new(big.Float).SetPrec(200).SetFloat64(float64(a))
	x.Mul(x, new(big.Float).SetPrec(200).SetFloat64(float64(b)))
	x.Add(x, new(big.Float).SetPrec(200).SetFloat64(float64(c)))
	f, _ := x.Float32() // nearest, ties to even
	return f
}

func TestF32(t *testing.T) {
	// A case where float32(math.FMA(...)) rounds twice: the float64 result
	// is exactly the midpoint 1 + 2⁻²⁴, the exact value lies above it.
	a := float32(math.Ldexp(float64(1<<23+2896), -47))
	b := float32(math.Ldexp(float64(1<<23-2895), -23))
	if want := float32(1 + math.Ldexp(1, -23)); F32(a, b, 1) != want || exact(a, b, 1) != want {
		t.Fatalf("F32 = %v, exact %v, want %v", F32(a, b, 1), exact(a, b, 1), want)
	}
	if naive := float32(math.FMA(float64(a), float64(b), 1)); naive != 1 {
		t.Fatalf("naive double rounding gives %v; the test case is wrong", naive)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, math.MaxFloat32, -math.MaxFloat32,
		math.SmallestNonzeroFloat32, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), 1e-30, 3e38}
	pick := func() float32 {
		switch rng.IntN(4) {
		case 0:
			return special[rng.IntN(len(special))]
		case 1:
			return math.Float32frombits(rng.Uint32())
		default:
			return float32(rng.NormFloat64() * math.Exp2(float64(rng.IntN(40)-20)))
		}
	}
	tiny := func() float32 { // results in the float32 subnormal range
		return float32(rng.NormFloat64() * math.Exp2(float64(-rng.IntN(30)-130)))
	}
	for i := 0; i < 300000; i++ {
		a, b, c := pick(), pick(), pick()
		if i%3 == 0 {
			a, b, c = float32(rng.NormFloat64()*1e-20), float32(rng.NormFloat64()*1e-19), tiny()
		}
		got := F32(a, b, c)
		p := float64(a) * float64(b)
		if math.IsNaN(p+float64(c)) || math.IsInf(p+float64(c), 0) {
			if want := float32(p + float64(c)); !(math.IsNaN(float64(got)) && math.IsNaN(float64(want))) && got != want {
				t.Fatalf("F32(%g, %g, %g) = %g, want %g", a, b, c, got, want)
			}
			continue
		}
		if want := exact(a, b, c); math.Float32bits(got) != math.Float32bits(want) && !(got == 0 && want == 0) {
			t.Fatalf("F32(%g, %g, %g) = %g, want %g", a, b, c, got, want)
		}
	}
}
