// rope.cu: rotary position embeddings in place, "rotate half" layout, over
// the first `rotary` values of each head (the rest pass through). A position
// outside the table sets LK_ERR_ROPE and leaves the token alone.
#include "common.cuh"

// lk_rope: dts bit 0: x.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_rope(void* x, const int* pos, const float* cosT,
                                                                     const float* sinT, int tokens, int heads,
                                                                     int headDim, int rotary, int npos,
                                                                     int inverse, unsigned int* err, int dts) {
	int half = rotary / 2;
	int bf = LK_BF(dts, 0);
	long long n = (long long)tokens * heads * half;
	for (long long e = lk_global_id(); e < n; e += lk_grid_stride()) {
		int i = (int)(e % half);
		long long th = e / half;
		int h = (int)(th % heads);
		int t = (int)(th / heads);
		int p = pos[t];
		if (p < 0 || p >= npos) {
			atomicOr(err, LK_ERR_ROPE);
			continue;
		}
		float c = cosT[(long long)p * half + i];
		float s = sinT[(long long)p * half + i];
		long long row = ((long long)t * heads + h) * headDim;
		float a = lk_ld(x, row + i, bf);
		float b = lk_ld(x, row + i + half, bf);
		if (inverse) {
			lk_st(x, row + i, a * c + b * s, bf);
			lk_st(x, row + i + half, b * c - a * s, bf);
		} else {
			lk_st(x, row + i, a * c - b * s, bf);
			lk_st(x, row + i + half, b * c + a * s, bf);
		}
	}
}
