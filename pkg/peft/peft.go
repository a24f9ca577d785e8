// Package peft implements the semantics of Hugging Face PEFT adapters:
// adapter_config.json (parse, validate, write in PEFT's byte format),
// tensor-key normalisation and grouping into adapted modules, target-module
// matching, rank/alpha patterns, scaling rules and parameter counting.
//
// The package knows no files: it works on config bytes and on tensor names
// and shapes. The reference is PEFT 0.21 (spec: shared/specs/peft.md).
package peft

import (
	"fmt"

	"github.com/lorakit/lorakit/pkg/errclass"
)

// Sentinel errors. Every error returned by this package wraps one of them
// and names the config key or tensor at fault.
var (
	// ErrInvalidConfig: adapter_config.json is malformed, a field has the
	// wrong JSON type, or a value PEFT itself rejects.
	ErrInvalidConfig = errclass.New(errclass.Invalid, "peft: invalid adapter config")
	// ErrUnsupportedType: peft_type other than LORA (IA3 optionally allowed).
	ErrUnsupportedType = errclass.New(errclass.Invalid, "peft: unsupported peft_type")
	// ErrUnsupportedVariant: a LoRA variant field that changes forward and
	// merge (use_qalora, alora_invocation_tokens, velora_config, ...).
	ErrUnsupportedVariant = errclass.New(errclass.Invalid, "peft: unsupported LoRA variant")
	// ErrUnsupportedFeature: target_parameters (MoE parameter LoRA) or
	// layer_replication.
	ErrUnsupportedFeature = errclass.New(errclass.Invalid, "peft: unsupported adapter feature")
	// ErrMutatedBase: an init (pissa, olora, corda, loftq, lora_ga) whose
	// adapter only fits a base mutated at init.
	ErrMutatedBase = errclass.New(errclass.Invalid, "peft: adapter assumes a mutated base model")
	// ErrMergedLinear: very old PEFT (<= 0.2) fused MergedLinear adapter.
	ErrMergedLinear = errclass.New(errclass.Invalid, "peft: old MergedLinear adapter (enable_lora) is not supported")
	// ErrUnsupportedPattern: a Python regex using syntax Go's RE2 lacks
	// (look-around, back-references, ...), or one that does not compile.
	ErrUnsupportedPattern = errclass.New(errclass.Invalid, "peft: unsupported regular expression")
	// ErrBadKey: a tensor name that is not a well-formed adapter key.
	ErrBadKey = errclass.New(errclass.Invalid, "peft: malformed tensor key")
	// ErrUnsupportedKey: a tensor of another adapter format (LoHa, LoKr,
	// kohya/LyCORIS, ...) or of a raw PEFT state dict.
	ErrUnsupportedKey = errclass.New(errclass.Invalid, "peft: unsupported tensor key")
	// ErrShape: tensor shapes inconsistent with each other (§3.2).
	ErrShape = errclass.New(errclass.Invalid, "peft: inconsistent tensor shape")
	// ErrMissingTensor: lora_A without lora_B, magnitude without A/B, ...
	ErrMissingTensor = errclass.New(errclass.Invalid, "peft: missing adapter tensor")
	// ErrDuplicateTensor: two tensors normalise to the same module and role.
	ErrDuplicateTensor = errclass.New(errclass.Invalid, "peft: duplicate adapter tensor")
)

// Tensor is the name and shape of one tensor of an adapter file: all this
// package needs (callers convert from their safetensors header type).
type Tensor struct {
	Name  string
	Shape []int64
}

// NumElements returns the product of the shape (1 for a scalar), or an
// error for negative dimensions or int64 overflow.
func (t Tensor) NumElements() (int64, error) {
	n := int64(1)
	for _, d := range t.Shape {
		if d < 0 {
			return 0, fmt.Errorf("tensor %q: negative dimension in shape %v: %w", t.Name, t.Shape, ErrShape)
		}
		if d != 0 && n > (1<<62)/d {
			return 0, fmt.Errorf("tensor %q: shape %v overflows: %w", t.Name, t.Shape, ErrShape)
		}
		n *= d
	}
	return n, nil
}
