package nf4

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"

	"github.com/lorakit/lorakit/internal/kernels/nibble"
)

// quantizeBlockwiseRef is QuantizeBlockwise as it was before the table
// search: the same scaling, then torch.bucketize by binary search over the
// 255 midpoints for every element. It is the twin the fast path is checked
// against.
func quantizeBlockwiseRef(dst []byte, absmax []float32, src []float32, blocksize int, code *[256]float32) {
	mid := midpoints256(code)
	n := len(src)
	for b := range absmax {
		lo := b * blocksize
		hi := min(lo+blocksize, n)
		x := src[lo:hi]
		partial := hi-lo < blocksize
		var am float32
		for _, v := range x {
			a := math.Float32frombits(math.Float32bits(v) &^ (1 << 31))
			if a != a {
				am = a
				break
			}
			if a > am {
				am = a
			}
		}
		div := am
		if div < minDivisor {
			div = minDivisor
		}
		absmax[b] = am
		if partial {
			absmax[b] = div
		}
		inv := 1 / div
		for i, v := range x {
			var s float32
			if partial {
				s = v / div
			} else {
				s = v * inv
			}
			if s < -1 {
				s = -1
			} else if s > 1 {
				s = 1
			}
			dst[lo+i] = bucketize(s, mid[:])
		}
	}
}

// TestDynCodeMatchesBucketize compares the table search with the binary
// search on every float32 within 64 ulps of each midpoint and each code
// value, on special values, on a stride through every float32 bit pattern,
// and on random values.
func TestDynCodeMatchesBucketize(t *testing.T) {
	check := func(s float32) {
		t.Helper()
		if s != s {
			return // NaN never reaches dynCode
		}
		if got, want := dynCode(s), bucketize(s, dynamicMidpoints[:]); got != want {
			t.Fatalf("dynCode(%v [%08x]) = %d, bucketize %d", s, math.Float32bits(s), got, want)
		}
	}
	around := func(v float32) {
		t.Helper()
		up, down := v, v
		for range 64 {
			check(up)
			check(down)
			up = math.Nextafter32(up, float32(math.Inf(1)))
			down = math.Nextafter32(down, float32(math.Inf(-1)))
		}
	}
	for _, m := range dynamicMidpoints {
		around(m)
	}
	for _, c := range dynamicMap {
		around(c)
	}
	inf := float32(math.Inf(1))
	for _, s := range []float32{0, float32(math.Copysign(0, -1)), 1, -1, inf, -inf,
		math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32, math.MaxFloat32, -math.MaxFloat32,
		minDivisor, -minDivisor, math.Float32frombits(0x007fffff), math.Float32frombits(0x807fffff),
		math.Float32frombits(0x00800000), math.Float32frombits(0x80800000), 1.5, -1.5} {
		around(s)
	}
	// Every 4099th bit pattern (all signs, exponents and mantissa bits).
	for b := uint64(0); b < 1<<32; b += 4099 {
		check(math.Float32frombits(uint32(b)))
	}
	x := uint64(0x243f6a8885a308d3)
	for range 1 << 20 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		check(math.Float32frombits(uint32(x)))                                   // any bits
		check(float32(int64(x>>40)-1<<23) / (1 << 23))                           // uniform in [-1, 1)
		check(math.Float32frombits(uint32(x)&0x807fffff | uint32(x>>32)%24<<23)) // tiny, subnormal
	}
}

// TestDynLUTOneThresholdPerBucket checks the table invariant the lookup
// relies on (it is also checked when the table is built).
func TestDynLUTOneThresholdPerBucket(t *testing.T) {
	seen := map[uint32]bool{}
	for i, m := range dynamicMidpoints {
		k := nibble.OrderedKey(math.Float32bits(m))
		if seen[k>>dynShift] {
			t.Fatalf("midpoint %d shares a bucket", i)
		}
		seen[k>>dynShift] = true
		if dynThrKeys[i] != k {
			t.Fatalf("dynThrKeys[%d] = %08x, want %08x", i, dynThrKeys[i], k)
		}
	}
	if dynThrKeys[255] != math.MaxUint32 {
		t.Fatalf("padding %08x", dynThrKeys[255])
	}
}

// TestQuantizeBlockwiseMatchesRef runs QuantizeBlockwise and its reference on
// full and partial blocks holding NaN, ±Inf, zeros, subnormals, exact code
// values and midpoints, and random values, with the dynamic map and a
// custom map.
func TestQuantizeBlockwiseMatchesRef(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	var custom [256]float32
	for i := range custom {
		custom[i] = float32(i-128) / 128
	}
	x := uint64(7)
	rnd := func() uint64 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return x
	}
	type tc struct {
		name string
		src  []float32
		bs   int
	}
	var cases []tc
	mk := func(name string, n, bs int, f func(i int) float32) {
		src := make([]float32, n)
		for i := range src {
			src[i] = f(i)
		}
		cases = append(cases, tc{name, src, bs})
	}
	mk("random", 256*9+17, 256, func(int) float32 { return float32(int64(rnd()>>40)-1<<23) / (1 << 30) })
	mk("gauss", 256*8, 256, func(i int) float32 { return randFloats(3, 256*8, 0.01)[i] })
	mk("codes", 256*3+5, 256, func(i int) float32 { return dynamicMap[i%256] * 0.25 })
	mk("midpoints", 255*3, 255, func(i int) float32 {
		if i%255 == 0 {
			return 1
		}
		return dynamicMidpoints[i%255]
	})
	mk("nextmid", 256*2, 256, func(i int) float32 {
		m := dynamicMidpoints[i%255]
		if i%256 == 0 {
			return -1
		}
		if i%2 == 0 {
			return math.Nextafter32(m, 2)
		}
		return math.Nextafter32(m, -2)
	})
	mk("zeros", 256*2+3, 256, func(i int) float32 {
		if i%3 == 0 {
			return float32(math.Copysign(0, -1))
		}
		return 0
	})
	mk("subnormal", 256*3+100, 256, func(int) float32 {
		return math.Float32frombits(uint32(rnd()) & 0x807fffff)
	})
	mk("nan", 256*3+7, 256, func(i int) float32 {
		switch i {
		case 5, 256*3 + 2:
			return nan
		}
		return float32(i%17) - 8
	})
	mk("inf", 256*3+7, 256, func(i int) float32 {
		switch i {
		case 300:
			return inf
		case 256*3 + 1:
			return -inf
		}
		return float32(i%17) - 8
	})
	mk("anybits", 64*40+9, 64, func(int) float32 { return math.Float32frombits(uint32(rnd())) })
	mk("tiny", 256*4, 256, func(i int) float32 { return float32(i%256-128) * 1e-38 })
	for _, c := range cases {
		for _, code := range []*[256]float32{&dynamicMap, &custom} {
			nb := NumBlocks(len(c.src), c.bs)
			got, want := make([]byte, len(c.src)), make([]byte, len(c.src))
			ga, wa := make([]float32, nb), make([]float32, nb)
			if err := QuantizeBlockwise(got, ga, c.src, c.bs, code); err != nil {
				t.Fatal(err)
			}
			quantizeBlockwiseRef(want, wa, c.src, c.bs, code)
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%s (dynamic %v): code[%d] of %v = %d, want %d",
						c.name, code == &dynamicMap, i, c.src[i], got[i], want[i])
				}
			}
			for i := range ga {
				if math.Float32bits(ga[i]) != math.Float32bits(wa[i]) {
					t.Fatalf("%s: absmax[%d] = %v, want %v", c.name, i, ga[i], wa[i])
				}
			}
		}
	}
}

// centeredAbsmax returns the block absmax values of a realistic weight,
// minus their mean: the input of the nested quantization.
func centeredAbsmax(b *testing.B) []float32 {
	x := randFloats(1, benchN, 0.02)
	p := make([]byte, PackedLen(len(x)))
	a := make([]float32, NumBlocks(len(x), 64))
	if err := Quantize(p, a, x, 64, NF4); err != nil {
		b.Fatal(err)
	}
	off := MeanOffset(a)
	for i := range a {
		a[i] -= off
	}
	return a
}

func benchBlockwise(b *testing.B, quant func(dst []byte, absmax, src []float32)) {
	a := centeredAbsmax(b)
	dst := make([]byte, len(a))
	nb := NumBlocks(len(a), NestedBlocksize)
	am := make([]float32, nb)
	b.SetBytes(int64(4 * len(a)))
	b.ResetTimer()
	for b.Loop() {
		quant(dst, am, a)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(nb), "ns/block")
}

func BenchmarkQuantizeBlockwise(b *testing.B) {
	benchBlockwise(b, func(dst []byte, am, a []float32) {
		if err := QuantizeBlockwise(dst, am, a, NestedBlocksize, &dynamicMap); err != nil {
			b.Fatal(err)
		}
	})
}

func BenchmarkQuantizeBlockwiseRef(b *testing.B) {
	benchBlockwise(b, func(dst []byte, am, a []float32) {
		quantizeBlockwiseRef(dst, am, a, NestedBlocksize, &dynamicMap)
	})
}

func BenchmarkDynCode(b *testing.B) {
	a := centeredAbsmax(b)
	for i := range a {
		a[i] *= 50
	}
	b.SetBytes(4)
	var acc uint8
	i := 0
	for b.Loop() {
		acc += dynCode(a[i])
		i++
		if i == len(a) {
			i = 0
		}
	}
	_ = acc
}

// FuzzQuantizeBlockwise checks QuantizeBlockwise with the dynamic map
// against its binary-search reference on arbitrary float32 bit patterns,
// scaled by a power of two so that blocks of small values occur.
func FuzzQuantizeBlockwise(f *testing.F) {
	f.Add([]byte{0, 0, 128, 63, 0, 0, 0, 0, 1, 2, 3, 4}, uint8(0), uint8(0))
	f.Add(make([]byte, 4*300), uint8(3), uint8(10))
	f.Add([]byte{0, 0, 0xc0, 0x7f, 0, 0, 0x80, 0xff, 0x8f, 0xc2, 0xf5, 0x3c}, uint8(1), uint8(0))
	f.Fuzz(func(t *testing.T, raw []byte, bsSel, shift uint8) {
		n := len(raw) / 4
		if n == 0 {
			return
		}
		scale := float32(math.Ldexp(1, -int(shift%128)))
		x := make([]float32, n)
		for i := range x {
			x[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])) * scale
		}
		bs := int(bsSel%8) + 1
		if bsSel >= 128 {
			bs = NestedBlocksize
		}
		nb := NumBlocks(n, bs)
		got, want := make([]byte, n), make([]byte, n)
		ga, wa := make([]float32, nb), make([]float32, nb)
		if err := QuantizeBlockwise(got, ga, x, bs, &dynamicMap); err != nil {
			t.Fatal(err)
		}
		quantizeBlockwiseRef(want, wa, x, bs, &dynamicMap)
		if !slices.Equal(got, want) {
			t.Fatalf("codes % x, reference % x", got, want)
		}
		for i := range ga {
			if math.Float32bits(ga[i]) != math.Float32bits(wa[i]) {
				t.Fatalf("absmax[%d] %v, reference %v", i, ga[i], wa[i])
			}
		}
	})
}
