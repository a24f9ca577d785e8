package dtype

import (
	"encoding/binary"
	"testing"

	"github.com/lorakit/lorakit/internal/kernels/half"
	"github.com/lorakit/lorakit/internal/kernels/ktest"
)

type kernelPair struct {
	name   string
	decode func([]float32, []uint16)
	encode func([]uint16, []float32)
	dec    func(uint16) float32
	enc    func(float32) uint16
}

var kernelPairs = []kernelPair{
	{"BF16", half.DecodeBF16, half.EncodeBF16, BF16ToF32, F32ToBF16},
	{"F16", half.DecodeF16, half.EncodeF16, F16ToF32, F32ToF16},
}

// TestLEAdapters checks the byte-level paths (the in-place view and the
// portable staging used on big-endian hosts) at unaligned offsets and across
// the staging buffer's size.
func TestLEAdapters(t *testing.T) {
	f := ktest.Floats(ktest.Bits(1500, 6))
	type adapter struct {
		name   string
		decode func([]float32, []byte, func([]float32, []uint16))
		encode func([]byte, []float32, func([]uint16, []float32))
	}
	for _, a := range []adapter{{"native", decodeLE, encodeLE}, {"portable", decodeLEPortable, encodeLEPortable}} {
		for _, k := range kernelPairs {
			for _, n := range []int{0, 1, 17, 511, 512, 513, 1500} {
				for off := range 3 {
					raw := make([]byte, 2*n+off+1)
					raw[off+2*n] = 0xAA
					a.encode(raw[off:off+2*n], f[:n], k.encode)
					dst := make([]float32, n)
					a.decode(dst, raw[off:off+2*n], k.decode)
					for i := range n {
						h := binary.LittleEndian.Uint16(raw[off+2*i:])
						if h != k.enc(f[i]) || !ktest.SameBits(dst[i], k.dec(h)) {
							t.Fatalf("%s %s n=%d off=%d i=%d: %#04x, %g", a.name, k.name, n, off, i, h, dst[i])
						}
					}
					if raw[off+2*n] != 0xAA {
						t.Fatalf("%s %s n=%d off=%d wrote out of bounds", a.name, k.name, n, off)
					}
				}
			}
		}
	}
}
