// swiglu.cu: out = silu(gate)⊙up and its backward, f32 or bf16 operands.
#include "common.cuh"

// lk_swiglu_fwd: dts bits: 0 out, 1 gate, 2 up.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_swiglu_fwd(void* out, const void* gate, const void* up,
                                                                           long long n, int dts) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		float x = lk_ld(gate, i, LK_BF(dts, 1));
		float e = expf(-x);
		lk_st(out, i, x / (1.f + e) * lk_ld(up, i, LK_BF(dts, 2)), LK_BF(dts, 0));
	}
}

// lk_swiglu_bwd: dts bits: 0 dgate, 1 dup, 2 dout, 3 gate, 4 up.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_swiglu_bwd(void* dgate, void* dup, const void* dout,
                                                                           const void* gate, const void* up,
                                                                           long long n, int dts) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		float x = lk_ld(gate, i, LK_BF(dts, 3));
		float sig = 1.f / (1.f + expf(-x));
		float d = lk_ld(dout, i, LK_BF(dts, 2));
		lk_st(dup, i, d * (x * sig), LK_BF(dts, 1));
		lk_st(dgate, i, d * lk_ld(up, i, LK_BF(dts, 4)) * (sig * (1.f + x * (1.f - sig))), LK_BF(dts, 0));
	}
}
