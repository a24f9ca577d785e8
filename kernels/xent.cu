// xent.cu: softmax cross-entropy over rows of logits, one block of
// LK_RED_THREADS per row. dlogits may alias logits and may be null. A target
// ≥ vocab sets LK_ERR_TARGET (loss NaN, zero gradient row); a negative target
// is ignored (loss 0, zero gradient row). softcap > 0 caps each logit first,
// z = softcap·tanh(x/softcap) (compute.CrossEntropy), and the gradient is
// the uncapped logits'.
#include "common.cuh"

// lk_capz returns the logit x capped (softcap > 0) or x, and in *t
// tanh(x/softcap) (0 without a cap).
__device__ __forceinline__ float lk_capz(float x, float softcap, float* t) {
	if (softcap > 0.f) {
		*t = tanhf(x / softcap);
		return *t * softcap;
	}
	*t = 0.f;
	return x;
}

// lk_softcap: x ← c·tanh(x/c) (compute.SoftCap); dts bit 0: x.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_softcap(void* x, long long n, float c, int dts) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		float t;
		lk_st(x, i, lk_capz(lk_ld(x, i, LK_BF(dts, 0)), c, &t), LK_BF(dts, 0));
	}
}

extern "C" __global__ void __launch_bounds__(LK_RED_THREADS) lk_cross_entropy(float* loss, float* dlogits, const float* logits, const int* targets,
                                            int rows, int vocab, float gradScale, float softcap,
                                            unsigned int* err) {
	__shared__ double shd[LK_RED_THREADS];
	__shared__ float shf[LK_RED_THREADS];
	int r = blockIdx.x;
	if (r >= rows) {
		return;
	}
	long long off = (long long)r * vocab;
	const float* x = logits + off;
	float* d = dlogits == 0 ? 0 : dlogits + off;
	int t = targets[r];
	if (t < 0 || t >= vocab) {
		if (threadIdx.x == 0) {
			loss[r] = t < 0 ? 0.f : __int_as_float(0x7fc00000);
			if (t >= vocab) {
				atomicOr(err, LK_ERR_TARGET);
			}
		}
		if (d != 0) {
			for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
				d[i] = 0.f;
			}
		}
		return;
	}
	float th;
	float xt = lk_capz(x[t], softcap, &th);
	float m = -LK_INF;
	for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
		m = fmaxf(m, lk_capz(x[i], softcap, &th));
	}
	m = lk_block_max(m, shf);
	double sum = 0.0;
	for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
		sum += (double)expf(lk_capz(x[i], softcap, &th) - m);
	}
	sum = lk_block_sum(sum, shd);
	double lse = (double)m + log(sum);
	if (threadIdx.x == 0) {
		loss[r] = (float)(lse - (double)xt);
	}
	if (d == 0) {
		return;
	}
	// Every read of x above is complete (lk_block_sum ends with a barrier);
	// each element is now read and written by one thread.
	double inv = 1.0 / sum;
	for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
		float z = lk_capz(x[i], softcap, &th);
		float g = gradScale * (float)((double)expf(z - m) * inv);
		if (i == t) {
			g -= gradScale;
		}
		if (softcap > 0.f) {
			g *= 1.f - th * th;
		}
		d[i] = g;
	}
}
