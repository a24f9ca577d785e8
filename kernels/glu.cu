// glu.cu: the gated activation out = act(gate)⊙up and its backward, f32 or
// bf16 operands (compute.GLU). act: 0 SiLU, 1 GELU (tanh approximation,
// PyTorch's gelu(approximate="tanh")), 2 exact GELU (compute.Activation).
#include "common.cuh"

#define LK_GELU_BETA 0.7978845608028654f // √(2/π)
#define LK_GELU_KAPPA 0.044715f

// lk_act returns act(x) and, in *dact, its derivative.
__device__ __forceinline__ float lk_act(float x, int act, float* dact) {
	if (act == 1) {
		float t = tanhf(LK_GELU_BETA * (x + LK_GELU_KAPPA * (x * x * x)));
		float left = 0.5f * x, right = 1.f + t;
		*dact = 0.5f * right + left * (1.f - t * t) * (LK_GELU_BETA * (1.f + 3.f * LK_GELU_KAPPA * (x * x)));
		return left * right;
	}
	if (act == 2) {
		float cdf = 0.5f * (1.f + erff(x * 0.7071067811865476f));
		*dact = cdf + x * (expf(-0.5f * x * x) * 0.3989422804014327f);
		return x * cdf;
	}
	float sig = 1.f / (1.f + expf(-x));
	*dact = sig * (1.f + x * (1.f - sig));
	return x * sig;
}

// lk_glu_fwd: dts bits: 0 out, 1 gate, 2 up.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_glu_fwd(void* out, const void* gate, const void* up,
                                                                        long long n, int act, int dts) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		float x = lk_ld(gate, i, LK_BF(dts, 1));
		float a;
		if (act == 0) {
			a = x / (1.f + expf(-x)); // the reference's SiLU, term for term
		} else {
			float d;
			a = lk_act(x, act, &d);
		}
		lk_st(out, i, a * lk_ld(up, i, LK_BF(dts, 2)), LK_BF(dts, 0));
	}
}

// lk_glu_bwd: dts bits: 0 dgate, 1 dup, 2 dout, 3 gate, 4 up.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_glu_bwd(void* dgate, void* dup, const void* dout,
                                                                        const void* gate, const void* up, long long n,
                                                                        int act, int dts) {
	for (long long i = lk_global_id(); i < n; i += lk_grid_stride()) {
		float x = lk_ld(gate, i, LK_BF(dts, 3));
		float da;
		float a = lk_act(x, act, &da);
		float d = lk_ld(dout, i, LK_BF(dts, 2));
		lk_st(dup, i, d * a, LK_BF(dts, 1));
		lk_st(dgate, i, d * lk_ld(up, i, LK_BF(dts, 4)) * da, LK_BF(dts, 0));
	}
}
