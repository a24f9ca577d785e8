// Package compute declares the operations the decoder (pkg/llama) and the
// training tools need from a compute device, and the few host-side
// definitions every backend shares.
//
// A Backend owns device memory, handed out as opaque Buffer handles, and runs
// operations on it: GEMM with transposes (f32 or bf16 inputs, f32
// accumulation), the elementwise and reduction kernels of a decoder layer
// forward and backward (RMSNorm, partial rotary embeddings, windowed and
// soft-capped attention with an optional prefix of past keys and values,
// gated activations), a soft-capped softmax
// cross-entropy, the LoRA dropout mask,
// DoRA row norms, (IA)³ column scaling, the dequantization of bitsandbytes
// 4-bit (NF4/FP4) weights and the AdamW step. The package compute/cpu is the pure-Go
// reference that defines each operation's meaning; compute/computetest is a
// conformance suite that any backend runs.
//
// Conventions:
//   - Matrices are row-major and contiguous; shapes are given as arguments.
//   - Float operands are F32 or BF16 (mixed precision: bf16 weights and
//     activations), except where an operation says F32: the optimizer
//     (AdamWStep, Norm2), CrossEntropy, the dropout mask, the rstd of
//     RMSNorm, the lse of Attention and the RoPE tables. A BF16 operand is
//     read widened to f32 (exact) and written rounded to nearest even; the
//     arithmetic is the all-F32 operation's on the widened values, so a BF16
//     output is the F32 result rounded once (GPU backends, whose f32
//     arithmetic differs by rounding already, may also round intermediate
//     products to bf16 for the tensor cores: the conformance suite states
//     their tolerances). Arithmetic is always f32 or wider.
//   - Operations may run asynchronously. Invalid arguments (lengths that do not
//     match the shape, wrong dtypes) are programming errors and panic; device
//     failures are sticky and reported by Sync and by the Download functions.
//   - Results do not depend on the number of threads or on how work is split.
//   - Unless an operation says it accumulates ("+="), it overwrites its outputs.
//     Outputs must not overlap inputs unless the operation allows it.
package compute

import (
	"fmt"

	"github.com/lorakit/lorakit/pkg/errclass"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrOutOfMemory reports an allocation the device could not satisfy.
	ErrOutOfMemory = errclass.New(errclass.Failure, "compute: out of memory")
	// ErrDevice reports a device or driver failure.
	ErrDevice = errclass.New(errclass.Failure, "compute: device failure")
)

// DType is the element type of a Buffer.
type DType uint8

// Element types a Buffer may hold.
const (
	F32  DType = iota + 1 // IEEE 754 binary32
	BF16                  // bfloat16 storage (upper half of a binary32)
	I32                   // signed 32-bit integers (token ids, positions, labels)
	U8                    // bytes (packed 4-bit codes, 8-bit block scales)
)

// String returns the safetensors spelling of d.
func (d DType) String() string {
	switch d {
	case F32:
		return "F32"
	case BF16:
		return "BF16"
	case I32:
		return "I32"
	case U8:
		return "U8"
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Size returns the number of bytes of one element, or 0 for an unknown type.
func (d DType) Size() int {
	switch d {
	case F32, I32:
		return 4
	case BF16:
		return 2
	case U8:
		return 1
	}
	return 0
}

// Buffer is a handle to device memory owned by a Backend. Only the backend
// that allocated a buffer may use it.
type Buffer interface {
	// Len returns the number of elements.
	Len() int
	// DType returns the element type.
	DType() DType
}

// Gemm describes C = Alpha·op(A)·op(B) + Beta·C where op(A) is M×K, op(B) is
// K×N and C is M×N, all row-major. With TransA, A is stored K×M (op(A) = Aᵀ);
// with TransB, B is stored N×K. A, B and C may each be F32 or BF16; the sum
// is accumulated in f32 and a BF16 C receives it rounded once. When Beta is
// 0, C is not read (NaNs in C do not propagate).
type Gemm struct {
	TransA, TransB bool
	M, N, K        int
	Alpha, Beta    float32
}

// Attention describes causal scaled dot-product attention with grouped
// key/value heads. Q and the output are [Batch·Seq, Heads·HeadDim]; K and V are
// [Batch·Seq, KVHeads·HeadDim] (token-major, heads contiguous within a token).
// Query head h uses key/value head h / (Heads/KVHeads). Query t of a sequence
// attends to keys 0..t of the same sequence. Scores are Scale·q·k in f32, the
// softmax is computed in f32.
//
// Segments, when not nil, packs several documents into each sequence: an I32
// buffer of Batch·Seq document ids, non-decreasing within a sequence (a
// backend may panic otherwise), and query t attends only to the keys j ≤ t
// of its sequence with Segments[j] = Segments[t]. A document then gets what
// it gets run alone as a sequence of its own (bit for bit on the CPU
// backend).
//
// Window > 0 limits query t to the keys t−Window+1 … t (sliding-window
// attention, Mistral and Gemma; the other masks still apply). SoftCap > 0
// caps the scaled scores, s ← SoftCap·tanh(s/SoftCap) before the softmax
// (Gemma 2's attention-logit soft-capping); lse is then that of the capped
// scores.
//
// Backends keep memory at O(Seq) per head for the f32 path and O(chunk·Seq)
// for bf16 (scores of a chunk of queries at a time, recomputed in the
// backward pass), never O(Seq²): 32k+ token sequences fit.
//
// Prefix > 0 puts that many keys and values ahead of every sequence, as a
// KV cache does (prefix tuning's past keys and values): K and V are then
// [Batch·(Prefix+Seq), KVHeads·HeadDim], each sequence's Prefix rows
// first, and query t, at key position Prefix+t, attends to the keys
// 0 … Prefix+t of its sequence. Window counts key positions (query t sees
// the keys ≥ Prefix+t−Window+1, prefix keys included, as transformers'
// sliding-window mask over a cache), SoftCap caps every score, and
// Segments must be nil (a backend may panic otherwise). AttentionBackward's
// dk and dv have K's and V's shape, prefix rows included; lse stays
// [Batch, Heads, Seq].
type Attention struct {
	Batch, Seq, Heads, KVHeads, HeadDim int
	Scale                               float32
	Segments                            Buffer
	Window                              int
	SoftCap                             float32
	Prefix                              int
}

// Keys returns the number of keys of each sequence, Prefix+Seq.
func (a Attention) Keys() int { return a.Prefix + a.Seq }

// Rope describes rotary position embeddings applied in place to
// [Tokens, Heads·HeadDim] activations, in the "rotate half" layout of Hugging
// Face Llama. The first R = Rotary values of each head rotate (Rotary 0
// means HeadDim; partial rotary embeddings such as Phi-3's rotate fewer) and
// the others pass through: element i < R/2 pairs with element i+R/2. For
// token t at position p = pos[t], with c = cos[p·R/2 + i] and
// s = sin[p·R/2 + i]:
//
//	x[i]     ← x[i]·c − x[i+R/2]·s
//	x[i+R/2] ← x[i+R/2]·c + x[i]·s
//
// Inverse applies the transposed rotation (s → −s), which is the backward pass.
type Rope struct {
	Tokens, Heads, HeadDim int
	// Rotary is the number of rotated values per head: even, at most
	// HeadDim; 0 means HeadDim.
	Rotary  int
	Inverse bool
}

// Dims returns the number of rotated values per head (Rotary, or HeadDim
// when Rotary is 0).
func (r Rope) Dims() int {
	if r.Rotary == 0 {
		return r.HeadDim
	}
	return r.Rotary
}

// Activation is the gate activation of a gated MLP (GLU).
type Activation uint8

const (
	// SiLU is x·sigmoid(x) = x/(1+exp(−x)) (SwiGLU).
	SiLU Activation = iota
	// GELUTanh is PyTorch's gelu(approximate="tanh"):
	// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (GeGLU, Gemma).
	GELUTanh
	// GELU is the exact 0.5·x·(1 + erf(x/√2)).
	GELU
)

func (a Activation) String() string {
	switch a {
	case SiLU:
		return "silu"
	case GELUTanh:
		return "gelu_tanh"
	case GELU:
		return "gelu"
	}
	return fmt.Sprintf("Activation(%d)", uint8(a))
}

// AdamW holds the hyper-parameters of one AdamW update with PyTorch
// semantics (decoupled weight decay, ε added after the bias correction of √v).
// Step is the 1-based update count t.
type AdamW struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64
	Step                               int
}

// Quant4 is a bitsandbytes 4-bit (NF4 or FP4) blockwise-quantized tensor of
// N values held in backend buffers, with or without double quantization of
// its block scales (shared/specs/nf4.md, section 4). Block b's scale is
//
//	scale[b] = Absmax[b]                                               (Absmax F32)
//	scale[b] = f32(f32(NestedCode[Absmax[b]]·NestedAbsmax[b/NestedBlocksize]) + Offset)   (Absmax U8)
//
// and value k decodes to f32(Code[nibble(k)]·scale[k/Blocksize]), where
// nibble(k) is the high nibble of Packed[k/2] for even k and the low one for
// odd k. Every product and sum is a separately rounded f32 operation (no
// fused multiply-add), so the values are bit-identical to bitsandbytes'
// dequantize_4bit in float32.
type Quant4 struct {
	N         int    // number of values
	Blocksize int    // values per block (even)
	Packed    Buffer // U8 [(N+1)/2]
	Code      Buffer // F32 [16]: the quant_map, indexed by nibble
	Absmax    Buffer // F32 [ceil(N/Blocksize)], or U8 codes with double quantization
	// Double quantization (Absmax U8); unused otherwise.
	NestedAbsmax    Buffer // F32 [ceil(len(Absmax)/NestedBlocksize)]
	NestedCode      Buffer // F32 [256]: the nested_quant_map
	NestedBlocksize int
	Offset          float32
	// RoundF16 rounds each value to the nearest binary16 (ties to even), the
	// cast of a weight whose original dtype is float16.
	RoundF16 bool
}

// Blocks returns the number of blocks, ceil(N/Blocksize).
func (q *Quant4) Blocks() int {
	if q.Blocksize <= 0 {
		return 0
	}
	return (q.N + q.Blocksize - 1) / q.Blocksize
}

// IgnoreIndex is the label value that excludes a position from the loss.
const IgnoreIndex = -100

// Backend is a compute device. Its methods are not safe for concurrent use.
type Backend interface {
	// Name identifies the backend and device, e.g. "cpu (2 threads, avx512)".
	Name() string

	// Alloc returns a zero-filled buffer of n elements.
	Alloc(dt DType, n int) (Buffer, error)
	// Free releases a buffer allocated by Alloc. Views of it become invalid.
	Free(b Buffer)
	// View returns the n elements of b starting at element off, sharing memory.
	View(b Buffer, off, n int) Buffer
	// Upload copies src into dst (F32 or BF16), rounding to nearest even for BF16.
	Upload(dst Buffer, src []float32)
	// UploadInt32 copies src into the I32 buffer dst.
	UploadInt32(dst Buffer, src []int32)
	// UploadBytes copies src into the U8 buffer dst.
	UploadBytes(dst Buffer, src []byte)
	// Download copies src (F32 or BF16) into dst after pending work completes.
	Download(dst []float32, src Buffer) error
	// Zero sets every element of b to zero.
	Zero(b Buffer)
	// Copy copies src into dst; both have the same dtype and length.
	Copy(dst, src Buffer)
	// Convert copies the F32 or BF16 buffer src into the F32 or BF16 buffer
	// dst of the same length, rounding to nearest even into BF16 (NaN stays
	// NaN); with equal dtypes it is Copy.
	Convert(dst, src Buffer)
	// Sync waits for pending work and returns the first device error, if any.
	Sync() error

	// Gemm computes C = Alpha·op(A)·op(B) + Beta·C (see the Gemm type).
	Gemm(p Gemm, a, b, c Buffer)

	// Scale computes x ← alpha·x.
	Scale(x Buffer, alpha float32)
	// Axpy computes y ← y + alpha·x.
	Axpy(y, x Buffer, alpha float32)
	// Mul computes dst ← a⊙b; dst may alias a or b.
	Mul(dst, a, b Buffer)
	// AddMul computes dst ← dst + a⊙b.
	AddMul(dst, a, b Buffer)

	// Embedding gathers rows: out[t, :] = table[ids[t], :] for t < ids.Len(),
	// with table [V, dim] (F32 or BF16) and ids I32 in [0, V).
	Embedding(out, table, ids Buffer, dim int)

	// RMSNorm computes y[r] = w ⊙ (x[r] · rstd[r]) with
	// rstd[r] = 1/sqrt(mean(x[r]²) + eps), for rows of length dim. rstd (length
	// rows) receives the factors for the backward pass; it may be nil.
	RMSNorm(y, rstd, x, w Buffer, rows, dim int, eps float32)
	// RMSNormBackward accumulates dx += ∂y/∂x ᵀ·dy for RMSNorm with the frozen
	// weight w, given the forward input x and its rstd.
	RMSNormBackward(dx, dy, x, w, rstd Buffer, rows, dim int)

	// Dequantize4 decodes the 4-bit tensor q into dst (F32 or BF16, length
	// q.N; see the Quant4 type). A BF16 dst receives the f32 values rounded to
	// nearest even, as dequantize_4bit for a bfloat16 weight.
	Dequantize4(dst Buffer, q Quant4)

	// Rope applies rotary embeddings in place (see the Rope type). pos (I32,
	// length Tokens) holds positions; cos and sin are F32 tables indexed by
	// position·HeadDim/2 + i.
	Rope(p Rope, x, pos, cos, sin Buffer)

	// Attention computes out and the per-(sequence, head, query) log-sum-exp of
	// the scaled scores, lse [Batch, Heads, Seq], used by the backward pass
	// (see the Attention type for the causal and document masks).
	Attention(p Attention, out, lse, q, k, v Buffer)
	// AttentionBackward computes dq, dk, dv (overwritten) from dout and the
	// forward's q, k, v, out and lse.
	AttentionBackward(p Attention, dq, dk, dv, dout, q, k, v, out, lse Buffer)

	// GLU computes the gated activation out = act(gate)⊙up (SwiGLU with
	// SiLU, GeGLU with GELUTanh), act in f32.
	GLU(act Activation, out, gate, up Buffer)
	// GLUBackward computes dgate and dup (overwritten) from dout; dgate may
	// alias dout.
	GLUBackward(act Activation, dgate, dup, dout, gate, up Buffer)

	// CrossEntropy scores rows of logits [rows, vocab] (F32) against targets
	// (I32, length rows). With softCap > 0 the logits are first capped,
	// z = softCap·tanh(x/softCap) (in f32, in that order: divide, tanh,
	// multiply; Gemma 2's final_logit_softcapping), else z = x. For a row
	// with target t ≥ 0, loss[r] = logsumexp(z[r]) − z[r, t] and, if dlogits
	// is not nil, dlogits[r] = gradScale·(softmax(z[r]) − onehot(t))⊙∂z/∂x,
	// the gradient with respect to the uncapped logits. A row whose target
	// is IgnoreIndex (any negative value) gets loss 0 and a zero gradient
	// row. dlogits may alias logits.
	CrossEntropy(loss, dlogits, logits, targets Buffer, rows, vocab int, gradScale, softCap float32)
	// SoftCap caps x in place (F32 or BF16): x ← c·tanh(x/c), computed as
	// CrossEntropy caps its logits (c > 0).
	SoftCap(x Buffer, c float32)

	// FillUniform fills dst with element i of the uniform stream of seed
	// (compute.UniformBits): UniformValue(bits, lo, hi) for F32 and BF16
	// (rounded), the low 8 bits for U8 (lo and hi unused). It builds random
	// weights on the device (benchmarks) without host traffic.
	FillUniform(dst Buffer, seed uint64, lo, hi float32)

	// DropoutMask fills mask (F32) with the inverted-dropout mask of
	// probability p for (seed, stream): element i is 0 when DropoutDrops reports
	// it dropped and 1/(1−p) otherwise.
	DropoutMask(mask Buffer, p float32, seed, stream uint64)

	// DoRANorm computes the detached DoRA weight norm of each output row,
	// norm[o] = ‖W[o,:] + scale·(B·A)[o,:]‖₂, for W [out, in] (F32 or BF16),
	// A [rank, in] and B [out, rank].
	DoRANorm(norm, w, a, b Buffer, out, in, rank int, scale float32)
	// DoRAForward adds the DoRA terms to y [rows, cols]: with g = mag/norm,
	// y += (g−1)⊙base + g⊙lora·scale, broadcasting over rows. base may alias y.
	// If comb is not nil it receives base + scale·lora (for the backward pass).
	DoRAForward(y, comb, base, lora, mag, norm Buffer, rows, cols int, scale float32)
	// DoRABackward, given dy and the forward's comb: dbase = (g−1)⊙dy,
	// dlora = g·scale⊙dy (both overwritten) and dmag += Σ_rows dy⊙comb / norm.
	DoRABackward(dbase, dlora, dmag, dy, comb, mag, norm Buffer, rows, cols int, scale float32)

	// ScaleCols computes dst = x⊙v for x [rows, cols] and v [cols] (the
	// vector broadcast over rows), or dst += x⊙v with accumulate. dst may
	// alias x when not accumulating.
	ScaleCols(dst, x, v Buffer, rows, cols int, accumulate bool)
	// ColDot accumulates out[c] += Σ_rows a[r, c]·b[r, c] (an (IA)³ gradient).
	ColDot(out, a, b Buffer, rows, cols int)

	// AdamWStep updates the parameters p in place from the gradient g and the
	// moments m and v (see the AdamW type).
	AdamWStep(h AdamW, p, g, m, v Buffer)
	// Norm2 writes ‖x‖₂ into dst[0] (dst is typically a one-element view).
	Norm2(dst, x Buffer)
}
