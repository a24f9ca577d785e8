package adapterops

import (
	"io"
	"os"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/merge"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// ---------------------------------------------------------------------------
// SEAM: how adapters are opened and outputs written. Everything else in this
// package reaches files only through Source, Opener, Sink and Creator, so
// moving to other openers and writers changes OpenAdapter and CreateOutput
// alone.
// ---------------------------------------------------------------------------

// Source is an opened, validated PEFT adapter.
type Source interface {
	// Path names the adapter in messages.
	Path() string
	// Config is the parsed adapter_config.json.
	Config() *peft.Config
	// Analysis groups the tensors into modules (with rank, alpha and
	// scaling resolved from the config) and lists the other tensors.
	Analysis() *peft.Adapter
	// Tensor returns a tensor's header entry and bytes (valid until Close,
	// not to be modified). It must be safe for concurrent use.
	Tensor(name string) (safetensors.TensorInfo, []byte, error)
	Close() error
}

// Opener opens an adapter: a PEFT folder, a .safetensors file carrying
// adapter_config.json in its metadata, or "-" for a stream on stdin.
type Opener func(path string, stdin io.Reader) (Source, error)

// Sink receives an output adapter whose layout was fixed when it was
// created. Tensors must be written in Order.
type Sink interface {
	Order() []safetensors.TensorInfo
	WriteTensor(name string, data []byte) error
	// Commit makes the output visible; Abort discards it.
	Commit() error
	Abort()
}

// Creator creates an output at path ("-": stdout) with its small files
// (adapter_config.json) and the layout of its tensors.
type Creator func(path string, files map[string][]byte, tensors []safetensors.TensorInfo) (Sink, error)

// OpenAdapter is the default Opener: pkg/merge's adapter opener, which
// validates adapter_config.json and the tensor shapes (spec peft.md §2.4,
// §3.2). A stream is read into memory; files are mapped.
func OpenAdapter(path string, stdin io.Reader) (Source, error) {
	if stdin == nil {
		stdin = os.Stdin
	}
	a, err := merge.OpenAdapter(path, stdin, 1, merge.AdapterOptions{})
	if err != nil {
		return nil, err
	}
	return mergeSource{a}, nil
}

type mergeSource struct{ a *merge.Adapter }

func (s mergeSource) Path() string            { return s.a.Path }
func (s mergeSource) Config() *peft.Config    { return s.a.Config }
func (s mergeSource) Analysis() *peft.Adapter { return s.a.Analysis }
func (s mergeSource) Close() error            { return s.a.Close() }
func (s mergeSource) Tensor(name string) (safetensors.TensorInfo, []byte, error) {
	return s.a.Tensor(name)
}

// AdapterFile is the name of the tensor file in an output folder.
const AdapterFile = "adapter_model.safetensors"

// CreateOutput is the default Creator: pkg/checkpoint's writer (a PEFT
// folder, one .safetensors file, optionally .gz/.zst, carrying
// adapter_config.json in __metadata__, or stdout), atomic on Commit.
func CreateOutput(path string, files map[string][]byte, tensors []safetensors.TensorInfo) (Sink, error) {
	return checkpoint.Create(path, files, []checkpoint.Shard{{Name: AdapterFile, Tensors: tensors}})
}

// ---------------------------------------------------------------------------
// End of the seam.
// ---------------------------------------------------------------------------

// IO holds the seam's functions and stdin; the zero value uses the defaults.
type IO struct {
	Open   Opener
	Create Creator
	Stdin  io.Reader
}

func (o IO) open(path string) (Source, error) {
	if o.Open == nil {
		return OpenAdapter(path, o.Stdin)
	}
	return o.Open(path, o.Stdin)
}

func (o IO) create(path string, files map[string][]byte, tensors []safetensors.TensorInfo) (Sink, error) {
	if o.Create == nil {
		return CreateOutput(path, files, tensors)
	}
	return o.Create(path, files, tensors)
}
