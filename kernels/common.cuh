// common.cuh: helpers shared by every kernel file. NVRTC receives it as a
// named header ("common.cuh"); the files include no system header, so the
// sources compile with NVRTC alone (no CUDA SDK headers) and with the
// clang-based check of kernels_test.go.
//
// Conventions:
//   - every kernel is extern "C" so that its name is the symbol the host asks
//     the module for;
//   - bf16 is handled as raw unsigned short bits (round to nearest even,
//     NaN stays NaN), never through cuda_bf16.h;
//   - reductions are fixed shared-memory trees over blockDim.x threads, a
//     power of two no larger than LK_MAX_THREADS, so results do not depend on
//     scheduling (no floating-point atomics anywhere);
//   - sizes that can exceed 2^31 elements are long long.
#pragma once

// Threads of a grid-stride elementwise block (cuda.elemThreads must match);
// the kernels' __launch_bounds__ let ptxas budget registers for it.
#define LK_ELEM_THREADS 256
// Threads of a reduction block; the host launches reductions with exactly
// this many threads (cuda.redThreads must match).
#define LK_RED_THREADS 256
// Largest block the kernels are written for.
#define LK_MAX_THREADS 1024
// Threads of an attention block (cuda.attnThreads must match) and the number
// of head-dimension elements one thread owns (head dim ≤ LK_ATTN_THREADS ×
// LK_ATTN_MAXR).
#define LK_ATTN_THREADS 128
#define LK_ATTN_MAXR 8
// Elements of one Norm2 partial sum (cuda.norm2Chunk and the CPU
// reference's norm2Chunk).
#define LK_NORM2_CHUNK 4096

// Bits of the error word that kernels set when they meet invalid data
// (cuda.errEmbedding, cuda.errRope, cuda.errTarget,
// cuda.errSegments).
#define LK_ERR_EMBEDDING 1u
#define LK_ERR_ROPE 2u
#define LK_ERR_TARGET 4u
#define LK_ERR_SEGMENTS 8u

#define LK_INF __int_as_float(0x7f800000)

__device__ __forceinline__ float lk_widen_bf16(unsigned short h) {
	return __uint_as_float(((unsigned int)h) << 16);
}

// lk_round_bf16 rounds to nearest even; NaN stays NaN (quiet bit set), as
// compute/cpu's toBF16.
__device__ __forceinline__ unsigned short lk_round_bf16(float f) {
	unsigned int u = __float_as_uint(f);
	if ((u & 0x7fffffffu) > 0x7f800000u) {
		return (unsigned short)((u >> 16) | 0x40u);
	}
	u += 0x7fffu + ((u >> 16) & 1u);
	return (unsigned short)(u >> 16);
}

// Mixed precision: a float operand that may be f32 or bf16 is a void
// pointer, with a bit of the kernel's dts argument set when it is bf16
// (operand k: LK_BF(dts, k)). Loads widen to f32, stores round to nearest
// even once; the arithmetic in between is the f32 kernel's.
#define LK_BF(dts, k) (((dts) >> (k)) & 1)

__device__ __forceinline__ float lk_ld(const void* p, long long i, int bf) {
	return bf ? lk_widen_bf16(((const unsigned short*)p)[i]) : ((const float*)p)[i];
}

__device__ __forceinline__ void lk_st(void* p, long long i, float v, int bf) {
	if (bf) {
		((unsigned short*)p)[i] = lk_round_bf16(v);
	} else {
		((float*)p)[i] = v;
	}
}

// lk_global_id returns the first element of this thread in a grid-stride loop
// and lk_grid_stride the stride.
__device__ __forceinline__ long long lk_global_id() {
	return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ long long lk_grid_stride() {
	return (long long)gridDim.x * blockDim.x;
}

// lk_block_sum returns the sum of v over the block to every thread. sh has
// blockDim.x elements. It starts and ends with a barrier, so sh may be reused
// right after it returns.
template <typename T>
__device__ __forceinline__ T lk_block_sum(T v, T* sh) {
	unsigned int tid = threadIdx.x;
	__syncthreads();
	sh[tid] = v;
	__syncthreads();
	for (unsigned int s = blockDim.x / 2; s > 0; s >>= 1) {
		if (tid < s) {
			sh[tid] = sh[tid] + sh[tid + s];
		}
		__syncthreads();
	}
	T r = sh[0];
	__syncthreads();
	return r;
}

// lk_block_max is lk_block_sum with max.
template <typename T>
__device__ __forceinline__ T lk_block_max(T v, T* sh) {
	unsigned int tid = threadIdx.x;
	__syncthreads();
	sh[tid] = v;
	__syncthreads();
	for (unsigned int s = blockDim.x / 2; s > 0; s >>= 1) {
		if (tid < s) {
			T o = sh[tid + s];
			if (o > sh[tid]) {
				sh[tid] = o;
			}
		}
		__syncthreads();
	}
	T r = sh[0];
	__syncthreads();
	return r;
}

// lk_mix64 is the SplitMix64 finalizer (compute.mix64).
__device__ __forceinline__ unsigned long long lk_mix64(unsigned long long z) {
	z ^= z >> 30;
	z *= 0xBF58476D1CE4E5B9ull;
	z ^= z >> 27;
	z *= 0x94D049BB133111EBull;
	z ^= z >> 31;
	return z;
}

// LK_GOLDEN is γ of the dropout hash (compute.golden).
#define LK_GOLDEN 0x9E3779B97F4A7C15ull

// lk_dot returns Σ a[i]·b[i] for i < n, in f32.
__device__ __forceinline__ float lk_dot(const float* a, const float* b, int n) {
	float s = 0.f;
	for (int i = 0; i < n; i++) {
		s += a[i] * b[i];
	}
	return s;
}

// lk_round_f16 rounds f to the nearest binary16 value, ties to even, and
// returns it as f32 (overflow gives ±Inf, NaN stays NaN): the cast of a
// float16 weight, as dtype.F16ToF32(dtype.F32ToF16(f)).
__device__ __forceinline__ float lk_round_f16(float f) {
	unsigned int u = __float_as_uint(f);
	unsigned int sign = u & 0x80000000u;
	unsigned int a = u & 0x7fffffffu;
	if (a >= 0x7f800000u) {
		return f;
	}
	if (a >= 0x477ff000u) { // ≥ 65520: rounds to Inf
		return __uint_as_float(sign | 0x7f800000u);
	}
	if (a < 0x38800000u) { // below 2^-14: a multiple of 2^-24 (subnormal)
		float r = rintf(__uint_as_float(a) * 16777216.f) * 5.9604644775390625e-8f;
		return __uint_as_float(sign | __float_as_uint(r));
	}
	a += 0xfffu + ((a >> 13) & 1u);
	return __uint_as_float(sign | (a & 0xffffe000u));
}
