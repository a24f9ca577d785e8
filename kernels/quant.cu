// quant.cu: dequantization of bitsandbytes 4-bit (NF4/FP4) blockwise
// tensors (compute.Quant4), bit-identical to compute/cpu: every product and
// sum a separately rounded f32 operation.
#include "common.cuh"

// lk_block_scale returns block b's scale: absF[b] or, with double
// quantization (absF null), ncode[absU[b]]·nabs[b/nestedBlocksize] + offset.
__device__ __forceinline__ float lk_block_scale(const float* absF, const unsigned char* absU, const float* nabs,
                                                const float* ncode, long long b, int nestedBlocksize, float offset) {
	if (absF != 0) {
		return absF[b];
	}
	return __fadd_rn(__fmul_rn(ncode[absU[b]], nabs[b / nestedBlocksize]), offset);
}

// lk_dequant4: value k = code[nibble k]·scale[k/blocksize], the even element
// in the high nibble of packed[k/2]. roundF16 rounds each value to binary16;
// outBF16 stores bf16 bits (dst is then unsigned short*), else f32. A thread
// decodes 8 consecutive values (4 packed bytes) and looks up their block's
// scale once (again where a block boundary falls inside).
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_dequant4(void* dst, const unsigned char* packed,
                                                                         const float* code, const float* absF,
                                                                         const unsigned char* absU, const float* nabs,
                                                                         const float* ncode, long long n, int blocksize,
                                                                         int nestedBlocksize, float offset,
                                                                         int roundF16, int outBF16) {
	long long groups = (n + 7) / 8;
	for (long long gi = lk_global_id(); gi < groups; gi += lk_grid_stride()) {
		long long k0 = gi * 8;
		long long b = k0 / blocksize;
		long long bend = (b + 1) * blocksize;
		float s = lk_block_scale(absF, absU, nabs, ncode, b, nestedBlocksize, offset);
#pragma unroll
		for (int j = 0; j < 8; j++) {
			long long k = k0 + j;
			if (k < n) {
				while (k >= bend) {
					b++;
					bend += blocksize;
					s = lk_block_scale(absF, absU, nabs, ncode, b, nestedBlocksize, offset);
				}
				unsigned int byte = packed[k >> 1];
				unsigned int nib = (j & 1) ? (byte & 15u) : (byte >> 4);
				float v = __fmul_rn(code[nib], s);
				if (roundF16) {
					v = lk_round_f16(v);
				}
				lk_st(dst, k, v, outBF16);
			}
		}
	}
}
