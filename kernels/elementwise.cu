// elementwise.cu: Scale, Axpy, Mul, AddMul, bf16 conversions, the β pass of
// GEMM, ScaleCols and ColDot.
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_scale_f32(float* x, long long n, float alpha) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		x[i] = x[i] * alpha;
	}
}

extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_axpy_f32(float* y, const float* x, long long n, float alpha) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		y[i] = y[i] + alpha * x[i];
	}
}

// lk_mul_f32: d may alias a or b.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_mul_f32(float* d, const float* a, const float* b, long long n) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		d[i] = a[i] * b[i];
	}
}

extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_addmul_f32(float* d, const float* a, const float* b, long long n) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		d[i] = d[i] + a[i] * b[i];
	}
}

extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_bf16_to_f32(float* dst, const unsigned short* src, long long n) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		dst[i] = lk_widen_bf16(src[i]);
	}
}

extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_f32_to_bf16(unsigned short* dst, const float* src, long long n) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		dst[i] = lk_round_bf16(src[i]);
	}
}

// lk_gemm_beta computes c ← β·c, or c ← 0 without reading c when β = 0 (the
// GEMM with K = 0 or α = 0).
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_gemm_beta(float* c, long long n, float beta) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		c[i] = beta == 0.f ? 0.f : beta * c[i];
	}
}

// lk_scale_cols: dst = x⊙v (broadcast over rows), or dst += x⊙v.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_scale_cols(float* dst, const float* x, const float* v, int rows, int cols,
                                         int accumulate) {
	long long n = (long long)rows * cols;
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		float p = x[i] * v[i % cols];
		dst[i] = accumulate ? dst[i] + p : p;
	}
}

// lk_col_dot: out[c] += Σ_rows a[r,c]·b[r,c], one thread per column, rows in
// order, in double (as the CPU reference).
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_col_dot(float* out, const float* a, const float* b, int rows, int cols) {
	for (long long c = lk_global_id(); c < cols; c += lk_grid_stride()) {
		double acc = 0.0;
		for (int r = 0; r < rows; r++) {
			long long i = (long long)r * cols + c;
			acc += (double)a[i] * (double)b[i];
		}
		out[c] = out[c] + (float)acc;
	}
}
