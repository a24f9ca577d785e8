package export

import (
	"cmp"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/gguf"
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/pipeline"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// Architecture is the general.architecture lorakit writes.
const Architecture = "llama"

// ModelOptions configure PlanModel.
type ModelOptions struct {
	// Type is the type of the 2-D weights: F32, F16, BF16, Q8_0 or Q4_0. 1-D tensors
	// and norms are always F32.
	Type gguf.Type
	// Auto picks Type from the checkpoint instead: BF16 when its weights are bf16,
	// else F16 (what convert_hf_to_gguf.py's --outtype auto does).
	Auto bool
	// Name is general.name; "" derives it from the input path.
	Name string
	// NoVocab writes a vocabulary-less file (tokenizer.ggml.model "no_vocab").
	NoVocab bool
	// Pre names tokenizer.ggml.pre when the pre-tokenizer regex is not recognised.
	Pre string
}

// modelTypes maps config.json model_type to what lorakit exports as "llama".
var modelTypes = map[string]bool{"llama": true, "mistral": true}

// PlanModel plans the export of a Llama-family checkpoint (folder, single file or
// stream; bf16/f16/f32 or bitsandbytes 4-bit) to a GGUF model. Nothing is read but
// headers and small files; Plan.Write reads the weights.
func PlanModel(src *checkpoint.Source, o ModelOptions) (*Plan, error) {
	mb, err := model.BaseFrom(src, model.BaseOptions{Config: true})
	if err != nil {
		return nil, err
	}
	cfg := mb.Config
	if !modelTypes[cfg.ModelType] {
		return nil, fmt.Errorf("%s: %w: model_type %q (GGUF export supports llama and mistral)", src.Path, ErrUnsupported, cfg.ModelType)
	}
	if cfg.MaxPositionEmbeddings <= 0 {
		return nil, fmt.Errorf("%s: config.json: %w: max_position_embeddings missing (llama.context_length is required)", src.Path, ErrInvalid)
	}
	p := &Plan{Kind: "model", Source: src.Path, src: src}
	pos := sourceIndex(src)

	// 4-bit weights: group each packed weight with its quant-state tensors.
	states := map[string][]string{}
	stateOf := map[string]bool{}
	for _, t := range src.Tensors {
		if w, _, ok := nf4.SplitStateKey(t.Name); ok {
			states[w] = append(states[w], t.Name)
			stateOf[t.Name] = true
		}
	}

	typ := o.Type
	if o.Auto {
		typ = autoType(src, cfg, states)
	}
	if !gguf.CanQuantize(typ) || typ.BlockSize() == 0 {
		return nil, fmt.Errorf("%w: output type %s (want F32, F16, BF16, Q8_0 or Q4_0)", ErrUnsupported, typ)
	}

	type planned struct {
		t  gguf.TensorInfo
		it item
	}
	var out []planned
	names := map[string]int{}
	var embedRows int64 = -1
	hasOutput := false
	for _, t := range src.Tensors {
		if stateOf[t.Name] {
			continue
		}
		gname, err := gguf.LlamaTensorName(t.Name)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w: not part of a Llama model (%v)", src.Path, t.Name, ErrUnsupported, err)
		}
		if gname == "" {
			p.Notes = append(p.Notes, fmt.Sprintf("dropped %s (rotary cache)", t.Name))
			continue
		}
		if gname == "output.weight" && cfg.TieWordEmbeddings {
			p.Notes = append(p.Notes, "dropped lm_head.weight: tie_word_embeddings (llama.cpp reuses token_embd)")
			continue
		}
		if prev, dup := names[gname]; dup {
			return nil, fmt.Errorf("%s: tensor %q: %w: maps to %s like tensor %q", src.Path, t.Name, ErrInvalid, gname, src.Tensors[prev].Name)
		}
		names[gname] = pos[t.Name]
		it := item{deps: []string{t.Name}}
		shape := t.Shape
		if comps, quantized := states[t.Name]; quantized {
			shape, err = stateShape(src, cfg, t.Name, comps)
			if err != nil {
				return nil, err
			}
			it.deps = append(it.deps, comps...)
			it.f32 = nf4Loader(t.Name)
		} else {
			if !floatInput(t.DType) {
				return nil, fmt.Errorf("%s: tensor %q: %w: dtype %s", src.Path, t.Name, ErrUnsupported, t.DType)
			}
			it.from, it.in = t.Name, t.DType
		}
		if want, ok := expectedShape(cfg, t.Name); ok && !equalShape(shape, want) {
			return nil, fmt.Errorf("%s: tensor %q: %w: shape %v, config.json implies %v", src.Path, t.Name, ErrInvalid, shape, want)
		}
		switch len(shape) {
		case 1:
			it.rows, it.cols = 1, shape[0]
		case 2:
			it.rows, it.cols = shape[0], shape[1]
		default:
			return nil, fmt.Errorf("%s: tensor %q: %w: %d dimensions", src.Path, t.Name, ErrUnsupported, len(shape))
		}
		switch gname {
		case "token_embd.weight":
			embedRows = shape[0]
		case "output.weight":
			hasOutput = true
		}
		if heads := qkHeads(gname, cfg); heads > 0 {
			perm, err := gguf.LlamaQKRowOrder(int(shape[0]), heads)
			if err != nil {
				return nil, fmt.Errorf("%s: tensor %q: %w", src.Path, t.Name, err)
			}
			it.perm = perm
			if len(shape) == 1 { // a bias: one value per row
				it.rows, it.cols = shape[0], 1
			}
		}
		out = append(out, planned{gguf.TensorInfo{Name: gname, Shape: gguf.ReverseShape(shape)}, it})
	}
	if embedRows < 0 {
		return nil, fmt.Errorf("%s: %w: no model.embed_tokens.weight", src.Path, ErrInvalid)
	}
	if err := checkComplete(src.Path, cfg, names); err != nil {
		return nil, err
	}
	if !hasOutput && !cfg.TieWordEmbeddings {
		p.Warnings = append(p.Warnings, "no lm_head.weight although tie_word_embeddings is false: llama.cpp will use token_embd as the output layer")
	}

	// Tensor types (spec §3.3, §3.8).
	anyQuant := false
	for i := range out {
		t := &out[i].t
		t.Type = typ
		if len(t.Shape) < 2 || strings.HasSuffix(t.Name, "_norm.weight") {
			t.Type = gguf.TypeF32
			continue
		}
		if typ == gguf.TypeQ4_0 && (t.Name == "output.weight" || t.Name == "token_embd.weight" && !hasOutput) {
			t.Type = gguf.TypeQ8_0
			p.Notes = append(p.Notes, fmt.Sprintf("%s kept Q8_0 (llama-quantize uses Q6_K here, which lorakit does not write)", t.Name))
		}
		if bs := t.Type.BlockSize(); t.Shape[0]%bs != 0 {
			p.Notes = append(p.Notes, fmt.Sprintf("%s stays F16: rows of %d values are not a multiple of %s's block of %d", t.Name, t.Shape[0], t.Type, bs))
			t.Type = gguf.TypeF16
		}
		anyQuant = anyQuant || t.Type.IsQuantized()
	}

	if cfg.RopeScaling != nil && cfg.RopeScaling.Type == "llama3" {
		f := Llama3RopeFactors(cfg.RopeTheta, cfg.HeadDim, cfg.RopeScaling)
		p.add(gguf.TensorInfo{Name: RopeFreqsName, Type: gguf.TypeF32, Shape: []int64{int64(len(f))}},
			item{gen: f, rows: 1, cols: int64(len(f))}, pos)
		p.Notes = append(p.Notes, fmt.Sprintf("llama3 rope scaling written as %s (factor %g, original context %d)",
			RopeFreqsName, cfg.RopeScaling.Factor, cfg.RopeScaling.OriginalMaxPositionEmbeddings))
	}
	for _, pl := range out {
		p.add(pl.t, pl.it, pos)
	}
	p.order()

	// Vocabulary.
	n := int(embedRows)
	if cfg.VocabSize != n {
		p.Warnings = append(p.Warnings, fmt.Sprintf("config.json vocab_size %d differs from the %d token embeddings; using %d", cfg.VocabSize, n, n))
	}
	var v *Vocab
	if o.NoVocab {
		v = NoVocab(n)
	} else if v, err = ReadVocab(src.Files, n, o.Pre); err != nil {
		return nil, fmt.Errorf("%s: %w", src.Path, err)
	}
	p.Vocab = v
	p.Warnings = append(p.Warnings, v.Warnings...)

	ft, _ := gguf.FileTypeOf(typ)
	kvs := append(general("model", src, o.Name), gguf.KV{Key: "general.file_type", Value: uint32(ft)})
	if anyQuant {
		kvs = append(kvs, gguf.KV{Key: "general.quantization_version", Value: uint32(gguf.QuantizationVersion)})
	}
	a := Architecture + "."
	kvs = append(kvs,
		gguf.KV{Key: a + "vocab_size", Value: uint32(n)},
		gguf.KV{Key: a + "context_length", Value: uint32(cfg.MaxPositionEmbeddings)},
		gguf.KV{Key: a + "embedding_length", Value: uint32(cfg.HiddenSize)},
		gguf.KV{Key: a + "block_count", Value: uint32(cfg.NumLayers)},
		gguf.KV{Key: a + "feed_forward_length", Value: uint32(cfg.IntermediateSize)},
		gguf.KV{Key: a + "attention.head_count", Value: uint32(cfg.NumHeads)},
		gguf.KV{Key: a + "attention.head_count_kv", Value: uint32(cfg.NumKVHeads)},
		gguf.KV{Key: a + "attention.layer_norm_rms_epsilon", Value: float32(cfg.RMSNormEps)},
		gguf.KV{Key: a + "rope.freq_base", Value: float32(cfg.RopeTheta)},
		gguf.KV{Key: a + "rope.dimension_count", Value: uint32(cfg.HeadDim)},
	)
	if cfg.HeadDim*cfg.NumHeads != cfg.HiddenSize {
		kvs = append(kvs,
			gguf.KV{Key: a + "attention.key_length", Value: uint32(cfg.HeadDim)},
			gguf.KV{Key: a + "attention.value_length", Value: uint32(cfg.HeadDim)})
	}
	kvs = append(kvs, v.KVs()...)
	p.Metadata = kvs
	if _, err := gguf.NewWriter(discard{}, p.Metadata, p.Tensors); err != nil {
		return nil, fmt.Errorf("%s: %w", src.Path, err)
	}
	return p, nil
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

func floatInput(d dtype.DType) bool {
	return d == dtype.F32 || d == dtype.F16 || d == dtype.BF16 || d == dtype.F64
}

// autoType is BF16 when the checkpoint's weights are bf16, F16 otherwise.
func autoType(src *checkpoint.Source, cfg *checkpoint.Config, states map[string][]string) gguf.Type {
	bf, other := 0, 0
	for _, t := range src.Tensors {
		if len(t.Shape) != 2 || !floatInput(t.DType) {
			continue
		}
		if _, q := states[t.Name]; q {
			continue
		}
		if t.DType == dtype.BF16 {
			bf++
		} else {
			other++
		}
	}
	if bf > 0 && other == 0 || bf == 0 && other == 0 && cfg.DType == "bfloat16" {
		return gguf.TypeBF16
	}
	return gguf.TypeF16
}

// qkHeads returns the head count to permute a GGUF tensor's rows with, or 0.
func qkHeads(gname string, cfg *checkpoint.Config) int {
	switch {
	case strings.HasSuffix(gname, ".attn_q.weight"), strings.HasSuffix(gname, ".attn_q.bias"):
		return cfg.NumHeads
	case strings.HasSuffix(gname, ".attn_k.weight"), strings.HasSuffix(gname, ".attn_k.bias"):
		return cfg.NumKVHeads
	}
	return 0
}

// expectedShape is the HF shape config.json implies for a Llama tensor.
func expectedShape(cfg *checkpoint.Config, hf string) ([]int64, bool) {
	d, i := int64(cfg.HiddenSize), int64(cfg.IntermediateSize)
	q, kv := int64(cfg.NumHeads*cfg.HeadDim), int64(cfg.NumKVHeads*cfg.HeadDim)
	switch hf {
	case "model.norm.weight":
		return []int64{d}, true
	case "model.embed_tokens.weight", "lm_head.weight":
		return nil, false // rows are the vocabulary, checked against each other
	}
	rest, ok := strings.CutPrefix(hf, "model.layers.")
	if !ok {
		return nil, false
	}
	_, suffix, _ := strings.Cut(rest, ".")
	switch suffix {
	case "input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.o_proj.bias", "mlp.down_proj.bias":
		return []int64{d}, true
	case "self_attn.q_proj.weight":
		return []int64{q, d}, true
	case "self_attn.k_proj.weight", "self_attn.v_proj.weight":
		return []int64{kv, d}, true
	case "self_attn.o_proj.weight":
		return []int64{d, q}, true
	case "mlp.gate_proj.weight", "mlp.up_proj.weight":
		return []int64{i, d}, true
	case "mlp.down_proj.weight":
		return []int64{d, i}, true
	case "self_attn.q_proj.bias":
		return []int64{q}, true
	case "self_attn.k_proj.bias", "self_attn.v_proj.bias":
		return []int64{kv}, true
	case "mlp.gate_proj.bias", "mlp.up_proj.bias":
		return []int64{i}, true
	}
	return nil, false
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkComplete checks that every tensor llama.cpp requires is present, and that no
// layer beyond num_hidden_layers is.
func checkComplete(path string, cfg *checkpoint.Config, names map[string]int) error {
	need := []string{"token_embd.weight", "output_norm.weight"}
	for l := 0; l < cfg.NumLayers; l++ {
		for _, s := range []string{"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"} {
			need = append(need, "blk."+strconv.Itoa(l)+"."+s+".weight")
		}
	}
	for _, n := range need {
		if _, ok := names[n]; !ok {
			return fmt.Errorf("%s: %w: tensor %s missing (llama.cpp requires it)", path, ErrInvalid, n)
		}
	}
	for n := range names {
		if rest, ok := strings.CutPrefix(n, "blk."); ok {
			l, _, _ := strings.Cut(rest, ".")
			if k, err := strconv.Atoi(l); err != nil || k >= cfg.NumLayers {
				return fmt.Errorf("%s: %w: tensor %s beyond num_hidden_layers = %d", path, ErrInvalid, n, cfg.NumLayers)
			}
		}
	}
	return nil
}

// stateShape returns the logical shape of a 4-bit weight: from its packed JSON state
// when the source can be read in any order, else what config.json implies (checked
// against the state when the weight is converted).
func stateShape(src *checkpoint.Source, cfg *checkpoint.Config, weight string, comps []string) ([]int64, error) {
	if src.Random() {
		for _, c := range comps {
			if _, suffix, _ := nf4.SplitStateKey(c); suffix == nf4.SuffixQuantStateNF4 || suffix == nf4.SuffixQuantStateFP4 {
				b, err := src.Data(c)
				if err != nil {
					return nil, err
				}
				qs, err := nf4.ParseStateJSON(b)
				if err != nil {
					return nil, fmt.Errorf("%s: tensor %q: %w", src.Path, c, err)
				}
				return qs.Shape, nil
			}
		}
		return nil, fmt.Errorf("%s: tensor %q: %w: 4-bit weight without a quant_state tensor", src.Path, weight, nf4.ErrMissing)
	}
	if want, ok := expectedShape(cfg, weight); ok {
		return want, nil
	}
	return nil, fmt.Errorf("%s: tensor %q: %w: cannot tell the shape of this 4-bit weight from a stream", src.Path, weight, ErrUnsupported)
}

// nf4Loader dequantizes a bitsandbytes 4-bit weight to float32, rounded through the
// state's dtype as bitsandbytes' dequantize_4bit returns it.
func nf4Loader(weight string) loader {
	return func(in *pipeline.Input) ([]float32, []int64, error) { return in.Dequantize(weight) }
}

// general is the general.* metadata of a GGUF file of type typ ("model",
// "adapter") made from src; name "" is derived from its path.
func general(typ string, src *checkpoint.Source, name string) []gguf.KV {
	kvs := []gguf.KV{{Key: "general.architecture", Value: Architecture}, {Key: "general.type", Value: typ}}
	if name = cmp.Or(name, defaultName(src)); name != "" {
		kvs = append(kvs, gguf.KV{Key: "general.name", Value: name})
	}
	return kvs
}

// defaultName derives general.name from the input path: a folder's name, or a file's
// name without extensions (its folder's name for model.safetensors and shards).
func defaultName(src *checkpoint.Source) string {
	if src.Path == "-" || src.Path == "" {
		return ""
	}
	p := filepath.Clean(src.Path)
	if src.Kind == checkpoint.KindFolder {
		return filepath.Base(p)
	}
	base := safetensors.TrimCompression(filepath.Base(p))
	base = strings.TrimSuffix(base, ".safetensors")
	if base == "model" || base == "adapter_model" || strings.HasPrefix(base, "model-0") {
		if dir := filepath.Base(filepath.Dir(p)); dir != "." && dir != "/" {
			return dir
		}
	}
	return base
}
