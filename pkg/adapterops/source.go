package adapterops

import (
	"fmt"
	"io"
	"os"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/model"
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

// OpenAdapter is the default Opener: model.OpenAdapter, which validates
// adapter_config.json and groups the tensors into modules (spec peft.md
// §2.4, §3.2), with the tensor dtypes checked. A stream is read into memory
// on first use; files are read on demand.
func OpenAdapter(path string, stdin io.Reader) (Source, error) {
	if stdin == nil {
		stdin = os.Stdin
	}
	a, err := model.OpenAdapter(path, stdin, model.AdapterOptions{})
	if err != nil {
		return nil, err
	}
	for _, t := range a.Source.Tensors {
		if t.DType != dtype.F32 && t.DType != dtype.BF16 && t.DType != dtype.F16 && t.DType != dtype.F64 {
			a.Close()
			return nil, fmt.Errorf("%s: tensor %q: dtype %s: %w: adapter tensors must be F32, BF16, F16 or F64", path, t.Name, t.DType, ErrUnsupported)
		}
	}
	return modelSource{a}, nil
}

type modelSource struct{ a *model.Adapter }

func (s modelSource) Path() string            { return s.a.Path }
func (s modelSource) Config() *peft.Config    { return s.a.Config }
func (s modelSource) Analysis() *peft.Adapter { return s.a.Analysis }
func (s modelSource) Close() error            { return s.a.Close() }
func (s modelSource) Tensor(name string) (safetensors.TensorInfo, []byte, error) {
	t, ok := s.a.Info(name)
	if !ok {
		return t, nil, fmt.Errorf("%s: %w: %q", s.a.Path, safetensors.ErrNotFound, name)
	}
	b, err := s.a.Data(name)
	return t, b, err
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
