// Package exitcodes declares which sentinel errors of the format packages
// mean "invalid or unsupported input" (exit 3). Every command imports it for
// its side effect, so one table serves all binaries.
package exitcodes

import (
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/cli"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/gguf"
	"github.com/lorakit/lorakit/pkg/inspect"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// invalid lists the sentinels that describe bad input.
var invalid = []error{
	safetensors.ErrHeader, safetensors.ErrTensor, safetensors.ErrTruncated, safetensors.ErrIndex,
	safetensors.ErrNotFound,
	checkpoint.ErrConfig, checkpoint.ErrUnsupported, checkpoint.ErrNotFound,
	dtype.ErrUnknown,
	gguf.ErrMagic, gguf.ErrVersion, gguf.ErrTruncated, gguf.ErrCount, gguf.ErrLength, gguf.ErrKey,
	gguf.ErrDuplicate, gguf.ErrValueType, gguf.ErrArray, gguf.ErrAlignment, gguf.ErrTensorName,
	gguf.ErrDims, gguf.ErrType, gguf.ErrBlockSize, gguf.ErrOffset, gguf.ErrNotPacked,
	nf4.ErrState, nf4.ErrMissing, nf4.ErrConfig, nf4.ErrDType, nf4.ErrBlocksize, nf4.ErrType,
	peft.ErrInvalidConfig, peft.ErrUnsupportedType, peft.ErrUnsupportedVariant, peft.ErrUnsupportedFeature,
	peft.ErrMutatedBase, peft.ErrMergedLinear, peft.ErrUnsupportedPattern, peft.ErrBadKey,
	peft.ErrUnsupportedKey, peft.ErrShape, peft.ErrMissingTensor, peft.ErrDuplicateTensor,
	inspect.ErrUnrecognized,
}

func init() {
	for _, err := range invalid {
		cli.RegisterExitCode(err, cli.ExitInvalid)
	}
}
