package cuda

import (
	"fmt"

	"github.com/lorakit/lorakit/pkg/compute"
)

// cuBLAS and CUDA enumerations (cublas_api.h, library_types.h).
const (
	cublasOpN = 0
	cublasOpT = 1

	cudaR32F  = 0  // CUDA_R_32F
	cudaR16BF = 14 // CUDA_R_16BF

	cublasCompute32F  = 68 // CUBLAS_COMPUTE_32F: f32 arithmetic, no TF32
	cublasGemmDefault = -1 // CUBLAS_GEMM_DEFAULT

	cublasDefaultMath  = 0 // CUBLAS_DEFAULT_MATH
	cublasPedanticMath = 2 // CUBLAS_PEDANTIC_MATH
)

// gemmCall is one column-major cublasGemmEx:
// C = alpha·opA(A)·opB(B) + beta·C with opA(A) m×k, opB(B) k×n, C m×n.
type gemmCall struct {
	opA, opB    int
	m, n, k     int
	alpha, beta float32
	a           uintptr
	aType, lda  int
	b           uintptr
	bType, ldb  int
	c           uintptr
	ldc         int
}

// colMajor maps the row-major compute.Gemm C = op(A)·op(B) (C M×N) onto a
// column-major cuBLAS call. A row-major X (r×c) is the column-major Xᵀ with
// leading dimension c, so the call computes Cᵀ = op(B)ᵀ·op(A)ᵀ: cuBLAS's
// first operand is B and its second A, m = N, n = M, ldc = N.
//
//   - op(B) = B stored K×N: its column-major view is op(B)ᵀ (N×K, ld N): op N.
//   - op(B) = Bᵀ, B stored N×K: the view is K×N (ld K), transposed: op T.
//   - op(A) = A stored M×K: the view is op(A)ᵀ (K×M, ld K): op N.
//   - op(A) = Aᵀ, A stored K×M: the view is M×K (ld M), transposed: op T.
//
// Leading dimensions are at least 1, as cuBLAS requires even for empty
// matrices (callers do not pass K = 0; see Backend.Gemm).
func colMajor(p compute.Gemm, a, b, c uintptr, aType, bType int) gemmCall {
	g := gemmCall{m: p.N, n: p.M, k: p.K, alpha: p.Alpha, beta: p.Beta,
		a: b, aType: bType, b: a, bType: aType, c: c, ldc: max(1, p.N)}
	if p.TransB {
		g.opA, g.lda = cublasOpT, max(1, p.K)
	} else {
		g.opA, g.lda = cublasOpN, max(1, p.N)
	}
	if p.TransA {
		g.opB, g.ldb = cublasOpT, max(1, p.M)
	} else {
		g.opB, g.ldb = cublasOpN, max(1, p.K)
	}
	return g
}

func (g *gemmCall) String() string {
	return fmt.Sprintf("gemmEx(op %d/%d, m %d n %d k %d, lda %d ldb %d ldc %d, types %d/%d)",
		g.opA, g.opB, g.m, g.n, g.k, g.lda, g.ldb, g.ldc, g.aType, g.bType)
}

// gemmAlgoDefault is CUBLAS_GEMM_DEFAULT (−1) as the 32-bit C enum travels
// in a register: the callee reads the low 32 bits.
const gemmAlgoDefault = uintptr(uint32(0xffffffff))
