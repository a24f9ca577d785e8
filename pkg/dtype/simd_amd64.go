//go:build goexperiment.simd && amd64

package dtype

import "simd/archsimd"

// simdKernels reports whether the bulk conversions use SIMD code.
const simdKernels = true

// The dispatchers pick 16-lane AVX-512 kernels, else 8-lane AVX2 ones, else
// the generic code. Each kernel converts whole vectors with integer and float
// ops that reproduce the generic code bit for bit, and leaves the tail to it.
var (
	hasAVX512 = archsimd.X86.AVX512()
	hasAVX2   = archsimd.X86.AVX2()
)

func decodeBF16(dst []float32, src []uint16) {
	switch {
	case hasAVX512:
		decodeBF16AVX512(dst, src)
	case hasAVX2:
		decodeBF16AVX2(dst, src)
	default:
		decodeBF16Generic(dst, src)
	}
}

func encodeBF16(dst []uint16, src []float32) {
	switch {
	case hasAVX512:
		encodeBF16AVX512(dst, src)
	case hasAVX2:
		encodeBF16AVX2(dst, src)
	default:
		encodeBF16Generic(dst, src)
	}
}

func decodeF16(dst []float32, src []uint16) {
	switch {
	case hasAVX512:
		decodeF16AVX512(dst, src)
	case hasAVX2:
		decodeF16AVX2(dst, src)
	default:
		decodeF16Generic(dst, src)
	}
}

func encodeF16(dst []uint16, src []float32) {
	switch {
	case hasAVX512:
		encodeF16AVX512(dst, src)
	case hasAVX2:
		encodeF16AVX2(dst, src)
	default:
		encodeF16Generic(dst, src)
	}
}

// bf16 → f32: zero-extend and shift into the upper half.

func decodeBF16AVX512(dst []float32, src []uint16) {
	src = src[:len(dst)]
	n := len(dst) &^ 15
	for i := 0; i < n; i += 16 {
		archsimd.LoadUint16x16Slice(src[i:]).ExtendToUint32().ShiftAllLeft(16).AsFloat32x16().StoreSlice(dst[i:])
	}
	decodeBF16Generic(dst[n:], src[n:])
}

func decodeBF16AVX2(dst []float32, src []uint16) {
	src = src[:len(dst)]
	n := len(dst) &^ 7
	for i := 0; i < n; i += 8 {
		archsimd.LoadUint16x8Slice(src[i:]).ExtendToUint32().ShiftAllLeft(16).AsFloat32x8().StoreSlice(dst[i:])
	}
	decodeBF16Generic(dst[n:], src[n:])
}

// f32 → bf16: add 0x7fff plus the kept LSB (ties to even) and take the upper
// half; NaN lanes take the upper half with the quiet bit instead.

func encodeBF16AVX512(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	n := len(src) &^ 15
	var (
		one   = archsimd.BroadcastUint32x16(1)
		round = archsimd.BroadcastUint32x16(0x7fff)
		abs   = archsimd.BroadcastUint32x16(0x7fffffff)
		inf   = archsimd.BroadcastUint32x16(0x7f800000)
		quiet = archsimd.BroadcastUint32x16(0x0040)
	)
	for i := 0; i < n; i += 16 {
		w := archsimd.LoadFloat32x16Slice(src[i:]).AsUint32x16()
		hi := w.ShiftAllRight(16)
		r := w.Add(hi.And(one)).Add(round).ShiftAllRight(16)
		r = hi.Or(quiet).Merge(r, w.And(abs).Greater(inf))
		r.TruncateToUint16().StoreSlice(dst[i:])
	}
	encodeBF16Generic(dst[n:], src[n:])
}

func encodeBF16AVX2(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	n := len(src) &^ 7
	var ( // signed compares are exact here: both sides are below 2³¹
		one   = archsimd.BroadcastInt32x8(1)
		round = archsimd.BroadcastInt32x8(0x7fff)
		abs   = archsimd.BroadcastInt32x8(0x7fffffff)
		inf   = archsimd.BroadcastInt32x8(0x7f800000)
		quiet = archsimd.BroadcastInt32x8(0x0040)
	)
	for i := 0; i < n; i += 8 {
		w := archsimd.LoadFloat32x8Slice(src[i:]).AsInt32x8()
		hi := w.AsUint32x8().ShiftAllRight(16).AsInt32x8()
		r := w.Add(hi.And(one)).Add(round).AsUint32x8().ShiftAllRight(16).AsInt32x8()
		r = hi.Or(quiet).Merge(r, w.And(abs).Greater(inf))
		r.GetLo().SaturateToUint16Concat(r.GetHi()).StoreSlice(dst[i:]) // lanes ≤ 0xffff: no saturation
	}
	encodeBF16Generic(dst[n:], src[n:])
}

// f16 → f32: normal halves rebias the exponent; Inf/NaN rebias twice (quiet
// bit on NaN); zero and subnormals are em·2⁻²⁴, exact in float32.

func decodeF16AVX512(dst []float32, src []uint16) {
	src = src[:len(dst)]
	n := len(dst) &^ 15
	var (
		signM  = archsimd.BroadcastUint32x16(0x8000)
		emM    = archsimd.BroadcastUint32x16(0x7fff)
		rebias = archsimd.BroadcastUint32x16(112 << 23)
		infH   = archsimd.BroadcastUint32x16(0x7c00)
		minN   = archsimd.BroadcastUint32x16(0x0400)
		quiet  = archsimd.BroadcastUint32x16(0x00400000)
		scale  = archsimd.BroadcastFloat32x16(0x1p-24)
	)
	for i := 0; i < n; i += 16 {
		h := archsimd.LoadUint16x16Slice(src[i:]).ExtendToUint32()
		em := h.And(emM)
		b := em.ShiftAllLeft(13).Add(rebias)
		special := b.Add(rebias).Or(quiet.Masked(em.Greater(infH)))
		b = special.Merge(b, em.GreaterEqual(infH))
		sub := em.AsInt32x16().ConvertToFloat32().Mul(scale).AsUint32x16()
		b = sub.Merge(b, em.Less(minN))
		b.Or(h.And(signM).ShiftAllLeft(16)).AsFloat32x16().StoreSlice(dst[i:])
	}
	decodeF16Generic(dst[n:], src[n:])
}

func decodeF16AVX2(dst []float32, src []uint16) {
	src = src[:len(dst)]
	n := len(dst) &^ 7
	var ( // em ≤ 0x7fff: signed compares are exact
		signM  = archsimd.BroadcastInt32x8(0x8000)
		emM    = archsimd.BroadcastInt32x8(0x7fff)
		rebias = archsimd.BroadcastInt32x8(112 << 23)
		infH   = archsimd.BroadcastInt32x8(0x7c00)
		infHM1 = archsimd.BroadcastInt32x8(0x7bff)
		minN   = archsimd.BroadcastInt32x8(0x0400)
		quiet  = archsimd.BroadcastInt32x8(0x00400000)
		scale  = archsimd.BroadcastFloat32x8(0x1p-24)
	)
	for i := 0; i < n; i += 8 {
		h := archsimd.LoadUint16x8Slice(src[i:]).ExtendToUint32().AsInt32x8()
		em := h.And(emM)
		b := em.ShiftAllLeft(13).Add(rebias)
		special := b.Add(rebias).Or(quiet.Masked(em.Greater(infH)))
		b = special.Merge(b, em.Greater(infHM1))
		sub := em.ConvertToFloat32().Mul(scale).AsInt32x8()
		b = sub.Merge(b, em.Less(minN))
		b.Or(h.And(signM).ShiftAllLeft(16)).AsFloat32x8().StoreSlice(dst[i:])
	}
	decodeF16Generic(dst[n:], src[n:])
}

// f32 → f16, as f16Bits: |f|·2¹¹²·2⁻¹¹⁰ plus a power of two aligned with the
// result's ULP lets the float unit round to nearest even.

func encodeF16AVX512(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	n := len(src) &^ 15
	var (
		abs     = archsimd.BroadcastUint32x16(0x7fffffff)
		toInf   = archsimd.BroadcastFloat32x16(0x1p112)
		toZero  = archsimd.BroadcastFloat32x16(0x1p-110)
		expM    = archsimd.BroadcastUint32x16(0x7f800000)
		minBias = archsimd.BroadcastUint32x16(0x38800000)
		biasAdd = archsimd.BroadcastUint32x16(0x07800000)
		expH    = archsimd.BroadcastUint32x16(0x7c00)
		manH    = archsimd.BroadcastUint32x16(0x0fff)
		payload = archsimd.BroadcastUint32x16(0x03ff)
		qnan    = archsimd.BroadcastUint32x16(0x7e00)
		signM   = archsimd.BroadcastUint32x16(0x8000)
	)
	for i := 0; i < n; i += 16 {
		w := archsimd.LoadFloat32x16Slice(src[i:]).AsUint32x16()
		a := w.And(abs)
		base := a.AsFloat32x16().Mul(toInf).Mul(toZero)
		bias := a.And(expM).Max(minBias).Add(biasAdd)
		bits := bias.AsFloat32x16().Add(base).AsUint32x16()
		r := bits.ShiftAllRight(13).And(expH).Add(bits.And(manH))
		nan := w.ShiftAllRight(13).And(payload).Or(qnan)
		r = nan.Merge(r, a.Greater(expM))
		r = r.Or(w.ShiftAllRight(16).And(signM))
		r.TruncateToUint16().StoreSlice(dst[i:])
	}
	encodeF16Generic(dst[n:], src[n:])
}

func encodeF16AVX2(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	n := len(src) &^ 7
	var (
		abs     = archsimd.BroadcastUint32x8(0x7fffffff)
		toInf   = archsimd.BroadcastFloat32x8(0x1p112)
		toZero  = archsimd.BroadcastFloat32x8(0x1p-110)
		expM    = archsimd.BroadcastUint32x8(0x7f800000)
		minBias = archsimd.BroadcastUint32x8(0x38800000)
		biasAdd = archsimd.BroadcastUint32x8(0x07800000)
		expH    = archsimd.BroadcastUint32x8(0x7c00)
		manH    = archsimd.BroadcastUint32x8(0x0fff)
		payload = archsimd.BroadcastUint32x8(0x03ff)
		qnan    = archsimd.BroadcastUint32x8(0x7e00)
		signM   = archsimd.BroadcastUint32x8(0x8000)
	)
	for i := 0; i < n; i += 8 {
		w := archsimd.LoadFloat32x8Slice(src[i:]).AsUint32x8()
		a := w.And(abs)
		base := a.AsFloat32x8().Mul(toInf).Mul(toZero)
		bias := a.And(expM).Max(minBias).Add(biasAdd)
		bits := bias.AsFloat32x8().Add(base).AsUint32x8()
		r := bits.ShiftAllRight(13).And(expH).Add(bits.And(manH))
		nan := w.ShiftAllRight(13).And(payload).Or(qnan)
		r = nan.Merge(r, a.AsInt32x8().Greater(expM.AsInt32x8())) // a < 2³¹
		r = r.Or(w.ShiftAllRight(16).And(signM))
		r.AsInt32x8().GetLo().SaturateToUint16Concat(r.AsInt32x8().GetHi()).StoreSlice(dst[i:])
	}
	encodeF16Generic(dst[n:], src[n:])
}
