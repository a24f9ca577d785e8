//go:build goexperiment.simd && amd64

package cpu

import (
	"math"
	"simd/archsimd"
)

var gemmKernel = pickKernel()

var hasAVX2 = archsimd.X86.AVX2() && archsimd.X86.FMA()

func pickKernel() microKernel {
	switch {
	case archsimd.X86.AVX512():
		return microKernel{mr: 4, nr: 32, fn: kernel4x32}
	case hasAVX2:
		return microKernel{mr: 6, nr: 16, fn: kernel6x16}
	}
	return gemmGeneric
}

func simdName() string {
	switch {
	case archsimd.X86.AVX512():
		return "avx512"
	case hasAVX2:
		return "avx2"
	}
	return "generic"
}

// kernel4x32 is the AVX-512 micro-kernel (mr = 4, nr = 32). Larger tiles
// need more than the 16 vector registers the compiler allocates and spill.
func kernel4x32(kc int, a, b, c []float32, ldc int, alpha uint32) {
	var c00, c01, c10, c11, c20, c21, c30, c31 archsimd.Float32x16
	a = a[:kc*4]
	b = b[:kc*32]
	for k := 0; k < kc; k++ {
		bv := b[k*32 : k*32+32 : k*32+32]
		av := a[k*4 : k*4+4 : k*4+4]
		b0 := archsimd.LoadFloat32x16Slice(bv[:16])
		b1 := archsimd.LoadFloat32x16Slice(bv[16:])
		x := archsimd.BroadcastFloat32x16(av[0])
		c00 = x.MulAdd(b0, c00)
		c01 = x.MulAdd(b1, c01)
		x = archsimd.BroadcastFloat32x16(av[1])
		c10 = x.MulAdd(b0, c10)
		c11 = x.MulAdd(b1, c11)
		x = archsimd.BroadcastFloat32x16(av[2])
		c20 = x.MulAdd(b0, c20)
		c21 = x.MulAdd(b1, c21)
		x = archsimd.BroadcastFloat32x16(av[3])
		c30 = x.MulAdd(b0, c30)
		c31 = x.MulAdd(b1, c31)
	}
	al := archsimd.BroadcastFloat32x16(math.Float32frombits(alpha))
	store16x2(c[0*ldc:], c00, c01, al)
	store16x2(c[1*ldc:], c10, c11, al)
	store16x2(c[2*ldc:], c20, c21, al)
	store16x2(c[3*ldc:], c30, c31, al)
}

func store16x2(c []float32, x0, x1, alpha archsimd.Float32x16) {
	c = c[:32]
	x0.MulAdd(alpha, archsimd.LoadFloat32x16Slice(c[:16])).StoreSlice(c[:16])
	x1.MulAdd(alpha, archsimd.LoadFloat32x16Slice(c[16:])).StoreSlice(c[16:])
}

// kernel6x16 is the AVX2 micro-kernel (mr = 6, nr = 16).
func kernel6x16(kc int, a, b, c []float32, ldc int, alpha uint32) {
	var c00, c01, c10, c11, c20, c21 archsimd.Float32x8
	var c30, c31, c40, c41, c50, c51 archsimd.Float32x8
	a = a[:kc*6]
	b = b[:kc*16]
	for k := 0; k < kc; k++ {
		bv := b[k*16 : k*16+16 : k*16+16]
		av := a[k*6 : k*6+6 : k*6+6]
		b0 := archsimd.LoadFloat32x8Slice(bv[:8])
		b1 := archsimd.LoadFloat32x8Slice(bv[8:])
		x := archsimd.BroadcastFloat32x8(av[0])
		c00 = x.MulAdd(b0, c00)
		c01 = x.MulAdd(b1, c01)
		x = archsimd.BroadcastFloat32x8(av[1])
		c10 = x.MulAdd(b0, c10)
		c11 = x.MulAdd(b1, c11)
		x = archsimd.BroadcastFloat32x8(av[2])
		c20 = x.MulAdd(b0, c20)
		c21 = x.MulAdd(b1, c21)
		x = archsimd.BroadcastFloat32x8(av[3])
		c30 = x.MulAdd(b0, c30)
		c31 = x.MulAdd(b1, c31)
		x = archsimd.BroadcastFloat32x8(av[4])
		c40 = x.MulAdd(b0, c40)
		c41 = x.MulAdd(b1, c41)
		x = archsimd.BroadcastFloat32x8(av[5])
		c50 = x.MulAdd(b0, c50)
		c51 = x.MulAdd(b1, c51)
	}
	al := archsimd.BroadcastFloat32x8(math.Float32frombits(alpha))
	store8x2(c[0*ldc:], c00, c01, al)
	store8x2(c[1*ldc:], c10, c11, al)
	store8x2(c[2*ldc:], c20, c21, al)
	store8x2(c[3*ldc:], c30, c31, al)
	store8x2(c[4*ldc:], c40, c41, al)
	store8x2(c[5*ldc:], c50, c51, al)
}

func store8x2(c []float32, x0, x1, alpha archsimd.Float32x8) {
	c = c[:16]
	x0.MulAdd(alpha, archsimd.LoadFloat32x8Slice(c[:8])).StoreSlice(c[:8])
	x1.MulAdd(alpha, archsimd.LoadFloat32x8Slice(c[8:])).StoreSlice(c[8:])
}

// dot returns Σ a[i]·b[i] (see dotGeneric for the association).
func dot(a, b []float32) float32 {
	if !hasAVX2 || len(a) < 16 {
		return dotGeneric(a, b)
	}
	b = b[:len(a)]
	var s archsimd.Float32x8
	i := 0
	for ; i+8 <= len(a); i += 8 {
		s = archsimd.LoadFloat32x8Slice(a[i:i+8]).MulAdd(archsimd.LoadFloat32x8Slice(b[i:i+8]), s)
	}
	var l [8]float32
	s.Store(&l)
	for j := 0; i < len(a); i, j = i+1, j+1 {
		l[j] += a[i] * b[i]
	}
	return ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
}

// axpy computes y[i] += alpha·x[i]. Every element gets the same fused
// multiply-add, whatever its position (the tail goes through a partial
// vector), so results do not depend on how a vector is split.
func axpy(y, x []float32, alpha float32) {
	if !hasAVX2 {
		axpyGeneric(y, x, alpha)
		return
	}
	x = x[:len(y)]
	al := archsimd.BroadcastFloat32x8(alpha)
	i := 0
	for ; i+8 <= len(y); i += 8 {
		al.MulAdd(archsimd.LoadFloat32x8Slice(x[i:i+8]), archsimd.LoadFloat32x8Slice(y[i:i+8])).StoreSlice(y[i : i+8])
	}
	if i < len(y) {
		al.MulAdd(archsimd.LoadFloat32x8SlicePart(x[i:]), archsimd.LoadFloat32x8SlicePart(y[i:])).StoreSlicePart(y[i:])
	}
}

// expConsts holds the broadcast constants of exp8.
type expConsts struct {
	lo, hi, log2e, c1, c2, p0, p1, p2, p3, p4, p5, one archsimd.Float32x8
	bias                                               archsimd.Int32x8
}

func newExpConsts() expConsts {
	return expConsts{
		lo: archsimd.BroadcastFloat32x8(expLo), hi: archsimd.BroadcastFloat32x8(expHi),
		log2e: archsimd.BroadcastFloat32x8(expLog2e),
		c1:    archsimd.BroadcastFloat32x8(-expC1), c2: archsimd.BroadcastFloat32x8(-expC2),
		p0: archsimd.BroadcastFloat32x8(expP0), p1: archsimd.BroadcastFloat32x8(expP1),
		p2: archsimd.BroadcastFloat32x8(expP2), p3: archsimd.BroadcastFloat32x8(expP3),
		p4: archsimd.BroadcastFloat32x8(expP4), p5: archsimd.BroadcastFloat32x8(expP5),
		one: archsimd.BroadcastFloat32x8(1), bias: archsimd.BroadcastInt32x8(127),
	}
}

// exp8 returns e^v lane by lane for v ≤ expHi (0 below expLo); lanes above
// expHi or NaN are fixed by the caller.
func (k *expConsts) exp8(v archsimd.Float32x8) archsimd.Float32x8 {
	c := v.Max(k.lo).Min(k.hi)
	n := c.Mul(k.log2e).RoundToEven()
	r := n.MulAdd(k.c1, c)
	r = n.MulAdd(k.c2, r)
	y := k.p0.MulAdd(r, k.p1)
	y = y.MulAdd(r, k.p2)
	y = y.MulAdd(r, k.p3)
	y = y.MulAdd(r, k.p4)
	y = y.MulAdd(r, k.p5)
	y = y.Mul(r).MulAdd(r, r.Add(k.one))
	scale := n.ConvertToInt32().Add(k.bias).ShiftAllLeft(23).AsFloat32x8()
	// Lanes below expLo become 0.
	return y.Mul(scale).Masked(v.GreaterEqual(k.lo))
}

// exps replaces every x[i] by e^x[i] (see exp32). Every element goes
// through the same vector arithmetic whatever its position (the tail is a
// partial vector), so results do not depend on how a vector is split.
func exps(x []float32) {
	if !hasAVX2 {
		expsGeneric(x)
		return
	}
	k := newExpConsts()
	for i := 0; i < len(x); i += 8 {
		part := x[i:min(i+8, len(x))]
		v := archsimd.LoadFloat32x8SlicePart(part)
		if v.Greater(k.hi).Or(v.IsNaN()).ToBits() == 0 {
			k.exp8(v).StoreSlicePart(part)
			continue
		}
		var in [8]float32
		copy(in[:], part)
		k.exp8(v).StoreSlicePart(part)
		for j, o := range in[:len(part)] {
			if o != o || o > expHi {
				part[j] = exp32(o) // NaN or +Inf
			}
		}
	}
}

// interleave4 writes d[k·w+j] = xj[k] for j < 4 and k < len(x0), four k at
// a time with a 4×4 transpose in registers.
func interleave4(d []float32, w int, x0, x1, x2, x3 []float32) {
	n := len(x0)
	x1, x2, x3 = x1[:n], x2[:n], x3[:n]
	k := 0
	if hasAVX2 {
		for ; k+4 <= n; k += 4 {
			r0 := archsimd.LoadFloat32x4Slice(x0[k : k+4])
			r1 := archsimd.LoadFloat32x4Slice(x1[k : k+4])
			r2 := archsimd.LoadFloat32x4Slice(x2[k : k+4])
			r3 := archsimd.LoadFloat32x4Slice(x3[k : k+4])
			t0 := r0.SelectFromPair(0, 1, 4, 5, r1)
			t1 := r2.SelectFromPair(0, 1, 4, 5, r3)
			t2 := r0.SelectFromPair(2, 3, 6, 7, r1)
			t3 := r2.SelectFromPair(2, 3, 6, 7, r3)
			t0.SelectFromPair(0, 2, 4, 6, t1).StoreSlice(d[k*w : k*w+4])
			t0.SelectFromPair(1, 3, 5, 7, t1).StoreSlice(d[(k+1)*w : (k+1)*w+4])
			t2.SelectFromPair(0, 2, 4, 6, t3).StoreSlice(d[(k+2)*w : (k+2)*w+4])
			t2.SelectFromPair(1, 3, 5, 7, t3).StoreSlice(d[(k+3)*w : (k+3)*w+4])
		}
	}
	for ; k < n; k++ {
		e := d[k*w : k*w+4 : k*w+4]
		e[0], e[1], e[2], e[3] = x0[k], x1[k], x2[k], x3[k]
	}
}

var hasAVX512 = archsimd.X86.AVX512()

// Lane orders interleaving the decoded high and low nibbles of 16 bytes.
var (
	interleaveLo = [16]uint32{0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23}
	interleaveHi = [16]uint32{8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31}
)

// decode4 is decode4Generic with AVX-512: 16 bytes give 32 values by two
// table permutes and two interleaving permutes.
func decode4(out []float32, in []byte, t *[16]float32) {
	if !hasAVX512 {
		decode4Generic(out, in, t)
		return
	}
	tab := archsimd.LoadFloat32x16(t)
	il, ih := archsimd.LoadUint32x16(&interleaveLo), archsimd.LoadUint32x16(&interleaveHi)
	m15 := archsimd.BroadcastUint32x16(15)
	k := 0
	for ; k+32 <= len(out); k += 32 {
		b := archsimd.LoadUint8x16Slice(in[k/2 : k/2+16]).ExtendToUint32()
		e := tab.Permute(b.ShiftAllRight(4))
		o := tab.Permute(b.And(m15))
		e.ConcatPermute(o, il).StoreSlice(out[k : k+16])
		e.ConcatPermute(o, ih).StoreSlice(out[k+16 : k+32])
	}
	decode4Generic(out[k:], in[k/2:], t)
}

// decode4BF16 is decode4BF16Generic with AVX-512: each byte's two values
// are formed in one 32-bit lane (even element in the low half).
func decode4BF16(out []uint16, in []byte, t *[16]uint16) {
	if !hasAVX512 {
		decode4BF16Generic(out, in, t)
		return
	}
	var t32 [16]uint32
	for i, h := range t {
		t32[i] = uint32(h)
	}
	tab := archsimd.LoadUint32x16(&t32)
	m15 := archsimd.BroadcastUint32x16(15)
	k := 0
	for ; k+32 <= len(out); k += 32 {
		b := archsimd.LoadUint8x16Slice(in[k/2 : k/2+16]).ExtendToUint32()
		e := tab.Permute(b.ShiftAllRight(4))
		o := tab.Permute(b.And(m15))
		e.Or(o.ShiftAllLeft(16)).AsUint16x32().StoreSlice(out[k : k+32])
	}
	decode4BF16Generic(out[k:], in[k/2:], t)
}
