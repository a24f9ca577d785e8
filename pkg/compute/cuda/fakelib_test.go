package cuda

// fakeLibSource is C++ for one shared library that stands in for the CUDA
// driver, cuBLAS and NVRTC (tests link it as libcuda.so.1, libcublas.so.13
// and libnvrtc.so.13): device memory is host memory, kernels run on the
// emulator (emu_test.go) through the very kernelParams array cuLaunchKernel
// receives, and cuBLAS's GemmEx is a column-major reference. It checks what
// it can of the calls: every call after cuCtxSetCurrent must come from the
// thread that made the context current (the device worker), GemmEx's enums
// and leading dimensions must be valid, NVRTC must receive the shared header
// and an architecture option. FAKE_CUDA_NODEV=1 makes it report no device,
// FAKE_NVRTC_FAIL=1 fails every compilation.
const fakeLibSource = `
#include <stdio.h>
#include <time.h>

typedef int CUresult;
static pthread_t fake_owner;
static int fake_owned;
static int fake_wrong_thread;

static CUresult fake_check() {
	if (fake_owned && !pthread_equal(fake_owner, pthread_self())) {
		fake_wrong_thread++;
		return 201; // CUDA_ERROR_INVALID_CONTEXT
	}
	return 0;
}

extern "C" {
int fake_wrong_thread_calls() { return fake_wrong_thread; }

CUresult cuInit(unsigned int flags) { return flags == 0 ? 0 : 1; }
CUresult cuDriverGetVersion(int* v) { *v = 13000; return 0; }
CUresult cuDeviceGetCount(int* n) {
	const char* e = getenv("FAKE_CUDA_NODEV");
	*n = (e && e[0] == '1') ? 0 : 1;
	return 0;
}
CUresult cuDeviceGet(int* d, int ordinal) { if (ordinal != 0) return 101; *d = 0; return 0; }
CUresult cuDeviceGetName(char* name, int len, int dev) { snprintf(name, len, "Fake H100"); return 0; }
CUresult cuDeviceGetAttribute(int* v, int attr, int dev) {
	switch (attr) {
	case 16: *v = 132; return 0;
	case 75: *v = 9; return 0;
	case 76: *v = 0; return 0;
	}
	return 1;
}
CUresult cuDeviceTotalMem_v2(size_t* b, int dev) { *b = (size_t)80 << 30; return 0; }
CUresult cuDevicePrimaryCtxRetain(void** ctx, int dev) { *ctx = (void*)0x1234; return 0; }
CUresult cuDevicePrimaryCtxRelease_v2(int dev) { CUresult r = fake_check(); fake_owned = 0; return r; }
CUresult cuCtxSetCurrent(void* ctx) {
	if (ctx != (void*)0x1234) return 201;
	fake_owner = pthread_self();
	fake_owned = 1;
	return 0;
}
CUresult cuMemAlloc_v2(unsigned long long* p, size_t n) {
	if (CUresult r = fake_check()) return r;
	if (n > ((size_t)1 << 34)) return 2; // CUDA_ERROR_OUT_OF_MEMORY
	void* m = aligned_alloc(256, (n + 255) & ~(size_t)255);
	if (!m) return 2;
	memset(m, 0x5a, n); // garbage
	*p = (unsigned long long)m;
	return 0;
}
CUresult cuMemFree_v2(unsigned long long p) { if (CUresult r = fake_check()) return r; free((void*)p); return 0; }
CUresult cuMemGetInfo_v2(size_t* f, size_t* t) { *f = *t = (size_t)80 << 30; return 0; }
CUresult cuMemcpyHtoDAsync_v2(unsigned long long d, const void* s, size_t n, void* st) {
	if (CUresult r = fake_check()) return r;
	memcpy((void*)d, s, n);
	return 0;
}
CUresult cuMemcpyDtoHAsync_v2(void* d, unsigned long long s, size_t n, void* st) {
	if (CUresult r = fake_check()) return r;
	memcpy(d, (void*)s, n);
	return 0;
}
CUresult cuMemcpyDtoDAsync_v2(unsigned long long d, unsigned long long s, size_t n, void* st) {
	if (CUresult r = fake_check()) return r;
	memmove((void*)d, (void*)s, n);
	return 0;
}
CUresult cuMemsetD8Async(unsigned long long d, unsigned char v, size_t n, void* st) {
	if (CUresult r = fake_check()) return r;
	memset((void*)d, v, n);
	return 0;
}
CUresult cuModuleLoadData(void** mod, const void* image) {
	if (CUresult r = fake_check()) return r;
	if (strncmp((const char*)image, "FAKECUBIN:", 10) != 0) return 200; // CUDA_ERROR_INVALID_IMAGE
	*mod = (void*)0x4000;
	return 0;
}
CUresult cuModuleGetFunction(void** f, void* mod, const char* name) {
	if (CUresult r = fake_check()) return r;
	for (int i = 0; i < (int)(sizeof(lk_names) / sizeof(lk_names[0])); i++) {
		if (strcmp(lk_names[i], name) == 0) {
			*f = (void*)(long)(i + 1);
			return 0;
		}
	}
	return 500; // CUDA_ERROR_NOT_FOUND
}
CUresult cuModuleUnload(void* mod) { return fake_check(); }
CUresult cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shared, void* stream, void** params, void** extra) {
	if (CUresult r = fake_check()) return r;
	if (extra != 0 || stream == 0) return 1;
	int k = (int)(long)f - 1;
	return lk_emu_launch(k, gx, gy, gz, bx, by, bz, shared, params, lk_barrier[k]) == 0 ? 0 : 719; // LAUNCH_FAILED
}
CUresult cuStreamCreate(void** s, unsigned flags) { if (CUresult r = fake_check()) return r; *s = (void*)0x5000; return flags == 1 ? 0 : 1; }
CUresult cuStreamSynchronize(void* s) { return fake_check(); }
CUresult cuStreamDestroy_v2(void* s) { return fake_check(); }
CUresult cuEventCreate(void** e, unsigned flags) { if (CUresult r = fake_check()) return r; *e = malloc(sizeof(double)); return 0; }
CUresult cuEventRecord(void* e, void* s) {
	if (CUresult r = fake_check()) return r;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	*(double*)e = ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
	return 0;
}
CUresult cuEventSynchronize(void* e) { return fake_check(); }
CUresult cuEventElapsedTime(float* ms, void* a, void* b) { if (CUresult r = fake_check()) return r; *ms = (float)(*(double*)b - *(double*)a); return 0; }
CUresult cuEventDestroy_v2(void* e) { if (CUresult r = fake_check()) return r; free(e); return 0; }
CUresult cuGetErrorString(CUresult r, const char** s) { *s = "fake error"; return 0; }
CUresult cuGetErrorName(CUresult r, const char** s) { *s = r == 2 ? "CUDA_ERROR_OUT_OF_MEMORY" : "CUDA_ERROR_FAKE"; return 0; }

// cuBLAS
int cublasCreate_v2(void** h) { if (fake_check()) return 1; *h = (void*)0x6000; return 0; }
int cublasDestroy_v2(void* h) { return fake_check() ? 1 : 0; }
int cublasSetStream_v2(void* h, void* s) { return s == (void*)0x5000 ? 0 : 7; }
int cublasSetMathMode(void* h, int mode) { return mode == 0 ? 0 : 7; }
int cublasGetVersion_v2(void* h, int* v) { *v = 130001; return 0; }
const char* cublasGetStatusString(int s) { return "fake cuBLAS status"; }
static unsigned short fake_round_bf16(float f) {
	unsigned int u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (unsigned short)(u >> 16);
}
static double fake_load(const void* p, int type, long i) {
	if (type == 0) return ((const float*)p)[i];
	unsigned int u = ((unsigned int)((const unsigned short*)p)[i]) << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}
// fake_gemm checks one GemmEx's arguments as cuBLAS does (A and B of one
// type; a bf16 C only with bf16 A and B) and computes it in double.
static int fake_gemm(int opA, int opB, int m, int n, int k, const void* alpha, const void* A, int aType, int lda,
                     long long sA, const void* B, int bType, int ldb, long long sB, const void* beta, void* C, int cType,
                     int ldc, long long sC, int batch, int compute, int algo) {
	if (compute != 68 || algo != -1 || (aType != 0 && aType != 14) || bType != aType || (cType != 0 && cType != 14) ||
	    (cType == 14 && aType != 14) || (opA != 0 && opA != 1) || (opB != 0 && opB != 1) || m < 1 || n < 1 || k < 1 ||
	    batch < 1) {
		return 7; // CUBLAS_STATUS_INVALID_VALUE
	}
	if (lda < (opA == 0 ? m : k) || ldb < (opB == 0 ? k : n) || ldc < m) return 7;
	float a = *(const float*)alpha, b = *(const float*)beta;
	for (int bi = 0; bi < batch; bi++)
	for (int j = 0; j < n; j++)
	for (int i = 0; i < m; i++) {
		double s = 0;
		for (int l = 0; l < k; l++) {
			double x = fake_load(A, aType, bi * sA + (opA == 0 ? i + (long)l * lda : l + (long)i * lda));
			double y = fake_load(B, bType, bi * sB + (opB == 0 ? l + (long)j * ldb : j + (long)l * ldb));
			s += x * y;
		}
		long ci = bi * sC + i + (long)j * ldc;
		double v = a * s;
		if (b != 0) v += (double)b * fake_load(C, cType, ci);
		if (cType == 0) {
			((float*)C)[ci] = (float)v;
		} else {
			((unsigned short*)C)[ci] = fake_round_bf16((float)v);
		}
	}
	return 0;
}
int cublasGemmEx(void* h, int opA, int opB, int m, int n, int k, const void* alpha, const void* A, int aType, int lda,
                 const void* B, int bType, int ldb, const void* beta, void* C, int cType, int ldc, int compute, int algo) {
	if (fake_check() || h != (void*)0x6000) return 1;
	return fake_gemm(opA, opB, m, n, k, alpha, A, aType, lda, 0, B, bType, ldb, 0, beta, C, cType, ldc, 0, 1, compute, algo);
}
int cublasGemmStridedBatchedEx(void* h, int opA, int opB, int m, int n, int k, const void* alpha, const void* A, int aType,
                               int lda, long long sA, const void* B, int bType, int ldb, long long sB, const void* beta,
                               void* C, int cType, int ldc, long long sC, int batch, int compute, int algo) {
	if (fake_check() || h != (void*)0x6000) return 1;
	return fake_gemm(opA, opB, m, n, k, alpha, A, aType, lda, sA, B, bType, ldb, sB, beta, C, cType, ldc, sC, batch,
	                 compute, algo);
}

// NVRTC
struct fake_prog { char name[64]; int headers; int compiled; };
int nvrtcVersion(int* major, int* minor) { *major = 13; *minor = 0; return 0; }
const char* nvrtcGetErrorString(int r) { return "fake NVRTC error"; }
int nvrtcCreateProgram(void** prog, const char* src, const char* name, int nh, const char** hs, const char** hn) {
	fake_prog* p = (fake_prog*)calloc(1, sizeof(fake_prog));
	snprintf(p->name, sizeof(p->name), "%s", name);
	for (int i = 0; i < nh; i++) {
		if (strcmp(hn[i], "common.cuh") == 0 && strstr(hs[i], "lk_block_sum") != 0) p->headers = 1;
	}
	if (!strstr(src, "extern \"C\" __global__")) return 3;
	*prog = p;
	return 0;
}
int nvrtcCompileProgram(void* prog, int n, const char** opts) {
	fake_prog* p = (fake_prog*)prog;
	int arch = 0;
	for (int i = 0; i < n; i++) arch |= strcmp(opts[i], "--gpu-architecture=sm_90") == 0;
	const char* e = getenv("FAKE_NVRTC_FAIL");
	if (!arch || !p->headers || (e && e[0] == '1')) return 6; // NVRTC_ERROR_COMPILATION
	p->compiled = 1;
	return 0;
}
int nvrtcGetProgramLogSize(void* prog, size_t* n) { *n = 20; return 0; }
int nvrtcGetProgramLog(void* prog, char* log) { strcpy(log, "fake compile log"); return 0; }
int nvrtcGetCUBINSize(void* prog, size_t* n) { *n = 10 + strlen(((fake_prog*)prog)->name) + 1; return 0; }
int nvrtcGetCUBIN(void* prog, char* out) { sprintf(out, "FAKECUBIN:%s", ((fake_prog*)prog)->name); return 0; }
int nvrtcGetPTXSize(void* prog, size_t* n) { return 1; }
int nvrtcGetPTX(void* prog, char* out) { return 1; }
int nvrtcDestroyProgram(void** prog) { free(*prog); *prog = 0; return 0; }
int nvrtcGetNumSupportedArchs(int* n) { *n = 5; return 0; }
int nvrtcGetSupportedArchs(int* a) { int v[] = {75, 80, 86, 89, 90}; memcpy(a, v, sizeof(v)); return 0; }
}
`
