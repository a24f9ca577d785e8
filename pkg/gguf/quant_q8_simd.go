//go:build goexperiment.simd && amd64

package gguf

import (
	"encoding/binary"
	"math"
	"simd/archsimd"

	"github.com/lorakit/lorakit/pkg/dtype"
)

var haveAVX512 = archsimd.X86.AVX512()

// quantizeQ8_0 quantizes whole Q8_0 blocks with AVX-512 when the CPU has it, else with
// quantizeQ8_0Generic; both give identical bytes.
func quantizeQ8_0(dst []byte, src []float32) int {
	if haveAVX512 {
		return quantizeQ8_0AVX512(dst, src)
	}
	return quantizeQ8_0Generic(dst, src)
}

// quantizeQ8_0AVX512 is quantizeQ8_0Generic on two 16-lane vectors per block. The
// product x·id is the same float32 multiply; roundf is rebuilt exactly as
// trunc(|p|) + (|p| − trunc(|p|) ≥ 0.5) with the sign of p put back, then narrowed to
// int8.
func quantizeQ8_0AVX512(dst []byte, src []float32) int {
	nb := len(src) / QK8_0
	absm := archsimd.BroadcastUint32x16(absMask)
	signm := archsimd.BroadcastUint32x16(^uint32(absMask))
	half := archsimd.BroadcastFloat32x16(0.5)
	one := archsimd.BroadcastFloat32x16(1)
	for i := 0; i < nb; i++ {
		x := src[i*QK8_0 : i*QK8_0+QK8_0]
		y := dst[i*BlockBytesQ8_0 : i*BlockBytesQ8_0+BlockBytesQ8_0]
		a := archsimd.LoadFloat32x16Slice(x[:16])
		b := archsimd.LoadFloat32x16Slice(x[16:])
		m16 := a.AsUint32x16().And(absm).Max(b.AsUint32x16().And(absm))
		m8 := m16.GetLo().Max(m16.GetHi())
		m4 := m8.GetLo().Max(m8.GetHi())
		m := max(m4.GetElem(0), m4.GetElem(1), m4.GetElem(2), m4.GetElem(3))
		if m >= infBits {
			return i
		}
		d, id := q8Scale(math.Float32frombits(m))
		binary.LittleEndian.PutUint16(y, dtype.F32ToF16(d))
		if id > math.MaxFloat32 {
			clear(y[2:])
			continue
		}
		vid := archsimd.BroadcastFloat32x16(id)
		q8RoundAVX512(a.Mul(vid), absm, signm, half, one).AsUint8x16().StoreSlice(y[2:18])
		q8RoundAVX512(b.Mul(vid), absm, signm, half, one).AsUint8x16().StoreSlice(y[18:34])
	}
	return -1
}

func q8RoundAVX512(p archsimd.Float32x16, absm, signm archsimd.Uint32x16, half, one archsimd.Float32x16) archsimd.Int8x16 {
	pu := p.AsUint32x16()
	ap := pu.And(absm).AsFloat32x16()
	t := ap.TruncScaled(0)
	r := t.Add(one.Masked(ap.Sub(t).GreaterEqual(half)))
	r = r.AsUint32x16().Or(pu.And(signm)).AsFloat32x16()
	return r.ConvertToInt32().TruncateToInt8()
}
