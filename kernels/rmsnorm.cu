// rmsnorm.cu: RMSNorm forward and backward, one block of LK_RED_THREADS per
// row; activations f32 or bf16, the weight and rstd f32.
#include "common.cuh"

// lk_rmsnorm_fwd: y[r] = w ⊙ (x[r]·rstd[r]), rstd[r] = 1/sqrt(mean(x[r]²) + eps).
// rstd may be null. dts bits: 0 y, 1 x.
extern "C" __global__ void __launch_bounds__(LK_RED_THREADS) lk_rmsnorm_fwd(void* y, float* rstd, const void* x,
                                                                           const float* w, int rows, int dim,
                                                                           float eps, int dts) {
	__shared__ float sh[LK_RED_THREADS];
	int r = blockIdx.x;
	if (r >= rows) {
		return;
	}
	long long off = (long long)r * dim;
	int bx = LK_BF(dts, 1), by = LK_BF(dts, 0);
	float ss = 0.f;
	for (int i = threadIdx.x; i < dim; i += blockDim.x) {
		float v = lk_ld(x, off + i, bx);
		ss += v * v;
	}
	ss = lk_block_sum(ss, sh);
	float mean = ss / (float)dim;
	float s = (float)(1.0 / sqrt((double)(mean + eps)));
	if (rstd != 0 && threadIdx.x == 0) {
		rstd[r] = s;
	}
	for (int i = threadIdx.x; i < dim; i += blockDim.x) {
		lk_st(y, off + i, w[i] * (lk_ld(x, off + i, bx) * s), by);
	}
}

// lk_rmsnorm_bwd: dx += s·(dy⊙w − x·s·c) with c = s·mean(dy⊙w⊙x). dts bits:
// 0 dx, 1 dy, 2 x.
extern "C" __global__ void __launch_bounds__(LK_RED_THREADS) lk_rmsnorm_bwd(void* dx, const void* dy, const void* x,
                                                                           const float* w, const float* rstd, int rows,
                                                                           int dim, int dts) {
	__shared__ double sh[LK_RED_THREADS];
	int r = blockIdx.x;
	if (r >= rows) {
		return;
	}
	long long off = (long long)r * dim;
	int bdx = LK_BF(dts, 0), bdy = LK_BF(dts, 1), bx = LK_BF(dts, 2);
	float s = rstd[r];
	double acc = 0.0;
	for (int i = threadIdx.x; i < dim; i += blockDim.x) {
		acc += (double)(lk_ld(dy, off + i, bdy) * w[i] * lk_ld(x, off + i, bx));
	}
	acc = lk_block_sum(acc, sh);
	float c = (float)acc * s / (float)dim;
	for (int i = threadIdx.x; i < dim; i += blockDim.x) {
		float v = lk_ld(dx, off + i, bdx) + s * (lk_ld(dy, off + i, bdy) * w[i] - lk_ld(x, off + i, bx) * s * c);
		lk_st(dx, off + i, v, bdx);
	}
}
