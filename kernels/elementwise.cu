// elementwise.cu: Scale, Axpy, Mul, AddMul (f32 or bf16 operands), bf16
// conversions, the β pass of GEMM, ScaleCols, ColDot and FillUniform.
#include "common.cuh"

// lk_scale: x ← alpha·x; dts bit 0: x.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_scale(void* x, long long n, float alpha, int dts) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		lk_st(x, i, lk_ld(x, i, LK_BF(dts, 0)) * alpha, LK_BF(dts, 0));
	}
}

// lk_axpy: y ← y + alpha·x; dts bits: 0 y, 1 x.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_axpy(void* y, const void* x, long long n, float alpha,
                                                                     int dts) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		lk_st(y, i, lk_ld(y, i, LK_BF(dts, 0)) + alpha * lk_ld(x, i, LK_BF(dts, 1)), LK_BF(dts, 0));
	}
}

// lk_mul: d ← a⊙b, d may alias a or b; dts bits: 0 d, 1 a, 2 b.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_mul(void* d, const void* a, const void* b, long long n,
                                                                    int dts) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		lk_st(d, i, lk_ld(a, i, LK_BF(dts, 1)) * lk_ld(b, i, LK_BF(dts, 2)), LK_BF(dts, 0));
	}
}

// lk_addmul: d ← d + a⊙b; dts bits: 0 d, 1 a, 2 b.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_addmul(void* d, const void* a, const void* b, long long n,
                                                                       int dts) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		float v = lk_ld(d, i, LK_BF(dts, 0)) + lk_ld(a, i, LK_BF(dts, 1)) * lk_ld(b, i, LK_BF(dts, 2));
		lk_st(d, i, v, LK_BF(dts, 0));
	}
}

extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_bf16_to_f32(float* dst, const unsigned short* src,
                                                                            long long n) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		dst[i] = lk_widen_bf16(src[i]);
	}
}

extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_f32_to_bf16(unsigned short* dst, const float* src,
                                                                            long long n) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		dst[i] = lk_round_bf16(src[i]);
	}
}

// lk_gemm_beta computes c ← β·c, or c ← 0 without reading c when β = 0 (the
// GEMM with K = 0 or α = 0); dts bit 0: c.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_gemm_beta(void* c, long long n, float beta, int dts) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		lk_st(c, i, beta == 0.f ? 0.f : beta * lk_ld(c, i, LK_BF(dts, 0)), LK_BF(dts, 0));
	}
}

// lk_scale_cols: dst = x⊙v (broadcast over rows), or dst += x⊙v.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_scale_cols(float* dst, const float* x, const float* v,
                                                                           int rows, int cols, int accumulate) {
	long long n = (long long)rows * cols;
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		float p = x[i] * v[i % cols];
		dst[i] = accumulate ? dst[i] + p : p;
	}
}

// lk_col_dot: out[c] += Σ_rows a[r,c]·b[r,c], one thread per column, rows in
// order, in double (as the CPU reference).
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_col_dot(float* out, const float* a, const float* b,
                                                                        int rows, int cols) {
	for (long long c = lk_global_id(); c < cols; c += lk_grid_stride()) {
		double acc = 0.0;
		for (int r = 0; r < rows; r++) {
			long long i = (long long)r * cols + c;
			acc += (double)a[i] * (double)b[i];
		}
		out[c] = out[c] + (float)acc;
	}
}

// lk_fill_uniform: element i of compute.FillUniform's stream, bits =
// mix64(key + (i+1)·γ) >> 40 with key = mix64(seed) (host): kind 0 f32 and
// kind 1 bf16 get lo + d·(bits·2⁻²⁴) with d = hi − lo (host, f32), kind 2
// bytes the low 8 bits.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_fill_uniform(void* dst, long long n,
                                                                             unsigned long long key, float lo, float d,
                                                                             int kind) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		unsigned int bits = (unsigned int)(lk_mix64(key + (unsigned long long)(i + 1) * LK_GOLDEN) >> 40);
		if (kind == 2) {
			((unsigned char*)dst)[i] = (unsigned char)bits;
			continue;
		}
		float v = __fadd_rn(lo, __fmul_rn(d, (float)bits * 5.9604644775390625e-8f));
		lk_st(dst, i, v, kind);
	}
}
