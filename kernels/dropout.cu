// dropout.cu: the inverted-dropout mask of compute.DropoutMask, bit for bit:
// element i is 0 when (mix64(key + (i+1)·γ) >> 40) < threshold, keep
// otherwise. key = compute.DropoutKey(seed, stream) and threshold =
// compute.DropoutThreshold(p) are computed on the host.
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_dropout_mask(float* mask, long long n, unsigned long long key,
                                           unsigned int threshold, float keep) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		unsigned long long z = lk_mix64(key + (unsigned long long)(i + 1) * LK_GOLDEN);
		unsigned int u = (unsigned int)(z >> 40);
		mask[i] = u < threshold ? 0.f : keep;
	}
}
