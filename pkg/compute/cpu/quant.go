package cpu

import (
	"fmt"

	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/dtype"
)

// checkQuant4 validates the buffers of q and returns its block scales'
// inputs.
func checkQuant4(q *compute.Quant4) (packed []byte, code []float32, absF []float32, absU []byte, nabs, ncode []float32) {
	if q.N < 0 || q.Blocksize <= 0 || q.Blocksize%2 != 0 {
		panic(fmt.Sprintf("cpu: dequantize %d values in blocks of %d", q.N, q.Blocksize))
	}
	nb := q.Blocks()
	packed, code = u8(q.Packed), f32(q.Code)
	need("dequantize packed", len(packed), (q.N+1)/2)
	need("dequantize code", len(code), 16)
	a := get(q.Absmax)
	switch a.dt {
	case compute.F32:
		absF = a.f
		need("dequantize absmax", len(absF), nb)
		return
	case compute.U8:
	default:
		panic(fmt.Sprintf("cpu: dequantize absmax has dtype %v", a.dt))
	}
	absU = a.u
	need("dequantize absmax", len(absU), nb)
	if q.NestedBlocksize <= 0 {
		panic(fmt.Sprintf("cpu: dequantize with nested block size %d", q.NestedBlocksize))
	}
	nabs, ncode = f32(q.NestedAbsmax), f32(q.NestedCode)
	need("dequantize nested absmax", len(nabs), ceilDiv(nb, q.NestedBlocksize))
	need("dequantize nested code", len(ncode), 256)
	return
}

// Dequantize4 implements compute.Backend. Blocks are independent; each
// builds its 16 decoded values once and then looks them up.
func (be *Backend) Dequantize4(dst compute.Buffer, q compute.Quant4) {
	packed, code, absF, absU, nabs, ncode := checkQuant4(&q)
	d := get(dst)
	need("dequantize destination", d.Len(), q.N)
	if d.dt != compute.F32 && d.dt != compute.BF16 {
		panic(fmt.Sprintf("cpu: dequantize into %v", d.dt))
	}
	bs, n := q.Blocksize, q.N
	be.parallel(q.Blocks(), max(1, elemGrain/bs), func(b0, b1 int) {
		var t [16]float32
		var th [16]uint16
		for b := b0; b < b1; b++ {
			var s float32
			if absF != nil {
				s = absF[b]
			} else {
				// Two separately rounded f32 operations (spec 4): the
				// conversion keeps the compiler from fusing them.
				s = float32(ncode[absU[b]]*nabs[b/q.NestedBlocksize]) + q.Offset
			}
			for i := range t {
				t[i] = code[i] * s
			}
			if q.RoundF16 {
				for i, v := range t {
					t[i] = dtype.F16ToF32(dtype.F32ToF16(v))
				}
			}
			lo, hi := b*bs, min((b+1)*bs, n)
			in := packed[lo/2 : (hi+1)/2]
			if d.dt == compute.F32 {
				decode4Generic(d.f[lo:hi], in, &t)
				continue
			}
			for i, v := range t {
				th[i] = toBF16(v)
			}
			decode4BF16Generic(d.h[lo:hi], in, &th)
		}
	})
}

// decode4Generic writes out[k] = t[nibble k of in], the even element in the
// high nibble; len(in) = ceil(len(out)/2).
func decode4Generic(out []float32, in []byte, t *[16]float32) {
	k := 0
	for ; k+1 < len(out); k += 2 {
		p := in[k/2]
		out[k] = t[p>>4]
		out[k+1] = t[p&15]
	}
	if k < len(out) {
		out[k] = t[in[k/2]>>4]
	}
}

// decode4BF16Generic is decode4Generic for bfloat16 values.
func decode4BF16Generic(out []uint16, in []byte, t *[16]uint16) {
	k := 0
	for ; k+1 < len(out); k += 2 {
		p := in[k/2]
		out[k] = t[p>>4]
		out[k+1] = t[p&15]
	}
	if k < len(out) {
		out[k] = t[in[k/2]>>4]
	}
}
