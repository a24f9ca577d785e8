// optim.cu: the AdamW update and the ‖x‖₂ reduction.
#include "common.cuh"

// lk_adamw_step applies one AdamW update with the scalars the host formed as
// compute/cpu does (float64 then rounded to f32). __fmul_rn/__fadd_rn keep
// the compiler from contracting into fused multiply-adds, so the arithmetic is
// the reference's, rounding for rounding.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_adamw_step(float* p, const float* g, float* m, float* v, long long n, float decay,
                                         float w1, float b2, float w2, float stepSize, float bc2s, float eps,
                                         int wd) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		float x = p[i];
		if (wd) {
			x = __fmul_rn(x, decay);
		}
		float gi = g[i];
		float mi = m[i];
		if (w1 < 0.5f) {
			mi = __fadd_rn(mi, __fmul_rn(w1, __fsub_rn(gi, mi)));
		} else {
			mi = __fsub_rn(gi, __fmul_rn(__fsub_rn(gi, mi), __fsub_rn(1.f, w1)));
		}
		float vi = __fadd_rn(__fmul_rn(v[i], b2), __fmul_rn(__fmul_rn(w2, gi), gi));
		float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2s), eps);
		p[i] = __fadd_rn(x, __fmul_rn(stepSize, __fdiv_rn(mi, denom)));
		m[i] = mi;
		v[i] = vi;
	}
}

// lk_norm2_partial: part[c] = Σ x[i]² over chunk c of LK_NORM2_CHUNK
// elements, in double; one block of LK_RED_THREADS per chunk.
extern "C" __global__ void __launch_bounds__(LK_RED_THREADS) lk_norm2_partial(double* part, const float* x, long long n) {
	__shared__ double sh[LK_RED_THREADS];
	long long c = blockIdx.x;
	long long lo = c * LK_NORM2_CHUNK;
	long long hi = lo + LK_NORM2_CHUNK;
	if (hi > n) {
		hi = n;
	}
	double s = 0.0;
	for (long long i = lo + threadIdx.x; i < hi; i += blockDim.x) {
		double v = (double)x[i];
		s += v * v;
	}
	s = lk_block_sum(s, sh);
	if (threadIdx.x == 0) {
		part[c] = s;
	}
}

// lk_norm2_final: dst[0] = sqrt(Σ part[c]), the chunk sums added in order by
// one thread (as the CPU reference).
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_norm2_final(float* dst, const double* part, long long chunks) {
	if (blockIdx.x != 0 || threadIdx.x != 0) {
		return;
	}
	double s = 0.0;
	for (long long c = 0; c < chunks; c++) {
		s += part[c];
	}
	dst[0] = (float)sqrt(s);
}
