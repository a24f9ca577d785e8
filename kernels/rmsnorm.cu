// rmsnorm.cu: RMSNorm forward and backward, one block of LK_RED_THREADS per
// row.
#include "common.cuh"

// lk_rmsnorm_fwd: y[r] = w ⊙ (x[r]·rstd[r]), rstd[r] = 1/sqrt(mean(x[r]²) + eps).
// rstd may be null.
extern "C" __global__ void __launch_bounds__(LK_RED_THREADS) lk_rmsnorm_fwd(float* y, float* rstd, const float* x, const float* w, int rows, int dim,
                                          float eps) {
	__shared__ float sh[LK_RED_THREADS];
	int r = blockIdx.x;
	if (r >= rows) {
		return;
	}
	const float* xr = x + (long long)r * dim;
	float* yr = y + (long long)r * dim;
	float ss = 0.f;
	for (int i = threadIdx.x; i < dim; i += blockDim.x) {
		ss += xr[i] * xr[i];
	}
	ss = lk_block_sum(ss, sh);
	float mean = ss / (float)dim;
	float s = (float)(1.0 / sqrt((double)(mean + eps)));
	if (rstd != 0 && threadIdx.x == 0) {
		rstd[r] = s;
	}
	for (int i = threadIdx.x; i < dim; i += blockDim.x) {
		yr[i] = w[i] * (xr[i] * s);
	}
}

// lk_rmsnorm_bwd: dx += s·(dy⊙w − x·s·c) with c = s·mean(dy⊙w⊙x).
extern "C" __global__ void __launch_bounds__(LK_RED_THREADS) lk_rmsnorm_bwd(float* dx, const float* dy, const float* x, const float* w,
                                          const float* rstd, int rows, int dim) {
	__shared__ double sh[LK_RED_THREADS];
	int r = blockIdx.x;
	if (r >= rows) {
		return;
	}
	long long off = (long long)r * dim;
	const float* xr = x + off;
	const float* dyr = dy + off;
	float* dxr = dx + off;
	float s = rstd[r];
	double acc = 0.0;
	for (int i = threadIdx.x; i < dim; i += blockDim.x) {
		acc += (double)(dyr[i] * w[i] * xr[i]);
	}
	acc = lk_block_sum(acc, sh);
	float c = (float)acc * s / (float)dim;
	for (int i = threadIdx.x; i < dim; i += blockDim.x) {
		dxr[i] = dxr[i] + s * (dyr[i] * w[i] - xr[i] * s * c);
	}
}
