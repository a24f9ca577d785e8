// attention.cu: causal scaled dot-product attention with grouped key/value
// heads, forward and backward, in f32. A straightforward version: one block
// of LK_ATTN_THREADS per (query or key, head, sequence), keys or queries
// walked in tiles of LK_ATTN_THREADS (one per thread), an online softmax in
// the forward pass. Each thread owns the head-dimension elements
// d = tid + r·LK_ATTN_THREADS (r < LK_ATTN_MAXR) of the result. Sums run in a
// fixed order, so results are deterministic; no atomics.
//
// Layouts (compute.Attention): q, out, dq, dout [B·T, H·D]; k, v, dk, dv
// [B·N, G·D] with N = prefix + T keys per sequence; lse, delta [B, H, T].
// Query i is at key position prefix + i (a prefix of past keys and values,
// compute.Attention.Prefix, comes first in each sequence).
//
// Packed sequences (compute.Attention.Segments): start[b·T+t] is the index
// within its sequence of the first token of token t's document and
// end[b·T+t] one past its last (lk_seg_bounds); query i sees keys
// start(i)..i and key j is seen by queries j..end(j)−1. Null start/end: one
// document per sequence. Tiles start at the document's first token, so a
// document computes exactly as it would alone.
//
// Dynamic shared memory (floats): forward D + 2·LK_ATTN_THREADS, dq
// 2·D + LK_ATTN_THREADS, dk/dv 2·D + 2·LK_ATTN_THREADS; the host
// (cuda.attnShared) computes the same sizes.
//
// window > 0 limits query i to the key positions prefix+i−window+1 ..
// prefix+i; softcap > 0 maps each scaled score s to softcap·tanh(s/softcap)
// (compute.Attention).
//
// The bf16 path (lk_attn_chunk_*) is the host's: cuBLAS computes a chunk of
// queries' scores on the tensor cores, these kernels their softmax and its
// gradient; see cuda/attention.go.
#include "common.cuh"

// lk_cap applies the soft cap (softcap > 0) and returns, in *dcap, the
// derivative of the capped score with respect to the scaled one.
__device__ __forceinline__ float lk_cap(float s, float softcap, float* dcap) {
	if (softcap > 0.f) {
		float t = tanhf(s / softcap);
		*dcap = 1.f - t * t;
		return softcap * t;
	}
	*dcap = 1.f;
	return s;
}

// lk_key_lo returns the first key position query i of sequence b sees (the
// last is prefix + i; start is null with a prefix).
__device__ __forceinline__ int lk_key_lo(const int* start, int b, int T, int prefix, int i, int window) {
	int lo = start == 0 ? 0 : start[(long long)b * T + i];
	if (window > 0) {
		lo = max(lo, prefix + i - window + 1);
	}
	return lo;
}

__device__ __forceinline__ long long lk_qrow(int b, int t, int h, int T, int H, int D) {
	return (((long long)b * T + t) * H + h) * D;
}

// lk_attn_fwd: grid (T, H, B). Shared: q row [D], p [LK_ATTN_THREADS],
// reduction scratch [LK_ATTN_THREADS].
extern "C" __global__ void __launch_bounds__(LK_ATTN_THREADS) lk_attn_fwd(float* out, float* lse, const float* q, const float* k, const float* v,
                                       const int* start, int B, int T, int H, int G, int D, float scale, int window,
                                       float softcap, int prefix) {
	extern __shared__ float sm[];
	float* qs = sm;
	float* ps = sm + D;
	float* red = ps + LK_ATTN_THREADS;
	int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
	int tid = threadIdx.x;
	int g = h / (H / G);
	const float* qi = q + lk_qrow(b, i, h, T, H, D);
	for (int d = tid; d < D; d += LK_ATTN_THREADS) {
		qs[d] = qi[d];
	}
	__syncthreads();
	float acc[LK_ATTN_MAXR];
#pragma unroll
	for (int r = 0; r < LK_ATTN_MAXR; r++) {
		acc[r] = 0.f;
	}
	float m = -LK_INF;
	float l = 0.f;
	int N = prefix + T, hi = prefix + i;
	int lo = lk_key_lo(start, b, T, prefix, i, window);
	for (int j0 = lo; j0 <= hi; j0 += LK_ATTN_THREADS) {
		int j = j0 + tid;
		float s = -LK_INF;
		if (j <= hi) {
			float dc;
			s = lk_cap(lk_dot(qs, k + lk_qrow(b, j, g, N, G, D), D) * scale, softcap, &dc);
		}
		float mnew = fmaxf(m, lk_block_max(s, red));
		float p = j <= hi ? expf(s - mnew) : 0.f;
		ps[tid] = p;
		float tsum = lk_block_sum(p, red); // its barriers publish ps
		float corr = expf(m - mnew);
		l = l * corr + tsum;
		int n = min(LK_ATTN_THREADS, hi - j0 + 1);
#pragma unroll
		for (int r = 0; r < LK_ATTN_MAXR; r++) {
			int d = tid + r * LK_ATTN_THREADS;
			if (d < D) {
				float a = acc[r] * corr;
				const float* vp = v + lk_qrow(b, j0, g, N, G, D) + d;
				for (int jj = 0; jj < n; jj++) {
					a += ps[jj] * vp[(long long)jj * G * D];
				}
				acc[r] = a;
			}
		}
		m = mnew;
		__syncthreads(); // ps is rewritten by the next tile
	}
	float* oi = out + lk_qrow(b, i, h, T, H, D);
	float inv = 1.f / l;
#pragma unroll
	for (int r = 0; r < LK_ATTN_MAXR; r++) {
		int d = tid + r * LK_ATTN_THREADS;
		if (d < D) {
			oi[d] = acc[r] * inv;
		}
	}
	if (tid == 0) {
		lse[((long long)b * H + h) * T + i] = m + logf(l);
	}
}

// lk_attn_bwd_delta: delta[b,h,i] = dout_i·out_i, one thread per row.
// dts bits: 1 dout, 2 out (f32 or bf16).
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_attn_bwd_delta(float* delta, const void* dout,
                                                                               const void* out, int B, int T, int H,
                                                                               int D, int dts) {
	long long n = (long long)B * T * H;
	for (long long e = lk_global_id(); e < n; e += lk_grid_stride()) {
		// e enumerates rows in token-major order: e = (b·T + i)·H + h.
		int h = (int)(e % H);
		long long bt = e / H;
		int i = (int)(bt % T);
		int b = (int)(bt / T);
		float s = 0.f;
		for (int d = 0; d < D; d++) {
			s += lk_ld(dout, e * D + d, LK_BF(dts, 1)) * lk_ld(out, e * D + d, LK_BF(dts, 2));
		}
		delta[((long long)b * H + h) * T + i] = s;
	}
}

// lk_attn_bwd_dq: grid (T, H, B); dq_i = scale·Σ_j p_ij(dout_i·v_j − δ_i)·k_j.
// Shared: q row [D], dout row [D], ds [LK_ATTN_THREADS].
extern "C" __global__ void __launch_bounds__(LK_ATTN_THREADS) lk_attn_bwd_dq(float* dq, const float* dout, const float* q, const float* k,
                                          const float* v, const float* lse, const float* delta, const int* start, int B,
                                          int T, int H, int G, int D, float scale, int window, float softcap,
                                          int prefix) {
	extern __shared__ float sm[];
	float* qs = sm;
	float* dos = sm + D;
	float* dss = dos + D;
	int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
	int tid = threadIdx.x;
	int g = h / (H / G);
	long long qo = lk_qrow(b, i, h, T, H, D);
	for (int d = tid; d < D; d += LK_ATTN_THREADS) {
		qs[d] = q[qo + d];
		dos[d] = dout[qo + d];
	}
	float li = lse[((long long)b * H + h) * T + i];
	float di = delta[((long long)b * H + h) * T + i];
	__syncthreads();
	float acc[LK_ATTN_MAXR];
#pragma unroll
	for (int r = 0; r < LK_ATTN_MAXR; r++) {
		acc[r] = 0.f;
	}
	int N = prefix + T, hi = prefix + i;
	int lo = lk_key_lo(start, b, T, prefix, i, window);
	for (int j0 = lo; j0 <= hi; j0 += LK_ATTN_THREADS) {
		int j = j0 + tid;
		float ds = 0.f;
		if (j <= hi) {
			long long ko = lk_qrow(b, j, g, N, G, D);
			float dc;
			float p = expf(lk_cap(lk_dot(qs, k + ko, D) * scale, softcap, &dc) - li);
			float dp = lk_dot(dos, v + ko, D);
			ds = p * (dp - di) * dc;
		}
		dss[tid] = ds;
		__syncthreads();
		int n = min(LK_ATTN_THREADS, hi - j0 + 1);
#pragma unroll
		for (int r = 0; r < LK_ATTN_MAXR; r++) {
			int d = tid + r * LK_ATTN_THREADS;
			if (d < D) {
				float a = acc[r];
				const float* kp = k + lk_qrow(b, j0, g, N, G, D) + d;
				for (int jj = 0; jj < n; jj++) {
					a += dss[jj] * kp[(long long)jj * G * D];
				}
				acc[r] = a;
			}
		}
		__syncthreads();
	}
#pragma unroll
	for (int r = 0; r < LK_ATTN_MAXR; r++) {
		int d = tid + r * LK_ATTN_THREADS;
		if (d < D) {
			dq[qo + d] = acc[r] * scale;
		}
	}
}

// lk_attn_bwd_dkv: grid (N, G, B), one block per key position j of
// key/value head g; dk_j = scale·Σ_{h∈g, prefix+i≥j} ds_ij·q_i and dv_j =
// Σ p_ij·dout_i (overwritten).
// Shared: k row [D], v row [D], p [LK_ATTN_THREADS], ds [LK_ATTN_THREADS].
extern "C" __global__ void __launch_bounds__(LK_ATTN_THREADS) lk_attn_bwd_dkv(float* dk, float* dv, const float* dout, const float* q, const float* k,
                                           const float* v, const float* lse, const float* delta, const int* end, int B,
                                           int T, int H, int G, int D, float scale, int window, float softcap,
                                           int prefix) {
	extern __shared__ float sm[];
	float* ks = sm;
	float* vs = sm + D;
	float* pp = vs + D;
	float* dss = pp + LK_ATTN_THREADS;
	int j = blockIdx.x, g = blockIdx.y, b = blockIdx.z;
	int tid = threadIdx.x;
	int group = H / G;
	long long ko = lk_qrow(b, j, g, prefix + T, G, D);
	for (int d = tid; d < D; d += LK_ATTN_THREADS) {
		ks[d] = k[ko + d];
		vs[d] = v[ko + d];
	}
	__syncthreads();
	float ak[LK_ATTN_MAXR], av[LK_ATTN_MAXR];
#pragma unroll
	for (int r = 0; r < LK_ATTN_MAXR; r++) {
		ak[r] = 0.f;
		av[r] = 0.f;
	}
	// Queries first..hi−1 see key j (end is null with a prefix).
	int first = max(0, j - prefix);
	int hi = end == 0 ? T : end[(long long)b * T + j];
	if (window > 0 && j - prefix + window < hi) {
		hi = j - prefix + window; // the queries whose window holds key j
	}
	for (int h = g * group; h < (g + 1) * group; h++) {
		for (int i0 = first; i0 < hi; i0 += LK_ATTN_THREADS) {
			int i = i0 + tid;
			float p = 0.f, ds = 0.f;
			if (i < hi) {
				long long qo = lk_qrow(b, i, h, T, H, D);
				long long li = ((long long)b * H + h) * T + i;
				float dc;
				p = expf(lk_cap(lk_dot(q + qo, ks, D) * scale, softcap, &dc) - lse[li]);
				float dp = lk_dot(dout + qo, vs, D);
				ds = p * (dp - delta[li]) * dc;
			}
			pp[tid] = p;
			dss[tid] = ds;
			__syncthreads();
			int n = min(LK_ATTN_THREADS, hi - i0);
#pragma unroll
			for (int r = 0; r < LK_ATTN_MAXR; r++) {
				int d = tid + r * LK_ATTN_THREADS;
				if (d < D) {
					float a = ak[r], c = av[r];
					long long base = lk_qrow(b, i0, h, T, H, D) + d;
					for (int ii = 0; ii < n; ii++) {
						long long o = base + (long long)ii * H * D;
						a += dss[ii] * q[o];
						c += pp[ii] * dout[o];
					}
					ak[r] = a;
					av[r] = c;
				}
			}
			__syncthreads();
		}
	}
#pragma unroll
	for (int r = 0; r < LK_ATTN_MAXR; r++) {
		int d = tid + r * LK_ATTN_THREADS;
		if (d < D) {
			dk[ko + d] = ak[r] * scale;
			dv[ko + d] = av[r];
		}
	}
}

// lk_seg_bounds: from document ids seg [B·T] (non-decreasing within a
// sequence), start and end of every token's document; one thread per
// sequence. Decreasing ids set LK_ERR_SEGMENTS.
extern "C" __global__ void __launch_bounds__(LK_ELEM_THREADS) lk_seg_bounds(int* start, int* end, const int* seg, int B, int T, unsigned int* err) {
	for (long long b = lk_global_id(); b < B; b += lk_grid_stride()) {
		const int* s = seg + b * T;
		int st = 0;
		for (int t = 0; t < T; t++) {
			if (t > 0 && s[t] != s[t - 1]) {
				if (s[t] < s[t - 1]) {
					atomicOr(err, LK_ERR_SEGMENTS);
				}
				for (int u = st; u < t; u++) {
					end[b * T + u] = t;
				}
				st = t;
			}
			start[b * T + t] = st;
		}
		for (int u = st; u < T; u++) {
			end[b * T + u] = T;
		}
	}
}

// lk_attn_chunk_p: the softmax of one chunk of queries for the tensor-core
// path. S holds, for kv head g < G (grid.y) and query row c < C (grid.x),
// the scaled scores of queries i0..i0+C−1 of head g·group + jm of sequence
// b against key positions k0..k0+Tk−1: S[(g·C + c)·Tk + col]. With forward
// set it computes each row's log-sum-exp over the visible keys and stores it
// in lse[b, h, i]; otherwise it reads it. P (bf16, laid out as S) receives
// exp(cap(s) − lse) for visible keys and 0 for the others.
extern "C" __global__ void __launch_bounds__(LK_RED_THREADS) lk_attn_chunk_p(unsigned short* P, float* lse,
                                                                            const float* S, const int* start, int b,
                                                                            int T, int H, int group, int jm, int i0,
                                                                            int C, int k0, int Tk, int window,
                                                                            float softcap, int prefix, int forward) {
	__shared__ float red[LK_RED_THREADS];
	int c = blockIdx.x, g = blockIdx.y;
	int i = i0 + c, h = g * group + jm;
	long long row = ((long long)g * C + c) * Tk;
	// visible columns lo..hi
	int lo = lk_key_lo(start, b, T, prefix, i, window) - k0, hi = prefix + i - k0;
	long long li = ((long long)b * H + h) * T + i;
	float l;
	float dc;
	if (forward) {
		float m = -LK_INF;
		for (int col = threadIdx.x; col < Tk; col += blockDim.x) {
			if (col >= lo && col <= hi) {
				m = fmaxf(m, lk_cap(S[row + col], softcap, &dc));
			}
		}
		m = lk_block_max(m, red);
		float sum = 0.f;
		for (int col = threadIdx.x; col < Tk; col += blockDim.x) {
			if (col >= lo && col <= hi) {
				sum += expf(lk_cap(S[row + col], softcap, &dc) - m);
			}
		}
		sum = lk_block_sum(sum, red);
		l = m + logf(sum);
		if (threadIdx.x == 0) {
			lse[li] = l;
		}
	} else {
		l = lse[li];
	}
	for (int col = threadIdx.x; col < Tk; col += blockDim.x) {
		float p = 0.f;
		if (col >= lo && col <= hi) {
			p = expf(lk_cap(S[row + col], softcap, &dc) - l);
		}
		P[row + col] = lk_round_bf16(p);
	}
}

// lk_attn_chunk_ds: the gradient at the scaled scores of one chunk (layout
// of lk_attn_chunk_p), dS = p·(dP − δ_i)·cap'(s) with p = exp(cap(s) −
// lse_i) recomputed from S in f32, stored as bf16; 0 for hidden keys.
extern "C" __global__ void __launch_bounds__(LK_RED_THREADS) lk_attn_chunk_ds(unsigned short* dS, const float* S,
                                                                             const float* dP, const float* lse,
                                                                             const float* delta, const int* start,
                                                                             int b, int T, int H, int group, int jm,
                                                                             int i0, int C, int k0, int Tk, int window,
                                                                             float softcap, int prefix) {
	int c = blockIdx.x, g = blockIdx.y;
	int i = i0 + c, h = g * group + jm;
	long long row = ((long long)g * C + c) * Tk;
	int lo = lk_key_lo(start, b, T, prefix, i, window) - k0, hi = prefix + i - k0;
	long long li = ((long long)b * H + h) * T + i;
	float l = lse[li], di = delta[li];
	for (int col = threadIdx.x; col < Tk; col += blockDim.x) {
		float ds = 0.f;
		if (col >= lo && col <= hi) {
			float dc;
			float p = expf(lk_cap(S[row + col], softcap, &dc) - l);
			ds = p * (dP[row + col] - di) * dc;
		}
		dS[row + col] = lk_round_bf16(ds);
	}
}
