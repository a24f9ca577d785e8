package merge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// Adapter is an opened PEFT adapter, validated and analysed, ready to merge.
type Adapter struct {
	Path     string
	Weight   float64 // --weight; 1 by default
	Config   *peft.Config
	Analysis *peft.Adapter

	src   *checkpoint.Source
	infos map[string]safetensors.TensorInfo
	data  map[string][]byte // every tensor, when src is a stream
}

// AdapterOptions relax the refuse rules of spec peft.md §2.4.
type AdapterOptions struct {
	// AllowMutatedBase accepts PiSSA/OLoRA/CorDA/LoftQ/LoRA-GA adapters:
	// the caller states the base is the mutated one (§7.8).
	AllowMutatedBase bool
}

// OpenAdapter opens a PEFT adapter (folder, file or "-" read from stdin),
// parses and validates its adapter_config.json and groups its tensors into
// modules. Adapters lorakit cannot merge correctly are refused with an
// error naming the key or tensor.
func OpenAdapter(path string, stdin io.Reader, weight float64, o AdapterOptions) (*Adapter, error) {
	if math.IsNaN(weight) || math.IsInf(weight, 0) {
		return nil, fmt.Errorf("%s: weight %v is not finite: %w", path, weight, ErrUnsupported)
	}
	src, err := checkpoint.Open(path, stdin)
	if err != nil {
		return nil, err
	}
	a, err := newAdapter(src, weight, o)
	if err != nil {
		src.Close()
		return nil, err
	}
	return a, nil
}

func newAdapter(src *checkpoint.Source, weight float64, o AdapterOptions) (*Adapter, error) {
	path := src.Path
	a := &Adapter{Path: path, Weight: weight, src: src, infos: map[string]safetensors.TensorInfo{}}
	for _, t := range src.Tensors { // Source.Info is not safe for concurrent use
		a.infos[t.Name] = t
	}
	cb, ok := src.Files["adapter_config.json"]
	if !ok {
		if !src.IsAdapter() {
			return nil, fmt.Errorf("%s: %w: this is a model, not an adapter", path, ErrNoConfig)
		}
		return nil, fmt.Errorf("%s: %w (alpha, hence the scaling, is unknown)", path, ErrNoConfig)
	}
	cfg, err := peft.Parse(cb)
	if err != nil {
		return nil, fmt.Errorf("%s: adapter_config.json: %w", path, err)
	}
	if err := cfg.ValidateWith(peft.ValidateOptions{AllowMutatedBase: o.AllowMutatedBase, AllowIA3: true}); err != nil {
		return nil, fmt.Errorf("%s: adapter_config.json: %w", path, err)
	}
	a.Config = cfg
	ts := make([]peft.Tensor, len(src.Tensors))
	for i, t := range src.Tensors {
		ts[i] = peft.Tensor{Name: t.Name, Shape: t.Shape}
		if !adapterDType(t.DType) {
			return nil, fmt.Errorf("%s: tensor %q: dtype %s: %w: adapter tensors must be F32, BF16, F16 or F64", path, t.Name, t.DType, ErrUnsupported)
		}
	}
	an, err := peft.Analyze(ts, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	a.Analysis = an
	if len(an.Modules) == 0 && len(an.Others) == 0 {
		return nil, fmt.Errorf("%s: %w: the adapter holds no tensors", path, ErrMismatch)
	}
	for _, m := range an.Modules {
		if m.Kind == peft.KindAdaLoRA {
			return nil, fmt.Errorf("%s: tensor %q: %w: AdaLoRA modules", path, m.A, ErrUnsupported)
		}
		if (m.Kind == peft.KindIA3) != (cfg.PeftType == peft.TypeIA3) {
			return nil, fmt.Errorf("%s: tensor %q: %w: %s module in a %s adapter", path, firstName(m), ErrUnsupported, m.Kind, cfg.PeftType)
		}
	}
	for _, ot := range an.Others {
		if ot.Key.Role == peft.RolePromptEmbeddings {
			return nil, fmt.Errorf("%s: tensor %q: %w: prompt learning cannot be merged into weights", path, ot.Key.Name, ErrUnsupported)
		}
	}
	if !src.Random() {
		if a.data, err = src.LoadAll(); err != nil {
			return nil, err
		}
	} else if err := warm(src); err != nil {
		return nil, err
	}
	return a, nil
}

// warm builds the lazy name indexes of a file-backed source's headers, so
// that Data can then be called from several goroutines (the indexes are
// built on first use without a lock).
func warm(src *checkpoint.Source) error {
	for _, sh := range src.Shards {
		if len(sh.Tensors) > 0 {
			if _, err := src.Data(sh.Tensors[0].Name); err != nil {
				return err
			}
		}
	}
	return nil
}

func firstName(m peft.Module) string {
	if m.IA3 != "" {
		return m.IA3
	}
	return m.A
}

func adapterDType(d dtype.DType) bool {
	return d == dtype.F32 || d == dtype.BF16 || d == dtype.F16 || d == dtype.F64
}

// Close releases the adapter's files.
func (a *Adapter) Close() error { return a.src.Close() }

// Warnings returns the analysis warnings as text.
func (a *Adapter) Warnings() []string {
	var out []string
	for _, w := range a.Analysis.Warnings {
		out = append(out, w.String())
	}
	return out
}

// info returns the header entry of an adapter tensor.
func (a *Adapter) info(name string) (safetensors.TensorInfo, error) {
	t, ok := a.infos[name]
	if !ok {
		return t, fmt.Errorf("%s: %w: %q", a.Path, safetensors.ErrNotFound, name)
	}
	return t, nil
}

// Tensor returns the header entry and the bytes of an adapter tensor (a
// view of the mapped file or of the stream's copy: do not modify). It is
// safe for concurrent use.
func (a *Adapter) Tensor(name string) (safetensors.TensorInfo, []byte, error) {
	t, err := a.info(name)
	if err != nil {
		return t, nil, err
	}
	if a.data != nil {
		return t, a.data[name], nil
	}
	b, err := a.src.Data(name)
	return t, b, err
}

// float32s returns an adapter tensor as float32 values (a new slice).
func (a *Adapter) float32s(name string) ([]float32, error) {
	t, b, err := a.Tensor(name)
	if err != nil {
		return nil, err
	}
	out := make([]float32, t.NumElements())
	if err := dtype.ToF32(out, b, t.DType); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", a.Path, name, err)
	}
	return out, nil
}

// tokenIndices resolves trainable_token_indices for the embedding module
// (a list applies to the input embedding; an object maps module names, or
// their last segments, to lists).
func (a *Adapter) tokenIndices(module string) ([]int64, error) {
	raw := bytes.TrimSpace(a.Config.TrainableTokenIndices)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, fmt.Errorf("%s: key %q: %w: trainable_tokens_delta without indices", a.Path, "trainable_token_indices", ErrUnsupported)
	}
	var list []int64
	if raw[0] == '[' {
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, fmt.Errorf("%s: key %q: %w: %v", a.Path, "trainable_token_indices", peft.ErrInvalidConfig, err)
		}
		return list, nil
	}
	var m map[string][]int64
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: key %q: %w: %v", a.Path, "trainable_token_indices", peft.ErrInvalidConfig, err)
	}
	for k, v := range m {
		if module == k || strings.HasSuffix(module, "."+k) {
			return v, nil
		}
	}
	return nil, fmt.Errorf("%s: key %q: %w: no indices for module %q", a.Path, "trainable_token_indices", ErrUnsupported, module)
}
