package adapterops

import (
	"fmt"
	"io"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tool"
)

// Adapters are opened with model.OpenAdapter (folders, .safetensors and
// PyTorch .bin files, "-" streams) and outputs are written with
// checkpoint.CreateWith (atomic, removed on an interrupt through the run's
// tool.Env), as every lorakit tool does. Everything else in this package
// reaches files only through source and sink, so tests substitute
// in-memory ones through a seam.

// source is an opened, validated PEFT adapter.
type source interface {
	// Path names the adapter in messages.
	Path() string
	// Config is the parsed adapter_config.json.
	Config() *peft.Config
	// Analysis groups the tensors into modules (with rank, alpha and
	// scaling resolved from the config) and lists the other tensors.
	Analysis() *peft.Adapter
	// Tensor returns a tensor's header entry and bytes (not to be
	// modified). It must be safe for concurrent use.
	Tensor(name string) (safetensors.TensorInfo, []byte, error)
	Close() error
}

// sink receives an output adapter whose layout was fixed when it was
// created; tensors are written in Order. *checkpoint.Writer is one.
type sink interface {
	Order() []safetensors.TensorInfo
	WriteTensor(name string, data []byte) error
	// Commit makes the output visible; Abort discards it.
	Commit() error
	Abort()
}

// seam opens adapters and creates outputs; its zero value uses
// openAdapter and createOutput.
type seam struct {
	open   func(path string, stdin io.Reader) (source, error)
	create func(path string, files map[string][]byte, tensors []safetensors.TensorInfo, env *tool.Env) (sink, error)
}

func (s seam) openAdapter(path string, env *tool.Env) (source, error) {
	if s.open == nil {
		return openAdapter(path, env.In())
	}
	return s.open(path, env.In())
}

func (s seam) createOutput(path string, files map[string][]byte, tensors []safetensors.TensorInfo, env *tool.Env) (sink, error) {
	if s.create == nil {
		return createOutput(path, files, tensors, env)
	}
	return s.create(path, files, tensors, env)
}

// openAdapter opens an adapter with model.OpenAdapter, which validates
// adapter_config.json and groups the tensors into modules (spec peft.md
// §2.4, §3.2), and checks the tensor dtypes.
func openAdapter(path string, stdin io.Reader) (source, error) {
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

// Tensor reads a file's tensor with pread into a new slice, so that the
// input's pages are not mapped into the process and memory stays a few
// modules whatever the adapter's size; a stream is read into memory once.
func (s modelSource) Tensor(name string) (safetensors.TensorInfo, []byte, error) {
	t, ok := s.a.Info(name)
	if !ok {
		return t, nil, fmt.Errorf("%s: %w: %q", s.a.Path, safetensors.ErrNotFound, name)
	}
	if !s.a.Source.Random() {
		b, err := s.a.Data(name)
		return t, b, err
	}
	b := make([]byte, t.NumBytes())
	err := s.a.Source.ReadAt(name, b, 0)
	return t, b, err
}

// AdapterFile is the name of the tensor file in an output folder.
const AdapterFile = "adapter_model.safetensors"

// createOutput writes a PEFT folder, one .safetensors file (optionally
// .gz/.zst, carrying adapter_config.json in __metadata__) or stdout
// through checkpoint.CreateWith, atomic on Commit.
func createOutput(path string, files map[string][]byte, tensors []safetensors.TensorInfo, env *tool.Env) (sink, error) {
	return checkpoint.CreateWith(path, files, []checkpoint.Shard{{Name: AdapterFile, Tensors: tensors}}, env.Output())
}
