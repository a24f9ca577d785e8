// quant.cu: dequantization of bitsandbytes 4-bit (NF4/FP4) blockwise
// tensors (compute.Quant4), bit-identical to compute/cpu: every product and
// sum a separately rounded f32 operation.
#include "common.cuh"

// lk_dequant4: value k = code[nibble k]·scale[k/blocksize], the even element
// in the high nibble of packed[k/2]. The block scale is absF[b] or, with
// double quantization (absF null), ncode[absU[b]]·nabs[b/nestedBlocksize] +
// offset. roundF16 rounds each value to binary16; outBF16 stores bf16 bits
// (dst is then unsigned short*), else f32.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_dequant4(void* dst, const unsigned char* packed, const float* code, const float* absF,
                                       const unsigned char* absU, const float* nabs, const float* ncode, long long n,
                                       int blocksize, int nestedBlocksize, float offset, int roundF16, int outBF16) {
	for (long long k = lk_global_id(); k < n; k += lk_grid_stride()) {
		long long b = k / blocksize;
		float s;
		if (absF != 0) {
			s = absF[b];
		} else {
			s = __fadd_rn(__fmul_rn(ncode[absU[b]], nabs[b / nestedBlocksize]), offset);
		}
		unsigned int byte = packed[k >> 1];
		unsigned int nib = (k & 1) ? (byte & 15u) : (byte >> 4);
		float v = __fmul_rn(code[nib], s);
		if (roundF16) {
			v = lk_round_f16(v);
		}
		if (outBF16) {
			((unsigned short*)dst)[k] = lk_round_bf16(v);
		} else {
			((float*)dst)[k] = v;
		}
	}
}
