package nf4

import (
	"cmp"
	"math"
	"slices"

	"github.com/lorakit/lorakit/internal/kernels/nibble"
)

// nf4Code is the NF4 table (spec 1.1), index = nibble, ascending.
var nf4Code = f32x16([16]uint32{
	0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f, 0xbdba7871, 0x00000000,
	0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a, 0x3ee1a4b8, 0x3f1007ab, 0x3f3913b3, 0x3f800000,
})

// fp4Code is the FP4 table as bitsandbytes stores it in quant_map (spec
// 1.2): bit 3 = sign; index 8 is +0.0, because get_4bit_type writes the
// integer -0 in its list, which torch makes +0.0.
var fp4Code = f32x16([16]uint32{
	0x00000000, 0x3baaaaab, 0x3f2aaaab, 0x3f800000, 0x3eaaaaab, 0x3f000000, 0x3e2aaaab, 0x3e800000,
	0x00000000, 0xbbaaaaab, 0xbf2aaaab, 0xbf800000, 0xbeaaaaab, 0xbf000000, 0xbe2aaaab, 0xbe800000,
})

// fp4Order and fp4Thresholds are the FP4 search of bitsandbytes' pure-PyTorch
// quantize_4bit (backends/default/ops.py, _get_4bit_quantize_bounds):
// order = argsort(code), a stable sort that puts index 0 before index 8 (both
// +0.0), and the thresholds are the float32 midpoints of consecutive sorted
// values; a scaled value's code is order[bucketize(s, thresholds)]. So a
// value that rounds to zero gets code 0 when s ≤ 0 (−0.0 and +0.0 included)
// and code 8 when s > 0, and a NaN gets order[15] = 3.
var fp4Order, fp4Thresholds = fp4Search()

func fp4Search() (order [16]uint8, thr [15]float32) {
	for i := range order {
		order[i] = uint8(i)
	}
	slices.SortStableFunc(order[:], func(a, b uint8) int { return cmp.Compare(fp4Code[a], fp4Code[b]) })
	for i := range thr {
		thr[i] = float32(fp4Code[order[i]]+fp4Code[order[i+1]]) / 2
	}
	return order, thr
}

// The codebooks of the encoding kernels.
var nf4Book, fp4Book = nibble.NewCodebook(nf4Thresholds, identity16()), nibble.NewCodebook(fp4Thresholds, fp4Order)

func identity16() (id [16]uint8) {
	for i := range id {
		id[i] = uint8(i)
	}
	return id
}

// dynamicMap is create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)
// as bitsandbytes computes it in float32 (spec 3.2), ascending.
var dynamicMap = f32x256([256]uint32{
	0xbf7e3333, 0xbf7a999a, 0xbf770000, 0xbf736666, 0xbf6fcccd, 0xbf6c3333, 0xbf68999a, 0xbf650000,
	0xbf616666, 0xbf5dcccd, 0xbf5a3333, 0xbf56999a, 0xbf530000, 0xbf4f6666, 0xbf4bcccd, 0xbf483333,
	0xbf44999a, 0xbf410000, 0xbf3d6666, 0xbf39cccd, 0xbf363334, 0xbf32999a, 0xbf2f0000, 0xbf2b6666,
	0xbf27cccd, 0xbf243334, 0xbf20999a, 0xbf1d0000, 0xbf196666, 0xbf15cccd, 0xbf123334, 0xbf0e999a,
	0xbf0b0000, 0xbf076666, 0xbf03cccc, 0xbf003333, 0xbef93332, 0xbef20000, 0xbeeacccc, 0xbee3999a,
	0xbedc6666, 0xbed53333, 0xbece0000, 0xbec6cccc, 0xbebf999a, 0xbeb86666, 0xbeb13333, 0xbeaa0000,
	0xbea2cccc, 0xbe9b999a, 0xbe946666, 0xbe8d3334, 0xbe860000, 0xbe7d9999, 0xbe6f3333, 0xbe60cccd,
	0xbe526666, 0xbe440000, 0xbe35999a, 0xbe273333, 0xbe18cccd, 0xbe0a6666, 0xbdf80000, 0xbddb3334,
	0xbdc9eb85, 0xbdc428f7, 0xbdbe6667, 0xbdb8a3d7, 0xbdb2e148, 0xbdad1eb8, 0xbda75c2a, 0xbda1999a,
	0xbd9bd70a, 0xbd96147b, 0xbd9051eb, 0xbd8a8f5d, 0xbd84cccd, 0xbd7e147b, 0xbd728f5d, 0xbd670a3d,
	0xbd5b851f, 0xbd500000, 0xbd447ae1, 0xbd38f5c3, 0xbd2d70a3, 0xbd21eb85, 0xbd166667, 0xbd0ae148,
	0xbcfeb852, 0xbce7ae15, 0xbcd0a3d7, 0xbcb9999a, 0xbca28f5d, 0xbc8b851f, 0xbc68f5c3, 0xbc3ae148,
	0xbc1f3b64, 0xbc160418, 0xbc0ccccd, 0xbc039581, 0xbbf4bc6a, 0xbbe24dd3, 0xbbcfdf3b, 0xbbbd70a4,
	0xbbab020d, 0xbb989374, 0xbb8624dd, 0xbb676c8a, 0xbb428f5c, 0xbb1db22d, 0xbaf1a9fc, 0xbaa7ef9d,
	0xba7765ff, 0xba59e83e, 0xba3c6a80, 0xba1eecc1, 0xba016f01, 0xb9c7e283, 0xb98ce705, 0xb923d70b,
	0xb8ba1f4b, 0xb88aefb3, 0xb8378034, 0xb7b24206, 0xb70205ff, 0xb65a1a94, 0xb513a3b7, 0x00000000,
	0x3513a3b7, 0x365a1a94, 0x370205ff, 0x37b24206, 0x38378034, 0x388aefb3, 0x38ba1f4b, 0x3923d70b,
	0x398ce705, 0x39c7e283, 0x3a016f01, 0x3a1eecc1, 0x3a3c6a80, 0x3a59e83e, 0x3a7765ff, 0x3aa7ef9d,
	0x3af1a9fc, 0x3b1db22d, 0x3b428f5c, 0x3b676c8a, 0x3b8624dd, 0x3b989374, 0x3bab020d, 0x3bbd70a4,
	0x3bcfdf3b, 0x3be24dd3, 0x3bf4bc6a, 0x3c039581, 0x3c0ccccd, 0x3c160418, 0x3c1f3b64, 0x3c3ae148,
	0x3c68f5c3, 0x3c8b851f, 0x3ca28f5d, 0x3cb9999a, 0x3cd0a3d7, 0x3ce7ae15, 0x3cfeb852, 0x3d0ae148,
	0x3d166667, 0x3d21eb85, 0x3d2d70a3, 0x3d38f5c3, 0x3d447ae1, 0x3d500000, 0x3d5b851f, 0x3d670a3d,
	0x3d728f5d, 0x3d7e147b, 0x3d84cccd, 0x3d8a8f5d, 0x3d9051eb, 0x3d96147b, 0x3d9bd70a, 0x3da1999a,
	0x3da75c2a, 0x3dad1eb8, 0x3db2e148, 0x3db8a3d7, 0x3dbe6667, 0x3dc428f7, 0x3dc9eb85, 0x3ddb3334,
	0x3df80000, 0x3e0a6666, 0x3e18cccd, 0x3e273333, 0x3e35999a, 0x3e440000, 0x3e526666, 0x3e60cccd,
	0x3e6f3333, 0x3e7d9999, 0x3e860000, 0x3e8d3334, 0x3e946666, 0x3e9b999a, 0x3ea2cccc, 0x3eaa0000,
	0x3eb13333, 0x3eb86666, 0x3ebf999a, 0x3ec6cccc, 0x3ece0000, 0x3ed53333, 0x3edc6666, 0x3ee3999a,
	0x3eeacccc, 0x3ef20000, 0x3ef93332, 0x3f003333, 0x3f03cccc, 0x3f076666, 0x3f0b0000, 0x3f0e999a,
	0x3f123334, 0x3f15cccd, 0x3f196666, 0x3f1d0000, 0x3f20999a, 0x3f243334, 0x3f27cccd, 0x3f2b6666,
	0x3f2f0000, 0x3f32999a, 0x3f363334, 0x3f39cccd, 0x3f3d6666, 0x3f410000, 0x3f44999a, 0x3f483333,
	0x3f4bcccd, 0x3f4f6666, 0x3f530000, 0x3f56999a, 0x3f5a3333, 0x3f5dcccd, 0x3f616666, 0x3f650000,
	0x3f68999a, 0x3f6c3333, 0x3f6fcccd, 0x3f736666, 0x3f770000, 0x3f7a999a, 0x3f7e3333, 0x3f800000,
})

// DynamicMap returns the 256-entry signed dynamic map used by double
// quantization (bitsandbytes' nested_quant_map), indexed by code byte.
func DynamicMap() [256]float32 { return dynamicMap }

// nf4Thresholds[i] = f32(f32(c[i]+c[i+1])/2): the bucketize boundaries of the
// NF4 table (spec 2.4). dynamicMidpoints likewise for the dynamic map (3.1).
var (
	nf4Thresholds    = midpoints16(&nf4Code)
	dynamicMidpoints = midpoints256(&dynamicMap)
)

func midpoints16(c *[16]float32) (t [15]float32) {
	for i := range t {
		t[i] = float32(c[i]+c[i+1]) / 2
	}
	return t
}

func midpoints256(c *[256]float32) (t [255]float32) {
	for i := range t {
		t[i] = float32(c[i]+c[i+1]) / 2
	}
	return t
}

func f32x16(bits [16]uint32) (out [16]float32) {
	for i := range out {
		out[i] = math.Float32frombits(bits[i])
	}
	return out
}

func f32x256(bits [256]uint32) (out [256]float32) {
	for i := range out {
		out[i] = math.Float32frombits(bits[i])
	}
	return out
}
