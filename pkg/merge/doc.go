// Package merge merges PEFT adapters into a model checkpoint: the math of
// spec peft.md §7 (LoRA W' = W0 + s·B·A with rsLoRA, rank/alpha patterns and
// fan_in_fan_out; exact DoRA; embedding LoRA; IA³; modules_to_save, trained
// biases and trainable tokens; several adapters added in delta space) and the
// streaming plan that reads, merges and writes one tensor at a time.
//
// # Precision
//
// Every merged weight is computed in float32 and rounded once to the output
// dtype. Each element of B·A is a chain of float32 fused multiply-adds
// acc ← fma(B[o,k], A[k,i], acc), k = 0 … r−1 from 0, then
// ΔW = f32(acc·s) and W' = f32(W + ΔW): with a float32 base this reproduces
// PEFT's merge_and_unload bit for bit (peft.md §7.6). The FMA is the
// hardware's in the assembly kernels of internal/kernels/lowrank and an
// exact software emulation in the plain-Go one, so every build and CPU tier
// writes the same bytes.
//
// # Several adapters
//
// Adapters combine in delta space: W' = W0 + Σ wᵢ·(mergeᵢ(W0) − W0), where
// mergeᵢ is adapter i alone applied to the original base. For LoRA the term
// is the exact weighted low-rank delta f32(accᵢ·f32(wᵢ·sᵢ)), added in adapter
// order. This is not PEFT's add_weighted_adapter(combination_type="linear"),
// which mixes the A and B matrices separately (weights √|w·s| on each) and so
// adds cross terms Bᵢ·Aⱼ between adapters: it equals the weighted sum of
// deltas only for a single adapter (peft.md §7.9). A single adapter with
// weight 1 is merged exactly as PEFT merges it, DoRA and IA³ included.
//
// # Checkpoint bookkeeping
//
// modules_to_save tensors, saved embeddings and trained biases replace the
// base's (rounded once to the base tensor's dtype); trainable-token deltas
// replace embedding rows. When an adapted or replaced lm_head or
// embed_tokens belongs to a tied pair, the output gets its own
// lm_head.weight and config.json "tie_word_embeddings": false (spec §7.5);
// trainable tokens keep the tie. A bitsandbytes NF4/FP4 base is dequantized
// tensor by tensor exactly as dequantize_4bit returns it, then merged:
// the output is a float checkpoint without quantization_config, or with
// Options.Requantize the merged weights are quantized again with their
// original settings. config.json is otherwise carried byte for byte (its
// dtype follows Options.DType).
//
// # Streaming
//
// Tensors are read, merged and written in the output order of
// checkpoint.Writer on the streaming engine (package pipeline): a merged
// tensor goes in chunks of row blocks, each block read with pread, decoded,
// merged and encoded to the output dtype while it is in cache (rows are
// independent; per-column DoRA norms take one pass over the tensor before
// its chunks), copies and conversions go in chunks, and a bounded number of
// bytes is in flight, so peak memory is a small multiple of the largest
// tensor. A streamed base is read once; what arrives before the output
// needs it is kept in memory up to Options.StreamMemory, then in a spill
// file. The output bytes do not depend on the number of workers or
// GOMAXPROCS.
package merge

import "github.com/lorakit/lorakit/pkg/errclass"

// Sentinel errors; every error wraps one of them (or another package's) and
// names the file and the tensor or key at fault.
var (
	// ErrMismatch: adapter tensors that find no base tensor, or one of
	// another shape. The error lists the keys.
	ErrMismatch = errclass.New(errclass.Invalid, "merge: adapter does not match the base model")
	// ErrUnsupported: an adapter or base this package cannot merge correctly
	// (a non-float base weight, prompt learning, AdaLoRA, conflicting
	// replacements, ...).
	ErrUnsupported = errclass.New(errclass.Invalid, "merge: unsupported")
	// ErrNonFinite: --safe found a NaN or infinity in a merged tensor.
	ErrNonFinite = errclass.New(errclass.Invalid, "merge: non-finite value in merged weights")
)
