// nvrtc_prelude.h: what NVRTC provides implicitly to a CUDA source, declared
// for clang's CUDA front end so that kernels_test.go can compile-check the
// kernels without the CUDA SDK:
//
//	clang-14 -x cuda --cuda-device-only --cuda-gpu-arch=sm_86 -nocudainc \
//	    -nocudalib -S -include nvrtc_prelude.h -I. file.cu
//
// It is used only by that check; NVRTC never sees it. Math functions are
// declared and left unresolved (libdevice is not linked), which is enough to
// type-check and generate PTX.
#pragma once

#include <__clang_cuda_builtin_vars.h>

#define __host__ __attribute__((host))
#define __device__ __attribute__((device))
#define __global__ __attribute__((global))
#define __shared__ __attribute__((shared))
#define __constant__ __attribute__((constant))
#define __forceinline__ __inline__ __attribute__((always_inline))
#define __launch_bounds__(...) __attribute__((launch_bounds(__VA_ARGS__)))

extern "C" {
__device__ float expf(float);
__device__ float logf(float);
__device__ float sqrtf(float);
__device__ float rsqrtf(float);
__device__ float fmaxf(float, float);
__device__ float fminf(float, float);
__device__ float fabsf(float);
__device__ float tanhf(float);
__device__ float erff(float);
__device__ float rintf(float);
__device__ double exp(double);
__device__ double log(double);
__device__ double sqrt(double);
__device__ float __fmul_rn(float, float);
__device__ float __fadd_rn(float, float);
__device__ float __fsub_rn(float, float);
__device__ float __fdiv_rn(float, float);
__device__ float __fsqrt_rn(float);
}

__device__ __forceinline__ int min(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int max(int a, int b) { return a > b ? a : b; }
__device__ __forceinline__ long long min(long long a, long long b) { return a < b ? a : b; }
__device__ __forceinline__ long long max(long long a, long long b) { return a > b ? a : b; }

__device__ __forceinline__ float __int_as_float(int x) { return __builtin_bit_cast(float, x); }
__device__ __forceinline__ int __float_as_int(float x) { return __builtin_bit_cast(int, x); }
__device__ __forceinline__ float __uint_as_float(unsigned int x) { return __builtin_bit_cast(float, x); }
__device__ __forceinline__ unsigned int __float_as_uint(float x) { return __builtin_bit_cast(unsigned int, x); }


__device__ __forceinline__ float atomicAdd(float* p, float v) { return __nvvm_atom_add_gen_f(p, v); }
__device__ __forceinline__ unsigned int atomicOr(unsigned int* p, unsigned int v) {
	return __nvvm_atom_or_gen_i((int*)p, (int)v);
}
__device__ __forceinline__ float __shfl_xor_sync(unsigned int mask, float v, int lane) {
	return __nvvm_shfl_sync_bfly_f32(mask, v, lane, 0x1f);
}
__device__ __forceinline__ int __shfl_xor_sync(unsigned int mask, int v, int lane) {
	return __nvvm_shfl_sync_bfly_i32(mask, v, lane, 0x1f);
}
