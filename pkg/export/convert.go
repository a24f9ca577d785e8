package export

import (
	"sync"

	"github.com/lorakit/lorakit/internal/kernels/vec"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/gguf"
)

// chunkBytes is the target size of one converted chunk of output: large enough to keep
// hand-offs rare and writes large; the float32 scratch works in pieces of subElems.
const chunkBytes = 1 << 20

// rowFn fills dst with the encoded output rows [r0, r1) of a tensor; scratch is a
// per-worker float32 buffer it may grow.
type rowFn func(dst []byte, r0, r1 int64, scratch *[]float32) error

// encodeRows returns a rowFn that decodes rows of src (HF row-major, cols values of type
// dt per row), maps each value x to (x + add)·scale (in float32), and encodes them as
// out. st collects F16 overflows.
func encodeRows(src []byte, dt dtype.DType, cols int64, add, scale float32, out gguf.Type, st *tensorStats) rowFn {
	es := int64(dt.Size())
	bs, ts := out.BlockSize(), out.TypeSize()
	// Convert in pieces of subElems values so that the float32 scratch stays in the L1
	// cache between decoding and encoding; pieces hold whole blocks (rows do too).
	sub := max(bs, subElems/bs*bs)
	encode := func(dst, in []byte, n int64, f []float32) error {
		for e := int64(0); e < n; e += sub {
			k := min(sub, n-e)
			fk := f[:k]
			if err := dtype.ToF32(fk, in[e*es:(e+k)*es], dt); err != nil {
				return err
			}
			if add != 0 {
				for i := range fk {
					fk[i] += add
				}
			}
			if scale != 1 {
				for i := range fk {
					fk[i] *= scale
				}
			}
			d := dst[e/bs*ts : (e+k)/bs*ts]
			if err := gguf.Quantize(d, fk, out); err != nil {
				return err
			}
			if out == gguf.TypeF16 && st != nil && vec.AnyF16InfLE(d) {
				if c := gguf.F16Overflows(fk); c > 0 {
					st.addOverflow(c)
				}
			}
		}
		return nil
	}
	return func(dst []byte, r0, r1 int64, scratch *[]float32) error {
		if int64(cap(*scratch)) < sub {
			*scratch = make([]float32, sub)
		}
		return encode(dst, src[r0*cols*es:r1*cols*es], (r1-r0)*cols, (*scratch)[:sub])
	}
}

// subElems is the number of values converted at a time by encodeRows (32 KiB of float32).
const subElems = 8192

// copyRows returns a rowFn that copies rows of rowBytes bytes of src.
func copyRows(src []byte, rowBytes int64) rowFn {
	return func(dst []byte, r0, r1 int64, _ *[]float32) error {
		copy(dst, src[r0*rowBytes:r1*rowBytes])
		return nil
	}
}

// tensorStats accumulates per-tensor findings across workers.
type tensorStats struct {
	mu        sync.Mutex
	overflows int
}

func (s *tensorStats) addOverflow(n int) {
	s.mu.Lock()
	s.overflows += n
	s.mu.Unlock()
}
