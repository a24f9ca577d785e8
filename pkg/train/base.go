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
	Path       string
	Source     *checkpoint.Source
	Checkpoint *arch.Config
	Config     llama.Config
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
	mb, err := model.OpenBase(path, stdin, model.BaseOptions{Config: true})
	if err != nil {
		return nil, err
	}
	b := &Base{Path: path, Source: mb.Source, Checkpoint: mb.Config, Quantized: mb.Quantized,
		in: pipeline.NewInput(mb.Source, pipeline.InputOptions{TempDir: tempDir})}
	if err := b.init(); err != nil {
		mb.Close()
		return nil, err
	}
	return b, nil
}

func (b *Base) init() error {
	src, ck := b.Source, b.Checkpoint
	var err error
	if b.Config, err = LlamaConfig(ck); err != nil {
		return fmt.Errorf("%s: %w", b.Path, err)
	}
	if len(ck.Quantization) > 0 && string(ck.Quantization) != "null" && !b.Quantized {
		return fmt.Errorf("%s: %w: quantization_config without bitsandbytes 4-bit weights", b.Path, ErrModel)
	}
	b.WeightDType = compute.BF16
	for _, t := range src.Tensors {
		if strings.HasSuffix(t.Name, "_proj.weight") || strings.HasSuffix(t.Name, "embed_tokens.weight") || t.Name == "lm_head.weight" {
			if t.DType != dtype.BF16 {
				b.WeightDType = compute.F32
			}
		}
	}
	b.AdapterDType = torchDType(ck.DTypeName)
	if b.Quantized {
		b.WeightDType = compute.F32
		var q struct {
			Compute string `json:"bnb_4bit_compute_dtype"`
		}
		json.Unmarshal(ck.Quantization, &q)
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

// LlamaConfig converts the registry's description of a checkpoint to the
// model's. Architectures whose forward pass needs more than the Llama decoder
// (biases, q/k norms, sliding windows, Gemma's or Phi-3's specifics) are
// refused with an error wrapping arch.ErrUnsupported that names them.
func LlamaConfig(c *arch.Config) (llama.Config, error) {
	if missing := llamaMissing(c); len(missing) > 0 {
		return llama.Config{}, fmt.Errorf("%w: %w: %s (%s): lorakit's model does not compute %s yet",
			ErrModel, arch.ErrUnsupported, c.Arch.ModelType, c.Arch.Name, strings.Join(missing, ", "))
	}
	r := c.Attention[0].Rope
	lc := llama.Config{Hidden: c.Hidden, Intermediate: c.Intermediate, Layers: c.Layers,
		Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim, Vocab: c.Vocab,
		RMSEps: c.NormEps, RopeTheta: r.Theta, TieEmbeddings: c.TiedEmbeddings}
	if r.Type == arch.RopeLlama3 {
		lc.RopeScaling = &llama.RopeScaling{Type: "llama3", Factor: r.Factor, LowFreqFactor: r.LowFreqFactor,
			HighFreqFactor: r.HighFreqFactor, OriginalMaxPositions: r.OriginalMaxPositions}
	}
	if err := lc.Validate(); err != nil {
		return llama.Config{}, err
	}
	return lc, nil
}

// llamaMissing lists what the config needs beyond the Llama decoder.
func llamaMissing(c *arch.Config) []string {
	out := c.Specifics()
	for _, r := range c.Ropes() {
		if r.Type != arch.RopeDefault && r.Type != arch.RopeLlama3 {
			out = append(out, "rope "+r.String())
		}
	}
	return out
}

// info and data read a tensor of the source or of the in-memory stream.
func (b *Base) info(name string) (safetensors.TensorInfo, bool) { return b.Source.Info(name) }

func (b *Base) data(name string) ([]byte, error) { return b.in.Read(name) }

// Loader returns the model's weights as float32, dequantizing 4-bit ones.
func (b *Base) Loader() llama.Loader {
	return func(name string) ([]float32, []int, error) {
		if _, q := b.info(name + nf4.SuffixQuantStateNF4); q || b.has(name+nf4.SuffixQuantStateFP4) {
			out, shape, err := b.in.Dequantize(name)
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
