package nibble

import "math"

// The plain-Go nearest-code search without branches: a float32 is mapped to
// an unsigned key whose order is the float order, the key's top 11 bits
// select one of 2048 buckets, and each bucket holds at most one threshold
// (checked when the table is built). A lookup is then one table load and
// one comparison: code = e.le, or e.gt when key > e.thr. This is exactly
// "number of thresholds strictly below s" (ties to the lower rank) for every
// non-NaN s.

const lutShift = 21

type lutEntry struct {
	thr    uint32 // key of the single threshold inside the bucket, or MaxUint32
	le, gt uint8  // code when key <= thr, when key > thr
}

// OrderedKey maps float32 bits to a uint32 with the same order as the
// floats (−0 sorts just below +0).
func OrderedKey(bits uint32) uint32 {
	return bits ^ (uint32(int32(bits)>>31) | 0x80000000)
}

// buildLUT returns the table, or nil when two thresholds share a bucket
// (Nibble then searches).
func buildLUT(thr []float32, code [16]uint8) []lutEntry {
	keys := make([]uint32, len(thr))
	for i, t := range thr {
		keys[i] = OrderedKey(math.Float32bits(t))
		if i > 0 && keys[i] <= keys[i-1] {
			panic("nibble: thresholds not increasing")
		}
	}
	lut := make([]lutEntry, 1<<(32-lutShift))
	for b := range lut {
		lo := uint64(b) << lutShift
		hi := lo + 1<<lutShift - 1
		rank := 0
		for rank < len(keys) && uint64(keys[rank]) < lo {
			rank++
		}
		e := lutEntry{thr: math.MaxUint32, le: code[rank], gt: code[rank]}
		if rank < len(keys) && uint64(keys[rank]) <= hi {
			if rank+1 < len(keys) && uint64(keys[rank+1]) <= hi {
				return nil
			}
			e.thr = keys[rank]
			e.gt = code[rank+1]
		}
		lut[b] = e
	}
	return lut
}
