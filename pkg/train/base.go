package train

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/llama"
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/pipeline"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tokenizer"
)

// Base is an opened base model: its configuration, its weights (read on
// demand through Loader) and its tokenizer.
type Base struct {
	Path   string
	Source *checkpoint.Source
	// Config is the registry's description of the model: arch.ParseConfig
	// of its config.json (the language model of a multimodal wrapper).
	Config *arch.Config
	// Tokenizer is nil when the base carries no tokenizer.json.
	Tokenizer *tokenizer.Tokenizer
	// ChatTemplate is chat_template.jinja when tokenizer_config.json has no
	// template of its own.
	ChatTemplate string
	// Quantized is set for a bitsandbytes 4-bit base: its weights are
	// dequantized (on the CPU) when loaded.
	Quantized bool
	// WeightDType is how the frozen matrices can be held without loss:
	// BF16 when every one of them is stored as BF16, F32 otherwise.
	WeightDType compute.DType
	// AdapterDType is the dtype PEFT moves a fresh adapter to and back
	// (spec §7.6): the base dtype, or bnb_4bit_compute_dtype for 4-bit.
	AdapterDType dtype.DType

	in *pipeline.Input // the weights, read with pread or from a stream in any order
	// stored maps a text-model tensor name to the checkpoint's, where they
	// differ (a multimodal wrapper's language model); text is the inverse.
	stored, text map[string]string
}

// OpenBase opens a base model: a folder, a .safetensors file, or "-"
// (stdin). Weights are read on demand through pipeline.Input: a stream is
// read once, keeping what arrives before the model asks for it in memory up
// to a bound and beyond it in a spill file in os.TempDir().
func OpenBase(path string, stdin io.Reader) (*Base, error) {
	return openBaseIn(path, stdin, "")
}

// openBaseIn is OpenBase with the spill file's folder.
func openBaseIn(path string, stdin io.Reader, tempDir string) (*Base, error) {
	mb, err := model.OpenBase(path, stdin, model.BaseOptions{})
	if err != nil {
		return nil, err
	}
	b := &Base{Path: path, Source: mb.Source, Quantized: mb.Quantized,
		in: pipeline.NewInput(mb.Source, pipeline.InputOptions{TempDir: tempDir})}
	if err := b.init(); err != nil {
		mb.Close()
		return nil, err
	}
	return b, nil
}

// ArchConfig parses the config.json a checkpoint carries with the
// architecture registry.
func ArchConfig(src *checkpoint.Source) (*arch.Config, error) {
	raw, ok := src.Files["config.json"]
	if !ok {
		return nil, fmt.Errorf("%s: %w: no config.json", src.Path, ErrModel)
	}
	cfg, err := arch.ParseConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: config.json: %w", src.Path, err)
	}
	return cfg, nil
}

func (b *Base) init() error {
	src := b.Source
	var err error
	if b.Config, err = ArchConfig(src); err != nil {
		return err
	}
	cfg := b.Config
	if len(cfg.Quantization) > 0 && string(cfg.Quantization) != "null" && !b.Quantized {
		return fmt.Errorf("%s: %w: quantization_config without bitsandbytes 4-bit weights", b.Path, ErrModel)
	}
	b.stored, b.text = map[string]string{}, map[string]string{}
	b.WeightDType = compute.BF16
	for _, t := range src.Tensors {
		name, ok := cfg.TextName(t.Name)
		if !ok {
			continue // a vision tower's or projector's
		}
		if name != t.Name {
			b.stored[name], b.text[t.Name] = t.Name, name
		}
		if ti, ok := cfg.Tensor(name); ok && ti.Role != arch.RoleNorm && !ti.Bias && t.DType != dtype.BF16 {
			b.WeightDType = compute.F32
		}
	}
	b.AdapterDType = torchDType(cfg.DTypeName)
	if b.Quantized {
		b.WeightDType = compute.F32
		var q struct {
			Compute string `json:"bnb_4bit_compute_dtype"`
		}
		json.Unmarshal(cfg.Quantization, &q)
		b.AdapterDType = torchDType(q.Compute)
	}
	if tj, ok := src.Files["tokenizer.json"]; ok {
		tk, err := tokenizer.New(tj, src.Files["tokenizer_config.json"])
		if err != nil {
			return fmt.Errorf("%s: %w", b.Path, err)
		}
		b.Tokenizer = tk
		if _, ok := tk.ChatTemplate("default"); !ok {
			b.ChatTemplate = string(src.Files["chat_template.jinja"])
			if b.ChatTemplate == "" && src.Kind == checkpoint.KindFolder {
				if t, err := os.ReadFile(filepath.Join(b.Path, "chat_template.jinja")); err == nil {
					b.ChatTemplate = string(t)
				}
			}
		}
	}
	return nil
}

// CheckpointName returns the checkpoint's name of a text-model tensor or
// module path ("model.layers.0.self_attn.q_proj" may be
// "model.language_model.layers.0.self_attn.q_proj" in a multimodal
// wrapper), for writing adapters in the base's layout.
func (b *Base) CheckpointName(name string) string {
	if s, ok := b.stored[name]; ok {
		return s
	}
	if s, ok := b.stored[name+".weight"]; ok {
		return strings.TrimSuffix(s, ".weight")
	}
	return name
}

// torchDType maps a config dtype name to the dtype PEFT rounds to.
func torchDType(s string) dtype.DType {
	switch strings.TrimPrefix(s, "torch.") {
	case "bfloat16":
		return dtype.BF16
	case "float16":
		return dtype.F16
	}
	return dtype.F32
}

// Close releases the checkpoint.
func (b *Base) Close() error {
	b.in.Close()
	return b.Source.Close()
}

// info and data read a tensor of the source or of the in-memory stream, by
// its text-model name.
func (b *Base) info(name string) (safetensors.TensorInfo, bool) {
	return b.Source.Info(b.storedName(name))
}

func (b *Base) data(name string) ([]byte, error) { return b.in.Read(b.storedName(name)) }

// storedName is the checkpoint's name of a text-model tensor.
func (b *Base) storedName(name string) string {
	if s, ok := b.stored[name]; ok {
		return s
	}
	return name
}

// Loader returns the model's weights as float32, dequantizing 4-bit ones.
func (b *Base) Loader() llama.Loader {
	return func(name string) ([]float32, []int, error) {
		if _, q := b.info(name + nf4.SuffixQuantStateNF4); q || b.has(name+nf4.SuffixQuantStateFP4) {
			out, shape, err := b.in.Dequantize(b.storedName(name))
			return out, shapeInts(shape), err
		}
		t, ok := b.info(name)
		if !ok {
			return nil, nil, fmt.Errorf("%s: %q: %w", b.Path, name, llama.ErrNotFound)
		}
		raw, err := b.data(name)
		if err != nil {
			return nil, nil, err
		}
		if !t.DType.IsFloat() || t.DType.Size() == 0 {
			return nil, nil, fmt.Errorf("%s: tensor %q: %w: dtype %s", b.Path, name, llama.ErrWeight, t.DType)
		}
		out := make([]float32, t.NumElements())
		if err := dtype.ToF32(out, raw, t.DType); err != nil {
			return nil, nil, fmt.Errorf("%s: tensor %q: %w", b.Path, name, err)
		}
		return out, shapeInts(t.Shape), nil
	}
}

func (b *Base) has(name string) bool {
	_, ok := b.info(name)
	return ok
}

// raw returns a checkpoint tensor as stored, for pkg/nf4's parsers.
func (b *Base) raw(name string) (nf4.Tensor, bool) {
	t, ok := b.info(name)
	if !ok {
		return nf4.Tensor{}, false
	}
	d, err := b.data(name)
	if err != nil {
		return nf4.Tensor{}, false
	}
	return nf4.Tensor{DType: t.DType, Shape: t.Shape, Data: d}, true
}

func shapeInts(s []int64) []int {
	out := make([]int, len(s))
	for i, d := range s {
		out[i] = int(d)
	}
	return out
}

// NewModel builds the model on be with the base weights. An unset
// opt.Precision is "auto" (ResolvePrecision): bf16 mixed precision on a GPU
// with bf16 tensor cores, f32 elsewhere.
func (b *Base) NewModel(be compute.Backend, opt llama.Options) (*llama.Model, error) {
	if opt.Precision == "" {
		var err error
		if opt.Precision, err = ResolvePrecision(be, "auto"); err != nil {
			return nil, err
		}
	}
	if opt.WeightDType == 0 {
		opt.WeightDType = b.WeightDType
		if opt.Precision == llama.PrecisionBF16 {
			opt.WeightDType = compute.BF16 // autocast rounds the weights of an f32 base too
		}
	}
	if b.Quantized && opt.Quantized == nil {
		// QLoRA: projections stay 4-bit on the backend and are dequantized
		// just before use; Loader still serves every other tensor.
		opt.Quantized = llama.NF4Loader(b.raw)
	}
	m, err := llama.New(be, b.Config, b.Loader(), opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Path, err)
	}
	return m, nil
}
