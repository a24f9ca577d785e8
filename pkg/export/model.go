package export

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/gguf"
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/pipeline"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

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

// PlanModel plans the export of a checkpoint of any architecture in the registry
// (folder, single file or stream; bf16/f16/f32 or bitsandbytes 4-bit) to a GGUF model,
// as the registry's GGUF mapping says (arch.Config.GGUF): names, metadata, per-tensor
// transforms, generated tensors. A config llama.cpp cannot be made to compute as
// transformers does is refused with the reason (arch.ErrGGUF); the remedies applied
// and the differences that remain are in the plan's notes. Nothing is read but
// headers and small files; Plan.Write reads the weights.
func PlanModel(src *checkpoint.Source, o ModelOptions) (*Plan, error) {
	mb, err := model.BaseFrom(src, model.BaseOptions{Config: true})
	if err != nil {
		return nil, err
	}
	cfg := mb.Config
	g, err := cfg.GGUF()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.Path, err)
	}
	p := &Plan{Kind: "model", Source: src.Path, src: src}
	p.Notes, p.Warnings = divergenceNotes(g)
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

	// The vocabulary: the embedding's rows, or the tokenizer's tokens where the
	// converter trims the embedding (Gemma 3).
	var embed safetensors.TensorInfo
	for _, t := range src.Tensors {
		if n, ok := cfg.TextName(t.Name); ok && n == "model.embed_tokens.weight" {
			embed = t
		}
	}
	if embed.Name == "" || len(embed.Shape) != 2 {
		return nil, fmt.Errorf("%s: %w: no 2-D model.embed_tokens.weight", src.Path, ErrInvalid)
	}
	n := int(embed.Shape[0])
	if _, q := states[embed.Name]; q {
		return nil, fmt.Errorf("%s: tensor %q: %w: a 4-bit embedding", src.Path, embed.Name, ErrUnsupported)
	}
	if g.TrimVocab && !o.NoVocab {
		if k, ok := TokenCount(src.Files); ok && k < n {
			p.Notes = append(p.Notes, fmt.Sprintf("token_embd trimmed from %d to the tokenizer's %d tokens, as convert_hf_to_gguf.py does", n, k))
			n = k
		}
	}

	type planned struct {
		t  gguf.TensorInfo
		it item
	}
	var out []planned
	names := map[string]int{}
	dropped := map[string][]string{}
	var dropOrder []string
	hasOutput := false
	for _, t := range src.Tensors {
		if stateOf[t.Name] {
			continue
		}
		gname, tr, err := g.TensorName(t.Name)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w: %w", src.Path, t.Name, ErrUnsupported, err)
		}
		if tr.Drop != "" {
			if dropped[tr.Drop] == nil {
				dropOrder = append(dropOrder, tr.Drop)
			}
			dropped[tr.Drop] = append(dropped[tr.Drop], t.Name)
			continue
		}
		if prev, dup := names[gname]; dup {
			return nil, fmt.Errorf("%s: tensor %q: %w: maps to %s like tensor %q", src.Path, t.Name, ErrInvalid, gname, src.Tensors[prev].Name)
		}
		names[gname] = pos[t.Name]
		it := item{deps: []string{t.Name}, add: tr.Add, scale: tr.Scale, scaleSet: tr.Scale != 0}
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
		if err := checkShape(cfg, t.Name, shape, embed.Shape[0]); err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", src.Path, t.Name, err)
		}
		switch len(shape) {
		case 1:
			it.rows, it.cols = 1, shape[0]
		case 2:
			it.rows, it.cols = shape[0], shape[1]
		default:
			return nil, fmt.Errorf("%s: tensor %q: %w: %d dimensions", src.Path, t.Name, ErrUnsupported, len(shape))
		}
		if tr.TrimVocab && int64(n) < it.rows {
			it.srcRows, it.rows = it.rows, int64(n)
			shape = []int64{int64(n), shape[1]}
		}
		if gname == "output.weight" {
			hasOutput = true
		}
		if tr.PermuteHeads > 0 {
			perm, err := gguf.LlamaQKRowOrder(int(shape[0]), tr.PermuteHeads)
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
	for _, why := range dropOrder {
		ts := dropped[why]
		what := ts[0]
		if len(ts) > 1 {
			what = fmt.Sprintf("%d tensors (%s, ...)", len(ts), ts[0])
		}
		p.Notes = append(p.Notes, fmt.Sprintf("dropped %s: %s", what, why))
	}
	if err := checkComplete(src.Path, g, cfg, names); err != nil {
		return nil, err
	}
	if !hasOutput && !cfg.TiedEmbeddings {
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

	for _, x := range g.Extra {
		p.add(gguf.TensorInfo{Name: x.Name, Type: gguf.TypeF32, Shape: []int64{int64(len(x.Data))}},
			item{gen: x.Data, rows: 1, cols: int64(len(x.Data))}, pos)
		p.Notes = append(p.Notes, fmt.Sprintf("%s generated (%d values)", x.Name, len(x.Data)))
	}
	for _, pl := range out {
		p.add(pl.t, pl.it, pos)
	}
	p.order()

	// Vocabulary.
	if cfg.Vocab != int(embed.Shape[0]) {
		p.Warnings = append(p.Warnings, fmt.Sprintf("config.json vocab_size %d differs from the %d token embeddings; using %d", cfg.Vocab, embed.Shape[0], embed.Shape[0]))
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
	kvs := append(general(g.Arch, "model", src, o.Name), gguf.KV{Key: "general.file_type", Value: uint32(ft)})
	if anyQuant {
		kvs = append(kvs, gguf.KV{Key: "general.quantization_version", Value: uint32(gguf.QuantizationVersion)})
	}
	kvs = append(kvs, gguf.KV{Key: g.Arch + ".vocab_size", Value: uint32(n)})
	for _, kv := range g.Metadata {
		kvs = append(kvs, gguf.KV{Key: kv.Key, Value: kv.Value})
	}
	kvs = append(kvs, v.KVs()...)
	p.Metadata = kvs
	if _, err := gguf.NewWriter(discard{}, p.Metadata, p.Tensors); err != nil {
		return nil, fmt.Errorf("%s: %w", src.Path, err)
	}
	return p, nil
}

// divergenceNotes renders what export does about each place where llama.cpp
// computes something other than transformers (refusals stop the export before): a
// capped context is a warning (llama.cpp computes something else beyond it), the
// rest notes.
func divergenceNotes(g *arch.GGUF) (notes, warnings []string) {
	for _, d := range g.Divergences {
		text := fmt.Sprintf("%s (%s): transformers %s, llama.cpp %s: %s", d.Field, d.Remedy, d.Transformers, d.LlamaCpp, d.Action)
		switch d.Remedy {
		case arch.RemedyRefuse:
		case arch.RemedyContext:
			warnings = append(warnings, text)
		default:
			notes = append(notes, text)
		}
	}
	return notes, warnings
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

func floatInput(d dtype.DType) bool {
	return d == dtype.F32 || d == dtype.F16 || d == dtype.BF16 || d == dtype.F64
}

// autoType is BF16 when the checkpoint's weights are bf16, F16 otherwise.
func autoType(src *checkpoint.Source, cfg *arch.Config, states map[string][]string) gguf.Type {
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

// checkShape compares a tensor's shape with the one config.json implies; the
// embedding's and lm_head's rows are the vocabulary, checked against each other
// (embedRows) rather than against vocab_size.
func checkShape(cfg *arch.Config, name string, shape []int64, embedRows int64) error {
	hf, _ := cfg.TextName(name)
	t, ok := cfg.Tensor(hf)
	if !ok {
		return nil
	}
	want := t.Shape
	if t.Role == arch.RoleEmbedding || t.Role == arch.RoleLMHead {
		want = []int64{embedRows, t.Shape[1]}
	}
	if !slices.Equal(shape, want) {
		what := "config.json implies"
		if t.Role == arch.RoleLMHead {
			what = "the embedding and config.json imply"
		}
		return fmt.Errorf("%w: shape %v, %s %v", ErrInvalid, shape, what, want)
	}
	return nil
}

// checkComplete checks that every tensor of the architecture's layout that llama.cpp
// requires is present (lm_head may be missing: llama.cpp then reuses token_embd).
func checkComplete(path string, g *arch.GGUF, cfg *arch.Config, names map[string]int) error {
	for _, t := range cfg.Tensors() {
		if t.Role == arch.RoleLMHead {
			continue
		}
		gname, tr, err := g.TensorName(t.Name)
		if err != nil || tr.Drop != "" {
			continue
		}
		if _, ok := names[gname]; !ok {
			return fmt.Errorf("%s: %w: tensor %s missing (llama.cpp requires %s)", path, ErrInvalid, t.Name, gname)
		}
	}
	return nil
}

// stateShape returns the logical shape of a 4-bit weight: from its packed JSON state
// when the source can be read in any order, else what config.json implies (checked
// against the state when the weight is converted).
func stateShape(src *checkpoint.Source, cfg *arch.Config, weight string, comps []string) ([]int64, error) {
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
	if hf, ok := cfg.TextName(weight); ok {
		if t, ok := cfg.Tensor(hf); ok {
			return t.Shape, nil
		}
	}
	return nil, fmt.Errorf("%s: tensor %q: %w: cannot tell the shape of this 4-bit weight from a stream", src.Path, weight, ErrUnsupported)
}

// nf4Loader dequantizes a bitsandbytes 4-bit weight to float32, rounded through the
// state's dtype as bitsandbytes' dequantize_4bit returns it.
func nf4Loader(weight string) loader {
	return func(in *pipeline.Input) ([]float32, []int64, error) { return in.Dequantize(weight) }
}

// general is the general.* metadata of a GGUF file of llama.cpp architecture a and
// type typ ("model", "adapter") made from src; name "" is derived from its path.
func general(a, typ string, src *checkpoint.Source, name string) []gguf.KV {
	kvs := []gguf.KV{{Key: "general.architecture", Value: a}, {Key: "general.type", Value: typ}}
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
