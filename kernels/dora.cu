// dora.cu: DoRA weight norms, forward terms and backward.
#include "common.cuh"

// lk_dora_norm_*: norm[o] = ‖W[o,:] + scale·(B·A)[o,:]‖₂, one block of
// LK_RED_THREADS per output row; (B·A)[o,i] is summed over the rank in order,
// squares in double.
extern "C" __global__ void __launch_bounds__(LK_RED_THREADS) lk_dora_norm_f32w(float* norm, const float* w, const float* a, const float* b, int out,
                                             int in, int rank, float scale) {
	__shared__ double sh[LK_RED_THREADS];
	int o = blockIdx.x;
	if (o >= out) {
		return;
	}
	double ss = 0.0;
	for (int i = threadIdx.x; i < in; i += blockDim.x) {
		float d = 0.f;
		for (int k = 0; k < rank; k++) {
			d += b[(long long)o * rank + k] * a[(long long)k * in + i];
		}
		double v = (double)(w[(long long)o * in + i] + scale * d);
		ss += v * v;
	}
	ss = lk_block_sum(ss, sh);
	if (threadIdx.x == 0) {
		norm[o] = (float)sqrt(ss);
	}
}

extern "C" __global__ void __launch_bounds__(LK_RED_THREADS) lk_dora_norm_bf16w(float* norm, const unsigned short* w, const float* a, const float* b,
                                              int out, int in, int rank, float scale) {
	__shared__ double sh[LK_RED_THREADS];
	int o = blockIdx.x;
	if (o >= out) {
		return;
	}
	double ss = 0.0;
	for (int i = threadIdx.x; i < in; i += blockDim.x) {
		float d = 0.f;
		for (int k = 0; k < rank; k++) {
			d += b[(long long)o * rank + k] * a[(long long)k * in + i];
		}
		double v = (double)(lk_widen_bf16(w[(long long)o * in + i]) + scale * d);
		ss += v * v;
	}
	ss = lk_block_sum(ss, sh);
	if (threadIdx.x == 0) {
		norm[o] = (float)sqrt(ss);
	}
}

// lk_dora_fwd: with g = mag/norm (per column), y += (g−1)⊙base + g⊙lora·scale;
// comb (may be null) = base + scale·lora. base may alias y.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_dora_fwd(float* y, float* comb, const float* base, const float* lora, const float* mag,
                                       const float* norm, int rows, int cols, float scale) {
	long long n = (long long)rows * cols;
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		int c = (int)(i % cols);
		float g = mag[c] / norm[c];
		float bv = base[i];
		float lv = lora[i];
		if (comb != 0) {
			comb[i] = bv + scale * lv;
		}
		y[i] = y[i] + ((g - 1.f) * bv + g * lv * scale);
	}
}

// lk_dora_bwd_elem: dbase = (g−1)⊙dy, dlora = g·scale⊙dy.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_dora_bwd_elem(float* dbase, float* dlora, const float* dy, const float* mag,
                                            const float* norm, int rows, int cols, float scale) {
	long long n = (long long)rows * cols;
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		int c = (int)(i % cols);
		float g = mag[c] / norm[c];
		float d = dy[i];
		dbase[i] = (g - 1.f) * d;
		dlora[i] = g * scale * d;
	}
}

// lk_dora_bwd_dmag: dmag[c] += Σ_rows dy⊙comb / norm[c], one thread per
// column, rows in order, in double.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_dora_bwd_dmag(float* dmag, const float* dy, const float* comb, const float* norm,
                                            int rows, int cols) {
	for (long long c = lk_global_id(); c < cols; c += lk_grid_stride()) {
		double acc = 0.0;
		for (int r = 0; r < rows; r++) {
			long long i = (long long)r * cols + c;
			acc += (double)dy[i] * (double)comb[i];
		}
		dmag[c] = dmag[c] + (float)(acc / (double)norm[c]);
	}
}
