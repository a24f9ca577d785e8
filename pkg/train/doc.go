// Package train trains LoRA, DoRA and (IA)³ adapters (and, with PEFT's bias
// option, the biases) on a model of any architecture of the registry
// (pkg/arch; the language model of a multimodal Gemma 3 checkpoint): JSONL
// data in the forms of DESIGN.md, batching and packing, AdamW exactly as
// torch.optim.AdamW, the learning-rate schedules of transformers with the
// Trainer's one-step lag, clipping by global norm, gradient accumulation with
// the Trainer's num_items_in_batch semantics, checkpoints that resume bit for
// bit, and PEFT adapter output. Run, Eval and Bench are lora-train's three
// commands as functions (cmd/lora-train is a thin layer over them); Trainer
// is the loop itself, for callers that drive it step by step.
//
// The reference for every number is shared/specs/peft.md §8 and §10.
//
// Determinism: a run is a pure function of its inputs and settings. The
// shuffle order of epoch e is a permutation drawn from (seed, e); the dropout
// masks of micro-batch k of update u are drawn from (seed, u, k); the
// initial adapter from seed alone. The compute backend's results do not
// depend on the thread count. So the whole "RNG state" of a run is its seed
// and its position, which is what a checkpoint records.
package train

import (
	"github.com/lorakit/lorakit/pkg/errclass"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrData reports a data line that is not a valid example; the error
	// names the file and line.
	ErrData = errclass.New(errclass.Invalid, "train: invalid data")
	// ErrModel reports a base model this package cannot train on.
	ErrModel = errclass.New(errclass.Invalid, "train: unsupported base model")
	// ErrAdapter reports an adapter that cannot be loaded for training or
	// evaluation.
	ErrAdapter = errclass.New(errclass.Invalid, "train: unsupported adapter")
	// ErrResume reports a checkpoint that is damaged or does not belong to
	// this run (other data or settings).
	ErrResume = errclass.New(errclass.Invalid, "train: cannot resume")
	// ErrLog reports a --log file that cannot be read back (see ReadLog);
	// the error names the file and line.
	ErrLog = errclass.New(errclass.Invalid, "train: invalid training log")
	// ErrSettings reports invalid hyper-parameters.
	ErrSettings = errclass.New(errclass.Usage, "train: invalid settings")
)
