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

// gemmCall is one column-major cublasGemmEx (batch 1) or
// cublasGemmStridedBatchedEx: for each batch member i,
// C_i = alpha·opA(A_i)·opB(B_i) + beta·C_i with opA(A) m×k, opB(B) k×n, C m×n,
// X_i at X + i·strideX elements. bf16 inputs run on the tensor cores with
// f32 accumulation (CUBLAS_COMPUTE_32F); a bf16 C is rounded once.
type gemmCall struct {
	opA, opB                  int
	m, n, k                   int
	alpha, beta               float32
	a                         uintptr
	aType, lda                int
	b                         uintptr
	bType, ldb                int
	c                         uintptr
	cType, ldc                int
	batch                     int
	strideA, strideB, strideC int64
}

// operand is a row-major matrix at ptr: rows at a stride of ld elements,
// batch members stride elements apart.
type operand struct {
	ptr    uintptr
	dt     compute.DType
	ld     int
	stride int64
}

// colMajor maps the row-major compute.Gemm C = op(A)·op(B) (C M×N) onto a
// column-major cuBLAS call. A row-major X (r×c, row stride ld) is the
// column-major Xᵀ with leading dimension ld, so the call computes
// Cᵀ = op(B)ᵀ·op(A)ᵀ: cuBLAS's first operand is B and its second A,
// m = N, n = M.
//
//   - op(B) = B stored K×N: its column-major view is op(B)ᵀ (N×K): op N.
//   - op(B) = Bᵀ, B stored N×K: the view is K×N, transposed: op T.
//   - op(A) = A stored M×K: the view is op(A)ᵀ (K×M): op N.
//   - op(A) = Aᵀ, A stored K×M: the view is M×K, transposed: op T.
//
// Leading dimensions are at least 1, as cuBLAS requires even for empty
// matrices (callers do not pass K = 0; see Backend.Gemm).
func colMajor(p compute.Gemm, a, b, c operand, batch int) gemmCall {
	g := gemmCall{m: p.N, n: p.M, k: p.K, alpha: p.Alpha, beta: p.Beta,
		a: b.ptr, aType: dataType(b.dt), lda: max(1, b.ld), b: a.ptr, bType: dataType(a.dt), ldb: max(1, a.ld),
		c: c.ptr, cType: dataType(c.dt), ldc: max(1, c.ld),
		batch: batch, strideA: b.stride, strideB: a.stride, strideC: c.stride}
	g.opA, g.opB = cublasOpN, cublasOpN
	if p.TransB {
		g.opA = cublasOpT
	}
	if p.TransA {
		g.opB = cublasOpT
	}
	return g
}

// dense returns the operands of a plain (contiguous, batch 1) GEMM.
func dense(p compute.Gemm, a, b, c uintptr, at, bt, ct compute.DType) (operand, operand, operand) {
	lda, ldb := p.K, p.N
	if p.TransA {
		lda = p.M
	}
	if p.TransB {
		ldb = p.K
	}
	return operand{ptr: a, dt: at, ld: lda}, operand{ptr: b, dt: bt, ld: ldb}, operand{ptr: c, dt: ct, ld: p.N}
}

func (g *gemmCall) String() string {
	return fmt.Sprintf("gemm(op %d/%d, m %d n %d k %d, lda %d ldb %d ldc %d, types %d/%d/%d, batch %d strides %d/%d/%d)",
		g.opA, g.opB, g.m, g.n, g.k, g.lda, g.ldb, g.ldc, g.aType, g.bType, g.cType, g.batch, g.strideA, g.strideB, g.strideC)
}

// gemmAlgoDefault is CUBLAS_GEMM_DEFAULT (−1) as the 32-bit C enum travels
// in a register: the callee reads the low 32 bits.
const gemmAlgoDefault = uintptr(uint32(0xffffffff))

func dataType(dt compute.DType) int {
	if dt == compute.BF16 {
		return cudaR16BF
	}
	return cudaR32F
}
