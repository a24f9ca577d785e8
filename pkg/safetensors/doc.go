// Package safetensors reads and writes the safetensors tensor format.
//
// A file is an 8-byte little-endian header length N, N bytes of JSON (the
// header), then the tensor data. The package opens files reading only the
// header and memory-maps the data, reads non-seekable streams tensor by tensor
// in file order, treats sharded checkpoints (model.safetensors.index.json) as
// one set of tensors, and writes files and streams whose offsets are computed
// before the first byte, byte-identical to the reference Python writer.
//
// Every length, count and offset read from a file is bounded and checked
// before anything is allocated; errors name the file and the tensor at fault
// and wrap one of the package's sentinel errors.
package safetensors

import "github.com/lorakit/lorakit/pkg/errclass"

// Sentinel errors; test with errors.Is.
var (
	// ErrHeader reports a malformed, oversized or truncated header.
	ErrHeader = errclass.New(errclass.Invalid, "safetensors: invalid header")
	// ErrTensor reports a tensor entry whose dtype, shape or offsets are inconsistent.
	ErrTensor = errclass.New(errclass.Invalid, "safetensors: invalid tensor")
	// ErrNotFound reports a tensor name that is not in the file or set.
	ErrNotFound = errclass.New(errclass.Invalid, "safetensors: tensor not found")
	// ErrTruncated reports data that ends before the header says it should.
	ErrTruncated = errclass.New(errclass.Invalid, "safetensors: truncated data")
	// ErrWrite reports misuse of a Writer (wrong order, size or count).
	ErrWrite = errclass.New(errclass.Failure, "safetensors: write")
	// ErrIndex reports an invalid sharded-checkpoint index.
	ErrIndex = errclass.New(errclass.Invalid, "safetensors: invalid index")
)

// Limits applied to every header read. They are variables so tools can
// document them; they are not meant to be raised casually.
var (
	// MaxHeaderSize is the largest header accepted, as in the reference reader.
	MaxHeaderSize int64 = 100_000_000
	// MaxTensors bounds the number of tensors in one header.
	MaxTensors = 1 << 20
	// MaxDims bounds the rank of one tensor.
	MaxDims = 16
	// MaxMetadataValue bounds one __metadata__ value (config files travel there).
	MaxMetadataValue = 64 << 20
)
