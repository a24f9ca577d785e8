package nf4

import "math"

// Nearest-code search without branches: a float32 is mapped to an unsigned
// key whose order is the float order, the key's top 11 bits select one of
// 2048 buckets, and each bucket holds at most one threshold (checked when the
// tables are built). A lookup is then one table load and one comparison:
//
//	e := lut[key>>21]; code = e.le, or e.gt when key > e.thr
//
// This is exactly "number of thresholds strictly below s" (ties go to the
// lower code), i.e. torch.bucketize(s, thresholds, right=False), for every
// non-NaN s. NaN never reaches these tables (see quantizeBlock).

const lutShift = 21

type lutEntry struct {
	thr    uint32 // key of the single threshold inside the bucket, or MaxUint32
	le, gt uint8  // code when key <= thr, when key > thr
}

// orderedKey maps float32 bits to a uint32 with the same order as the floats
// (-0 sorts just below +0).
func orderedKey(bits uint32) uint32 {
	return bits ^ (uint32(int32(bits)>>31) | 0x80000000)
}

var (
	// nf4LUT is indexed by orderedKey(bits(s)) >> lutShift.
	nf4LUT = [1 << (32 - lutShift)]lutEntry(buildLUT(nf4Thresholds[:], orderedKey,
		func(i int) uint8 { return uint8(i) }, 1<<(32-lutShift)))
	// fp4LUT is indexed by (bits(s) & 0x7fffffff) >> lutShift (the magnitude);
	// the sign bit is added separately.
	fp4LUT = [1 << (31 - lutShift)]lutEntry(buildLUT(fp4Thresholds[:], func(b uint32) uint32 { return b & 0x7fffffff },
		func(i int) uint8 { return fp4Magnitude[i] }, 1<<(31-lutShift)))
)

func buildLUT(thr []float32, key func(uint32) uint32, code func(int) uint8, nb int) []lutEntry {
	keys := make([]uint32, len(thr))
	for i, t := range thr {
		keys[i] = key(math.Float32bits(t))
		if i > 0 && keys[i] <= keys[i-1] {
			panic("nf4: thresholds not increasing")
		}
	}
	lut := make([]lutEntry, nb)
	for b := range lut {
		lo := uint64(b) << lutShift
		hi := lo + 1<<lutShift - 1
		base := 0
		for base < len(keys) && uint64(keys[base]) < lo {
			base++
		}
		e := lutEntry{thr: math.MaxUint32, le: code(base), gt: code(base)}
		if base < len(keys) && uint64(keys[base]) <= hi {
			if base+1 < len(keys) && uint64(keys[base+1]) <= hi {
				panic("nf4: two thresholds in one bucket")
			}
			e.thr = keys[base]
			e.gt = code(base + 1)
		}
		lut[b] = e
	}
	return lut
}

// nf4Nibble returns the NF4 code of a non-NaN scaled value.
func nf4Nibble(s float32) uint8 {
	k := orderedKey(math.Float32bits(s))
	e := &nf4LUT[k>>lutShift]
	gt := uint8((uint64(e.thr) - uint64(k)) >> 63)
	return e.le + gt // NF4 codes are consecutive: gt code = le + 1
}

// fp4Nibble returns the FP4 code of a non-NaN scaled value (CUDA
// dQuantizeFP4: sign iff s < 0, then the comparison tree on |s|).
func fp4Nibble(s float32) uint8 {
	b := math.Float32bits(s)
	m := b & 0x7fffffff
	e := &fp4LUT[(m>>lutShift)&(1<<(31-lutShift)-1)]
	mask := uint8(0) - uint8((uint64(e.thr)-uint64(m))>>63)
	c := e.le ^ ((e.le ^ e.gt) & mask)
	sign := (b >> 31) & ((m + 0x7fffffff) >> 31) // -0.0 is not < 0
	return c | uint8(sign<<3)
}
