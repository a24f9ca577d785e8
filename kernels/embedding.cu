// embedding.cu: out[t,:] = table[ids[t],:]. An id outside [0, vocab) sets
// LK_ERR_EMBEDDING in *err and yields a zero row.
#include "common.cuh"

// lk_embedding: dts bits: 0 out, 1 table.
extern "C" __global__ void __launch_bounds__(LK_RED_THREADS) lk_embedding(void* out, const void* table, const int* ids,
                                                                         int ntok, int dim, int vocab,
                                                                         unsigned int* err, int dts) {
	int t = blockIdx.x;
	if (t >= ntok) {
		return;
	}
	int id = ids[t];
	long long o = (long long)t * dim;
	if (id < 0 || id >= vocab) {
		if (threadIdx.x == 0) {
			atomicOr(err, LK_ERR_EMBEDDING);
		}
		for (int i = threadIdx.x; i < dim; i += blockDim.x) {
			lk_st(out, o + i, 0.f, LK_BF(dts, 0));
		}
		return;
	}
	long long s = (long long)id * dim;
	for (int i = threadIdx.x; i < dim; i += blockDim.x) {
		lk_st(out, o + i, lk_ld(table, s + i, LK_BF(dts, 1)), LK_BF(dts, 0));
	}
}
