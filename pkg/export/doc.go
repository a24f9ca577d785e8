// Package export turns Hugging Face checkpoints of every architecture in the registry
// (pkg/arch) and PEFT LoRA adapters into GGUF files that llama.cpp loads: full models
// (general.type "model": the metadata keys llama.cpp reads, tensor names, the per-tensor
// transforms — Llama/Mistral q/k row permutation, Gemma's norms + 1, folded attention
// scales, a trimmed vocabulary — generated tensors such as Llama 3.1's rope_freqs.weight
// and Phi-3's LongRoPE factors, the tokenizer) and LoRA adapters (general.type
// "adapter", lora_a/lora_b pairs with PEFT's exact scaling folded in, fused modules
// where llama.cpp applies them). What llama.cpp computes differently from transformers
// is handled as the registry says (arch.Config.GGUF): folded, written as a key, capped
// context, noted, or refused with the field at fault — never a file that silently
// computes something else.
//
// An export is planned first (PlanModel, PlanAdapter): the plan holds the metadata and
// every tensor's name, type and shape, so that all offsets are known before the first
// byte and the output can go to a pipe. Plan.Write then streams the source tensor by
// tensor, in the source's own order, converting each one in parallel chunks; memory is
// bounded by a small multiple of the largest tensor. The same inputs and options give
// byte-identical files whatever the thread count or the way the input is read (folder,
// single file, stream).
//
// The rules follow shared/specs/gguf.md (§3 models, §4 adapters): counts are UINT32,
// epsilons and alphas FLOAT32, every 1-D tensor and every norm stays F32, and DoRA
// adapters, which GGUF cannot represent, are refused.
package export

import "github.com/lorakit/lorakit/pkg/errclass"

// Sentinel errors. Errors returned by this package wrap one of these (or a sentinel of
// the format packages) and name the file, tensor or key at fault.
var (
	// ErrUnsupported reports an input lorakit cannot export to GGUF: a tensor outside
	// the architecture's layout, a tokenizer model it cannot map, an adapter tensor
	// llama.cpp cannot apply. (Architectures and configs llama.cpp cannot run give
	// arch.ErrUnsupported and arch.ErrGGUF.)
	ErrUnsupported = errclass.New(errclass.Invalid, "export: unsupported input")
	// ErrInvalid reports an inconsistent input: shapes that disagree with the config,
	// a vocabulary larger than the embedding, a bad tokenizer file.
	ErrInvalid = errclass.New(errclass.Invalid, "export: invalid input")
	// ErrDoRA refuses a DoRA adapter: GGUF has no magnitude vector.
	ErrDoRA = errclass.New(errclass.Invalid, "export: DoRA adapters cannot be represented in GGUF")
	// ErrPreTokenizer reports a byte-level BPE tokenizer whose pre-tokenizer regex is
	// not one lorakit recognises; name it with ModelOptions.Pre.
	ErrPreTokenizer = errclass.New(errclass.Invalid, "export: unknown pre-tokenizer")
	// ErrBase reports an adapter that does not fit its base model.
	ErrBase = errclass.New(errclass.Invalid, "export: adapter does not fit the base model")
)
