// Package torchbin reads PyTorch checkpoints saved with torch.save (PyTorch
// 1.6 and later: a zip archive) without executing anything.
//
// # Format
//
// A checkpoint is a zip archive whose entries live under one top folder
// ("archive/" for torch 2.x, the file's stem for files torch 1.x saved by
// path). <folder>/data.pkl is a pickle program that builds the saved object
// (usually a dict of tensors); each tensor refers, by a persistent id, to a
// storage whose raw little-endian bytes are the entry <folder>/data/<key>
// (<folder>/byteorder may say "big"). Tensors are views of storages: an
// offset, a shape and strides, as torch._utils._rebuild_tensor_v2 describes.
//
// # Safety
//
// The pickle is interpreted, never executed: only the opcodes that describe
// data are understood, and a global (a Python function or class named by the
// pickle) is accepted only if it is on a fixed allow-list — the tensor and
// parameter rebuild functions, the storage and dtype names,
// collections.OrderedDict and the few other names torch.load(...,
// weights_only=True) accepts for plain state dicts (AllowedGlobals lists
// them). Each allowed callable has a meaning written in Go that builds a
// value. Any other global, and the opcodes that reach arbitrary code (INST,
// OBJ, EXT*, NEWOBJ or REDUCE of anything but a container or a tensor),
// stop the reading with ErrForbiddenGlobal naming the file and the global.
// Every length, count and offset is checked against the archive's real
// size before anything is allocated.
//
// # Laziness
//
// Open reads the zip directory and data.pkl, nothing else: listing the
// tensors of a 16 GB checkpoint costs a few hundred kilobytes of reads.
// Tensor bytes are read on demand, storage by storage, straight from the
// zip entry; views, shared storages and non-contiguous strides are resolved
// into contiguous row-major little-endian bytes.
//
// # Names
//
// The saved object is flattened into named tensors (see File.Tensors):
//
//   - A dict (or OrderedDict) maps its keys to tensors; nested dicts, lists
//     and tuples join their keys (list and tuple items by index) with ".":
//     {"encoder": {"w": t}} gives "encoder.w", {"layers": [t0, t1]} gives
//     "layers.0" and "layers.1". Keys must be strings or integers.
//   - A top-level dict holding no tensor directly but one of the keys
//     "state_dict", "model_state_dict", "model" or "module" (checked in that
//     order) whose value holds tensors is unwrapped: only that value is
//     flattened, as Lightning, DeepSpeed and most training loops save it.
//     Plain state dicts, as transformers and PEFT save them, are flat dicts
//     and are read exactly as torch.load returns them.
//   - Values that are not tensors (epoch counters, hyper-parameters) are
//     skipped and listed in File.Skipped; the _metadata attribute that
//     Module.state_dict() attaches (module versions) is ignored.
//
// # Using it like safetensors
//
// File and Set mirror safetensors.File and safetensors.Set (Names, Info,
// Data, Float32, Close; OpenSet, OpenIndexed), and TensorInfo carries the
// name, dtype and shape a safetensors.TensorInfo needs. Data and ReadTensor
// hand out contiguous little-endian bytes, so a tool that reads safetensors
// tensors reads these the same way; Each walks every tensor with one
// reused buffer. Sniff tells a zip checkpoint and a legacy file from their
// first bytes, and SafetensorsName gives the file name a conversion writes.
package torchbin

import (
	"github.com/lorakit/lorakit/pkg/errclass"
)

// Sentinel errors; test with errors.Is. Every error also names the file and,
// where one is at fault, the tensor, storage or global.
var (
	// ErrNotZip reports a file that is neither a zip archive nor a legacy
	// PyTorch file.
	ErrNotZip = errclass.New(errclass.Invalid, "torchbin: not a PyTorch zip checkpoint")
	// ErrLegacyFormat reports a checkpoint in the pre-1.6 (non-zip) format.
	ErrLegacyFormat = errclass.New(errclass.Invalid, "torchbin: legacy (pre-1.6) PyTorch format")
	// ErrArchive reports a zip archive that is not a PyTorch checkpoint or
	// whose directory is inconsistent.
	ErrArchive = errclass.New(errclass.Invalid, "torchbin: invalid checkpoint archive")
	// ErrTruncated reports an archive, entry or pickle that ends early.
	ErrTruncated = errclass.New(errclass.Invalid, "torchbin: truncated file")
	// ErrForbiddenGlobal reports a pickle that names a global outside the
	// allow-list, or uses an allowed one in a way that could run code.
	ErrForbiddenGlobal = errclass.New(errclass.Invalid, "torchbin: forbidden global")
	// ErrPickle reports a malformed pickle or one using an opcode or a value
	// that does not describe a state dict.
	ErrPickle = errclass.New(errclass.Invalid, "torchbin: invalid pickle")
	// ErrStorage reports a storage or tensor view inconsistent with the
	// archive: a missing entry, sizes that disagree, a view out of bounds.
	ErrStorage = errclass.New(errclass.Invalid, "torchbin: invalid storage")
	// ErrUnsupported reports valid content this package does not read:
	// sparse, quantized or complex tensors, TorchScript archives.
	ErrUnsupported = errclass.New(errclass.Invalid, "torchbin: unsupported content")
	// ErrStateDict reports an object that is not a (nested) dict of tensors
	// or whose flattened names collide.
	ErrStateDict = errclass.New(errclass.Invalid, "torchbin: not a state dict")
	// ErrNotFound reports a tensor name that is not in the file or set.
	ErrNotFound = errclass.New(errclass.Invalid, "torchbin: tensor not found")
)

// Limits applied to every file. They are variables so tools can document
// them; they are not meant to be raised casually.
var (
	// MaxPickleSize bounds data.pkl.
	MaxPickleSize int64 = 256 << 20
	// MaxEntries bounds the number of entries of an archive.
	MaxEntries = 1 << 20
	// MaxTensors bounds the number of tensors of a file.
	MaxTensors = 1 << 20
	// MaxDims bounds the rank of a tensor.
	MaxDims = 64
	// MaxDepth bounds the nesting of containers in a pickle.
	MaxDepth = 100
	// MaxKeyLen bounds a dict key used as part of a tensor name.
	MaxKeyLen = 64 << 10
	// MaxExpansion bounds how many times a tensor's contiguous size may
	// exceed its storage's: strides of 0 broadcast a storage (torch writes
	// such buffers, e.g. position_ids), and each read allocates the
	// contiguous size.
	MaxExpansion int64 = 64
)
