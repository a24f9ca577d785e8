// swiglu.cu: out = silu(gate)⊙up and its backward.
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_swiglu_fwd(float* out, const float* gate, const float* up, long long n) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		float x = gate[i];
		float e = expf(-x);
		out[i] = x / (1.f + e) * up[i];
	}
}

extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_swiglu_bwd(float* dgate, float* dup, const float* dout, const float* gate,
                                         const float* up, long long n) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		float x = gate[i];
		float sig = 1.f / (1.f + expf(-x));
		float d = dout[i];
		dup[i] = d * (x * sig);
		dgate[i] = d * up[i] * (sig * (1.f + x * (1.f - sig)));
	}
}
