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
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/peft"
)

// Adapter is an opened PEFT adapter, validated and analysed, ready to merge
// with its weight.
type Adapter struct {
	*model.Adapter
	Weight float64 // --weight; 1 by default
}

// AdapterOptions relax the refuse rules of spec peft.md §2.4.
type AdapterOptions struct {
	// AllowMutatedBase accepts PiSSA/OLoRA/CorDA/LoftQ/LoRA-GA adapters:
	// the caller states the base is the mutated one (§7.8).
	AllowMutatedBase bool
}

// OpenAdapter opens a PEFT adapter (folder, file or "-" read from stdin)
// with model.OpenAdapter and checks that it can be merged. Adapters lorakit
// cannot merge correctly are refused with an error naming the key or tensor.
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
	ma, err := model.AdapterFrom(src, model.AdapterOptions{
		Validate: peft.ValidateOptions{AllowMutatedBase: o.AllowMutatedBase, AllowIA3: true}})
	if err != nil {
		return nil, err
	}
	a := &Adapter{Adapter: ma, Weight: weight}
	path, an := a.Path, a.Analysis
	for _, t := range src.Tensors {
		if !adapterDType(t.DType) {
			return nil, fmt.Errorf("%s: tensor %q: dtype %s: %w: adapter tensors must be F32, BF16, F16 or F64", path, t.Name, t.DType, ErrUnsupported)
		}
	}
	if len(an.Modules) == 0 && len(an.Others) == 0 {
		return nil, fmt.Errorf("%s: %w: the adapter holds no tensors", path, ErrMismatch)
	}
	for _, m := range an.Modules {
		if m.Kind == peft.KindAdaLoRA {
			return nil, fmt.Errorf("%s: tensor %q: %w: AdaLoRA modules", path, m.A, ErrUnsupported)
		}
		if (m.Kind == peft.KindIA3) != (a.Config.PeftType == peft.TypeIA3) {
			return nil, fmt.Errorf("%s: tensor %q: %w: %s module in a %s adapter", path, firstName(m), ErrUnsupported, m.Kind, a.Config.PeftType)
		}
	}
	for _, ot := range an.Others {
		if ot.Key.Role == peft.RolePromptEmbeddings {
			return nil, fmt.Errorf("%s: tensor %q: %w: prompt learning cannot be merged into weights", path, ot.Key.Name, ErrUnsupported)
		}
	}
	return a, nil
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
