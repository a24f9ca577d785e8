// Package model opens the inputs every tool starts from: a base model (a
// checkpoint and its parsed config.json) and a PEFT adapter (its parsed and
// validated adapter_config.json and its tensors grouped into modules). It is
// the one place that decides what counts as a model or an adapter, so that
// lora-inspect, lora-merge, lora-gguf and lora-train accept and refuse the
// same inputs with the same messages.
//
// A base's config.json is parsed by the architecture registry (pkg/arch):
// Base.Config is the registry's description of the model, which every tool
// asks for names, shapes, targets and its GGUF mapping.
package model

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// Sentinel errors; each error names the path at fault.
var (
	// ErrNotModel: an adapter was given where a model is expected.
	ErrNotModel = errclass.New(errclass.Invalid, "model: an adapter, not a model")
	// ErrNotAdapter: a model was given where an adapter is expected.
	ErrNotAdapter = errclass.New(errclass.Invalid, "model: a model, not an adapter")
	// ErrNoAdapterConfig: an adapter without adapter_config.json, whose
	// alpha (hence scaling) is unknown.
	ErrNoAdapterConfig = errclass.New(errclass.Invalid, "model: adapter without adapter_config.json (alpha, hence the scaling, is unknown)")
)

// Base is an opened base model.
type Base struct {
	Path   string
	Source *checkpoint.Source
	// Config is config.json as the architecture registry describes it; nil
	// unless BaseOptions.Config was set.
	Config *arch.Config
	// Quantized reports a bitsandbytes 4-bit checkpoint.
	Quantized bool
}

// BaseOptions say what OpenBase requires.
type BaseOptions struct {
	// Config requires a config.json of an architecture in the registry and
	// parses it into Base.Config (any other gives arch.Unsupported).
	Config bool
}

// OpenBase opens a base model: an HF folder, a .safetensors file (.gz/.zst
// too) or "-" (a stream read from stdin). An adapter is refused.
func OpenBase(path string, stdin io.Reader, o BaseOptions) (*Base, error) {
	return open(path, stdin, func(src *checkpoint.Source) (*Base, error) { return BaseFrom(src, o) })
}

// open opens path and makes what from(src) makes of it; the source is
// closed when that fails.
func open[T any](path string, stdin io.Reader, from func(*checkpoint.Source) (T, error)) (T, error) {
	src, err := checkpoint.Open(path, stdin)
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := from(src)
	if err != nil {
		src.Close()
	}
	return v, err
}

// BaseFrom is OpenBase for a source already open; on success the Base owns it.
func BaseFrom(src *checkpoint.Source, o BaseOptions) (*Base, error) {
	if src.IsAdapter() {
		return nil, fmt.Errorf("%s: %w", src.Path, ErrNotModel)
	}
	b := &Base{Path: src.Path, Source: src, Quantized: src.IsQuantized()}
	if o.Config {
		cfg, err := src.Config()
		if err != nil {
			return nil, err
		}
		b.Config = cfg
	}
	return b, nil
}

// Close releases the model's files.
func (b *Base) Close() error { return b.Source.Close() }

// Adapter is an opened PEFT adapter: its config and its tensors analysed
// into modules.
type Adapter struct {
	Path   string
	Source *checkpoint.Source
	// Config is adapter_config.json; nil only for a lenient open of an
	// adapter without one (ranks from the shapes, alpha = r).
	Config *peft.Config
	// Analysis groups the tensors into modules and other tensors.
	Analysis *peft.Adapter
	// Problem is why lorakit cannot apply the adapter, for a lenient open
	// of one that fails validation; nil otherwise.
	Problem error

	once sync.Once
	data map[string][]byte // a stream's tensors, read on first use
	err  error
}

// AdapterOptions say how strict OpenAdapter is.
type AdapterOptions struct {
	// Lenient accepts what can be inspected but not applied: no
	// adapter_config.json (Config is nil) or one that fails validation
	// (Problem says why).
	Lenient bool
	// Validate relaxes the refuse rules of spec peft.md §2.4.
	Validate peft.ValidateOptions
}

// OpenAdapter opens a PEFT adapter (a folder, a .safetensors file or "-"
// read from stdin), parses and validates adapter_config.json and groups the
// tensors into modules. Errors name the path and the key or tensor at fault.
func OpenAdapter(path string, stdin io.Reader, o AdapterOptions) (*Adapter, error) {
	return open(path, stdin, func(src *checkpoint.Source) (*Adapter, error) { return AdapterFrom(src, o) })
}

// AdapterFrom is OpenAdapter for a source already open; on success the
// Adapter owns it.
func AdapterFrom(src *checkpoint.Source, o AdapterOptions) (*Adapter, error) {
	path := src.Path
	if !src.IsAdapter() {
		return nil, fmt.Errorf("%s: %w", path, ErrNotAdapter)
	}
	a := &Adapter{Path: path, Source: src}
	if b, ok := src.Files["adapter_config.json"]; ok {
		cfg, err := peft.Parse(b)
		if err != nil {
			return nil, fmt.Errorf("%s: adapter_config.json: %w", path, err)
		}
		if err := cfg.ValidateWith(o.Validate); err != nil {
			if !o.Lenient {
				return nil, fmt.Errorf("%s: adapter_config.json: %w", path, err)
			}
			a.Problem = err
		}
		a.Config = cfg
	} else if !o.Lenient {
		return nil, fmt.Errorf("%s: %w", path, ErrNoAdapterConfig)
	}
	ts := make([]peft.Tensor, len(src.Tensors))
	for i, t := range src.Tensors {
		ts[i] = peft.Tensor{Name: t.Name, Shape: t.Shape}
	}
	an, err := peft.Analyze(ts, a.Config)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	a.Analysis = an
	return a, nil
}

// Warnings returns the analysis warnings as text.
func (a *Adapter) Warnings() []string {
	var out []string
	for _, w := range a.Analysis.Warnings {
		out = append(out, w.String())
	}
	return out
}

// Info returns the header entry of an adapter tensor.
func (a *Adapter) Info(name string) (safetensors.TensorInfo, bool) { return a.Source.Info(name) }

// Data returns the bytes of an adapter tensor (do not modify them). A
// streamed adapter is read into memory on first use; it is small.
func (a *Adapter) Data(name string) ([]byte, error) {
	if a.Source.Random() {
		return a.Source.Data(name)
	}
	a.once.Do(func() { a.data, a.err = a.Source.LoadAll() })
	if a.err != nil {
		return nil, a.err
	}
	b, ok := a.data[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w: %q", a.Path, safetensors.ErrNotFound, name)
	}
	return b, nil
}

// Float32 returns an adapter tensor as float32 values (a new slice).
func (a *Adapter) Float32(name string) ([]float32, error) {
	b, err := a.Data(name) // reports a missing tensor
	if err != nil {
		return nil, err
	}
	t, _ := a.Info(name)
	out := make([]float32, t.NumElements())
	if err := dtype.ToF32(out, b, t.DType); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", a.Path, name, err)
	}
	return out, nil
}

// Load reads every tensor of the adapter into memory (copies).
func (a *Adapter) Load() (map[string][]byte, error) {
	out := make(map[string][]byte, len(a.Source.Tensors))
	for _, t := range a.Source.Tensors {
		b, err := a.Data(t.Name)
		if err != nil {
			return nil, err
		}
		out[t.Name] = bytes.Clone(b)
	}
	return out, nil
}

// Close releases the adapter's files.
func (a *Adapter) Close() error { return a.Source.Close() }
