//go:build goexperiment.simd && amd64

package nf4

import (
	"math"
	"simd/archsimd"
)

// simdKernels reports whether the quantization kernels use SIMD code.
const simdKernels = true

// The AVX-512 kernels reproduce the generic ones bit for bit: absmax is the
// same unsigned maximum of |x|'s bits, the scale the same IEEE float32
// reciprocal and multiply, and the code is found by a branchless binary
// search over the same float32 thresholds (the count of thresholds strictly
// below s), which equals the generic lookup for every non-NaN s. Blocks
// holding Inf or NaN go to the reference path, as in the generic code.
var hasAVX512 = archsimd.X86.AVX512()

var (
	// nf4ThrVec holds the 15 NF4 thresholds, padded with +Inf.
	nf4ThrVec = padInf(nf4Thresholds[:])
	// fp4ThrVec holds the 7 FP4 magnitude thresholds, padded with +Inf;
	// fp4MagVec maps the count of thresholds below |s| to the 3-bit code.
	fp4ThrVec = padInf(fp4Thresholds[:])
	fp4MagVec = func() (v [16]uint32) {
		for i, c := range fp4Magnitude {
			v[i] = uint32(c)
		}
		return v
	}()
	// evenLanes picks the even 32-bit lanes of a pair of vectors.
	evenLanes = [16]uint32{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}
)

func padInf(t []float32) (v [16]float32) {
	for i := range v {
		v[i] = float32(math.Inf(1))
	}
	copy(v[:], t)
	return v
}

// quantizeFull quantizes len(absmax) full blocks of bs elements.
func quantizeFull(dst []byte, absmax []float32, src []float32, bs int, typ Type) {
	if !hasAVX512 {
		quantizeFullGeneric(dst, absmax, src, bs, typ)
		return
	}
	if typ == NF4 {
		quantizeFullNF4AVX512(dst, absmax, src, bs)
	} else {
		quantizeFullFP4AVX512(dst, absmax, src, bs)
	}
}

// blockScale returns |x|'s largest bits over one block and, for a finite
// block, the reciprocal scale f32(1/max(absmax, 1e-38)); ok is false when the
// block holds Inf or NaN.
func blockScale(x []float32) (am float32, inv float32, ok bool) {
	mask := archsimd.BroadcastUint32x16(0x7fffffff)
	m := archsimd.LoadFloat32x16Slice(x[:16]).AsUint32x16().And(mask)
	for i := 16; i+16 <= len(x); i += 16 {
		m = m.Max(archsimd.LoadFloat32x16Slice(x[i : i+16]).AsUint32x16().And(mask))
	}
	m8 := m.GetLo().Max(m.GetHi())
	m4 := m8.GetLo().Max(m8.GetHi())
	r := max(m4.GetElem(0), m4.GetElem(1), m4.GetElem(2), m4.GetElem(3))
	if r >= 0x7f800000 {
		return 0, 0, false
	}
	am = math.Float32frombits(r)
	div := am
	if r < minDivisorBits {
		div = minDivisor
	}
	return am, 1 / div, true
}

// packPairs turns the codes of 32 consecutive elements (a: elements 0..15,
// b: 16..31) into 16 bytes, even element in the high nibble.
func packPairs(dst []byte, a, b archsimd.Uint32x16, idx archsimd.Uint32x16) {
	// As 64-bit lanes L = c_even | c_odd<<32, (L<<4 | L>>32) has the byte
	// c_even<<4 | c_odd in its low 32 bits.
	la, lb := a.AsUint64x8(), b.AsUint64x8()
	pa := la.ShiftAllLeft(4).Or(la.ShiftAllRight(32)).AsUint32x16()
	pb := lb.ShiftAllLeft(4).Or(lb.ShiftAllRight(32)).AsUint32x16()
	pa.ConcatPermute(pb, idx).TruncateToUint8().StoreSlice(dst[:16])
}

func quantizeFullNF4AVX512(dst []byte, absmax []float32, src []float32, bs int) {
	thr := archsimd.LoadFloat32x16(&nf4ThrVec)
	idx := archsimd.LoadUint32x16(&evenLanes)
	s8 := archsimd.BroadcastUint32x16(8)
	s4 := archsimd.BroadcastUint32x16(4)
	s2 := archsimd.BroadcastUint32x16(2)
	s1 := archsimd.BroadcastUint32x16(1)
	t7 := thr.Permute(archsimd.BroadcastUint32x16(7))
	i3 := archsimd.BroadcastUint32x16(3)
	for b := range absmax {
		x := src[b*bs : (b+1)*bs]
		d := dst[b*bs/2 : (b+1)*bs/2]
		am, inv, ok := blockScale(x)
		if !ok {
			absmax[b] = quantizeBlockRef(d, x, false, NF4)
			continue
		}
		absmax[b] = am
		vinv := archsimd.BroadcastFloat32x16(inv)
		for k := 0; k+16 <= len(d); k += 16 {
			var c [2]archsimd.Uint32x16
			for h := range 2 {
				s := archsimd.LoadFloat32x16Slice(x[2*k+16*h : 2*k+16*h+16]).Mul(vinv)
				v := s8.Masked(s.Greater(t7))
				v = v.Add(s4.Masked(s.Greater(thr.Permute(v.Add(i3)))))
				v = v.Add(s2.Masked(s.Greater(thr.Permute(v.Add(s1)))))
				c[h] = v.Add(s1.Masked(s.Greater(thr.Permute(v))))
			}
			packPairs(d[k:k+16], c[0], c[1], idx)
		}
	}
}

func quantizeFullFP4AVX512(dst []byte, absmax []float32, src []float32, bs int) {
	thr := archsimd.LoadFloat32x16(&fp4ThrVec)
	mag := archsimd.LoadUint32x16(&fp4MagVec)
	idx := archsimd.LoadUint32x16(&evenLanes)
	absMask := archsimd.BroadcastUint32x16(0x7fffffff)
	zero := archsimd.BroadcastFloat32x16(0)
	s8 := archsimd.BroadcastUint32x16(8)
	s4 := archsimd.BroadcastUint32x16(4)
	s2 := archsimd.BroadcastUint32x16(2)
	s1 := archsimd.BroadcastUint32x16(1)
	t3 := thr.Permute(archsimd.BroadcastUint32x16(3))
	for b := range absmax {
		x := src[b*bs : (b+1)*bs]
		d := dst[b*bs/2 : (b+1)*bs/2]
		am, inv, ok := blockScale(x)
		if !ok {
			absmax[b] = quantizeBlockRef(d, x, false, FP4)
			continue
		}
		absmax[b] = am
		vinv := archsimd.BroadcastFloat32x16(inv)
		for k := 0; k+16 <= len(d); k += 16 {
			var c [2]archsimd.Uint32x16
			for h := range 2 {
				s := archsimd.LoadFloat32x16Slice(x[2*k+16*h : 2*k+16*h+16]).Mul(vinv)
				m := s.AsUint32x16().And(absMask).AsFloat32x16()
				v := s4.Masked(m.Greater(t3))
				v = v.Add(s2.Masked(m.Greater(thr.Permute(v.Add(s1)))))
				v = v.Add(s1.Masked(m.Greater(thr.Permute(v))))
				c[h] = mag.Permute(v).Or(s8.Masked(s.Less(zero)))
			}
			packPairs(d[k:k+16], c[0], c[1], idx)
		}
	}
}
