package cpu

import (
	"fmt"

	"github.com/lorakit/lorakit/internal/kernels/nibble"
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

// Dequantize4 implements compute.Backend. Blocks are independent: their
// scales are computed here, the table lookups run in the kernels of
// internal/kernels/nibble.
func (be *Backend) Dequantize4(dst compute.Buffer, q compute.Quant4) {
	packed, code, absF, absU, nabs, ncode := checkQuant4(&q)
	d := get(dst)
	need("dequantize destination", d.Len(), q.N)
	if d.dt != compute.F32 && d.dt != compute.BF16 {
		panic(fmt.Sprintf("cpu: dequantize into %v", d.dt))
	}
	bs, n := q.Blocksize, q.N
	tab := (*[16]float32)(code)
	be.parallel(q.Blocks(), max(1, elemGrain/bs), func(b0, b1 int) {
		scales := make([]float32, b1-b0)
		for b := b0; b < b1; b++ {
			if absF != nil {
				scales[b-b0] = absF[b]
				continue
			}
			// Two separately rounded f32 operations (spec 4): the
			// conversion keeps the compiler from fusing them.
			scales[b-b0] = float32(ncode[absU[b]]*nabs[b/q.NestedBlocksize]) + q.Offset
		}
		lo, hi := b0*bs, min(b1*bs, n)
		in := packed[lo/2 : (hi+1)/2]
		if !q.RoundF16 {
			if d.dt == compute.F32 {
				nibble.Decode(d.f[lo:hi], in, scales, tab, bs)
			} else {
				nibble.DecodeBF16(d.h[lo:hi], in, scales, tab, bs)
			}
			return
		}
		// Values rounded through binary16 first: the tables by hand.
		var t [16]float32
		var th [16]uint16
		for b := b0; b < b1; b++ {
			for i := range t {
				t[i] = dtype.F16ToF32(dtype.F32ToF16(code[i] * scales[b-b0]))
			}
			l, h := b*bs, min((b+1)*bs, n)
			blk := packed[l/2 : (h+1)/2]
			if d.dt == compute.F32 {
				nibble.DecodeTable(d.f[l:h], blk, &t)
				continue
			}
			for i, v := range t {
				th[i] = toBF16(v)
			}
			nibble.DecodeTable(d.h[l:h], blk, &th)
		}
	})
}
