// embedding.cu: out[t,:] = table[ids[t],:]. An id outside [0, vocab) sets
// LK_ERR_EMBEDDING in *err and yields a zero row.
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(LK_RED_THREADS) lk_embedding_f32(float* out, const float* table, const int* ids, int ntok, int dim,
                                            int vocab, unsigned int* err) {
	int t = blockIdx.x;
	if (t >= ntok) {
		return;
	}
	int id = ids[t];
	float* o = out + (long long)t * dim;
	if (id < 0 || id >= vocab) {
		if (threadIdx.x == 0) {
			atomicOr(err, LK_ERR_EMBEDDING);
		}
		for (int i = threadIdx.x; i < dim; i += blockDim.x) {
			o[i] = 0.f;
		}
		return;
	}
	const float* s = table + (long long)id * dim;
	for (int i = threadIdx.x; i < dim; i += blockDim.x) {
		o[i] = s[i];
	}
}

extern "C" __global__ void __launch_bounds__(LK_RED_THREADS) lk_embedding_bf16(float* out, const unsigned short* table, const int* ids, int ntok,
                                             int dim, int vocab, unsigned int* err) {
	int t = blockIdx.x;
	if (t >= ntok) {
		return;
	}
	int id = ids[t];
	float* o = out + (long long)t * dim;
	if (id < 0 || id >= vocab) {
		if (threadIdx.x == 0) {
			atomicOr(err, LK_ERR_EMBEDDING);
		}
		for (int i = threadIdx.x; i < dim; i += blockDim.x) {
			o[i] = 0.f;
		}
		return;
	}
	const unsigned short* s = table + (long long)id * dim;
	for (int i = threadIdx.x; i < dim; i += blockDim.x) {
		o[i] = lk_widen_bf16(s[i]);
	}
}
