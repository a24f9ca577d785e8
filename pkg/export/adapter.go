package export

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/gguf"
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/pipeline"
)

// Scaling rules of spec §4.5: how PEFT's per-module scale reaches llama.cpp, which
// applies alpha/r per tensor (r = lora_b rows) or 1 when alpha is 0.
const (
	// RuleAlpha: one alpha for every module, no rsLoRA: adapter.lora.alpha = lora_alpha.
	RuleAlpha = "alpha"
	// RuleRSLoRA: rsLoRA with one rank: adapter.lora.alpha = lora_alpha·√r.
	RuleRSLoRA = "rslora"
	// RuleFolded: anything else: adapter.lora.alpha = 0 and lora_b = s·B.
	RuleFolded = "folded"
)

// AdapterOptions configure PlanAdapter.
type AdapterOptions struct {
	// Type is the type of lora_a and lora_b: F32 (the default, exact), F16 or BF16.
	Type gguf.Type
	// Name is general.name; "" derives it from the input path.
	Name string
}

// Base is what an adapter export needs to know of its base model.
type Base struct {
	// Path names the base in messages.
	Path string
	// GGUF is the registry's mapping of the base onto llama.cpp: its architecture
	// (GGUF.Arch), and where each LoRA module goes and how its tensors are
	// transformed (GGUF.Adapter).
	GGUF *arch.GGUF
	// Shapes maps GGUF tensor names to the HF (row-major) shapes of the base weights,
	// before any vocabulary trim.
	Shapes map[string][]int64
	// Tokens is the vocabulary of the base's GGUF file where the converter trims the
	// embedding (GGUF.TrimVocab): the tokenizer's token count; 0 when unknown.
	Tokens int
}

// BaseFromConfig describes a base model from its config.json as the registry reads
// it. A base llama.cpp cannot run as transformers does is refused (arch.ErrGGUF).
func BaseFromConfig(path string, cfg *arch.Config) (*Base, error) {
	g, err := cfg.GGUF()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b := &Base{Path: path, GGUF: g, Shapes: map[string][]int64{}}
	for _, t := range cfg.Tensors() {
		if len(t.Shape) != 2 {
			continue
		}
		if gname, tr, err := g.TensorName(t.Name); err == nil && tr.Drop == "" {
			b.Shapes[gname] = t.Shape
		}
	}
	return b, nil
}

// OpenBase reads what an adapter export needs from a base model: an HF folder or
// safetensors file (its config.json and tensor headers), a GGUF model, a config.json
// file, or a built-in shape name (see checkpoint.LoadConfig).
func OpenBase(path string) (*Base, error) {
	if path != "-" && gguf.IsFile(path) {
		return baseFromGGUF(path)
	}
	if st, err := os.Stat(path); err == nil && !st.IsDir() && strings.HasSuffix(path, ".json") || err != nil {
		cfg, err := checkpoint.LoadConfig(path)
		if err != nil {
			return nil, err
		}
		return BaseFromConfig(path, cfg)
	}
	mb, err := model.OpenBase(path, nil, model.BaseOptions{Config: true})
	if err != nil {
		return nil, err
	}
	defer mb.Close()
	src, cfg := mb.Source, mb.Config
	b, err := BaseFromConfig(path, cfg)
	if err != nil {
		return nil, err
	}
	// The checkpoint's own embedding and output sizes win over config.json.
	hasOutput := false
	for _, t := range src.Tensors {
		gname, tr, err := b.GGUF.TensorName(t.Name)
		switch {
		case err != nil || len(t.Shape) != 2:
		case gname == "token_embd.weight":
			b.Shapes[gname] = t.Shape
		case gname == "output.weight" && tr.Drop == "":
			b.Shapes[gname], hasOutput = t.Shape, true
		}
	}
	if !hasOutput {
		delete(b.Shapes, "output.weight")
	}
	if b.GGUF.TrimVocab {
		b.Tokens, _ = TokenCount(src.Files)
	}
	return b, nil
}

// baseFromGGUF describes a GGUF model: the config the registry would need is
// rebuilt from its metadata (sizes, head counts, tied output), the shapes are its
// tensors'.
func baseFromGGUF(path string) (*Base, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	md := f.Header.Metadata
	if t, _ := md.String("general.type"); t == "adapter" {
		return nil, fmt.Errorf("%s: %w: --base is a GGUF adapter, not a model", path, ErrInvalid)
	}
	cfg, err := configFromGGUF(md, f.Header.Tensors)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	g, err := cfg.GGUF()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b := &Base{Path: path, GGUF: g, Shapes: map[string][]int64{}}
	for _, t := range f.Header.Tensors {
		if len(t.Shape) == 2 {
			b.Shapes[t.Name] = gguf.ReverseShape(t.Shape)
		}
	}
	if g.TrimVocab {
		b.Tokens = int(b.Shapes["token_embd.weight"][0])
	}
	return b, nil
}

// ggufModelTypes maps the llama.cpp architectures whose adapters can be placed
// from a GGUF file's metadata alone to a model_type of that layout. Gemma 2 and 3
// are missing: the attention scale folded into attn_q (and into an adapter's q
// lora_b) follows query_pre_attn_scalar, which the file does not record.
var ggufModelTypes = map[string]string{"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "phi3": "phi3", "gemma": "gemma"}

// configFromGGUF rebuilds the registry's view of a GGUF model from its metadata.
func configFromGGUF(md gguf.Metadata, tensors []gguf.TensorInfo) (*arch.Config, error) {
	a, _ := md.String("general.architecture")
	mt, ok := ggufModelTypes[a]
	if !ok {
		why := "its architecture is not in lorakit's registry"
		if a == "gemma2" || a == "gemma3" {
			why = "the file does not record query_pre_attn_scalar, whose factor an adapter's q lora_b must carry; give the HF model or its config.json"
		}
		return nil, fmt.Errorf("%w: general.architecture %q as --base: %s", ErrUnsupported, a, why)
	}
	get := func(k string) int {
		v, _ := md.Uint(a + "." + k)
		return int(min(v, 1<<30))
	}
	c := map[string]any{"model_type": mt, "hidden_size": get("embedding_length"), "intermediate_size": get("feed_forward_length"),
		"num_hidden_layers": get("block_count"), "num_attention_heads": get("attention.head_count"),
		"max_position_embeddings": max(get("context_length"), 1), "tie_word_embeddings": true}
	if kv := get("attention.head_count_kv"); kv > 0 {
		c["num_key_value_heads"] = kv
	}
	if hd := get("attention.key_length"); hd > 0 {
		c["head_dim"] = hd
	}
	for _, t := range tensors {
		switch {
		case t.Name == "output.weight":
			c["tie_word_embeddings"] = false
		case t.Name == "token_embd.weight" && len(t.Shape) == 2:
			c["vocab_size"] = t.Shape[1]
		case t.Name == "blk.0.attn_output.bias" && mt == "llama":
			c["attention_bias"] = true
		case t.Name == "blk.0.ffn_down.bias" && mt == "llama":
			c["mlp_bias"] = true
		}
	}
	if heads, rot := get("attention.head_count"), get("rope.dimension_count"); mt == "phi3" && heads > 0 && rot > 0 {
		c["partial_rotary_factor"] = float64(rot) / float64(max(get("attention.key_length"), get("embedding_length")/heads))
	}
	b, _ := json.Marshal(c)
	cfg, err := arch.ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%w: the metadata does not describe a %s model: %w", ErrInvalid, a, err)
	}
	return cfg, nil
}

// PlanAdapter plans the export of a PEFT LoRA adapter to a GGUF LoRA adapter for the
// given base. PEFT's per-module scale (α/r, α/√r with rsLoRA, rank_pattern and
// alpha_pattern) is reproduced exactly by llama.cpp at user scale 1 (spec §4.5); the
// rule applied is in the plan's notes. DoRA adapters are refused (ErrDoRA), as are
// tensors GGUF adapters cannot hold (modules_to_save, biases, trainable tokens).
func PlanAdapter(src *checkpoint.Source, base *Base, o AdapterOptions) (*Plan, error) {
	ma, err := model.AdapterFrom(src, model.AdapterOptions{})
	if err != nil {
		return nil, err
	}
	pc, an := ma.Config, ma.Analysis
	if pc.UseDoRA {
		return nil, doraError(src.Path)
	}
	switch o.Type {
	case gguf.TypeF32, gguf.TypeF16, gguf.TypeBF16:
	default:
		return nil, fmt.Errorf("%w: adapter tensors as %s (llama.cpp's export-lora refuses quantized adapters; use f32, f16 or bf16)", ErrUnsupported, o.Type)
	}
	p := &Plan{Kind: "adapter", Source: src.Path, src: src}
	for _, w := range an.Warnings {
		if w.Code == peft.WarnDoRAMismatch {
			continue
		}
		p.Warnings = append(p.Warnings, w.String())
	}
	if pc.FanInFanOut {
		p.Warnings = append(p.Warnings, "fan_in_fan_out is true, but the projections are nn.Linear (PEFT ignores it); tensors taken as (out, in)")
	}
	for _, ot := range an.Others {
		last := ot.Key.Module[strings.LastIndexByte(ot.Key.Module, '.')+1:]
		if ot.Key.Role == peft.RoleFull && strings.HasSuffix(last, "norm") {
			p.Warnings = append(p.Warnings, fmt.Sprintf("dropped %s: llama.cpp ignores norm tensors in adapters", ot.Key.Name))
			continue
		}
		what := "a full replacement tensor (modules_to_save)"
		switch ot.Key.Role {
		case peft.RoleBias:
			what = "a bias (bias != \"none\")"
		case peft.RoleTrainableTokens:
			what = "trainable tokens"
		case peft.RolePromptEmbeddings:
			what = "prompt embeddings"
		}
		return nil, fmt.Errorf("%s: tensor %q: %w: %s cannot be stored in a GGUF LoRA adapter; merge with lora-merge and export the model", src.Path, ot.Key.Name, ErrUnsupported, what)
	}
	if len(an.Modules) == 0 {
		return nil, fmt.Errorf("%s: %w: no LoRA modules", src.Path, ErrInvalid)
	}
	for _, m := range an.Modules {
		if m.DoRA() {
			return nil, doraError(src.Path)
		}
		switch {
		case m.Kind != peft.KindLinear && m.Kind != peft.KindEmbedding:
			return nil, fmt.Errorf("%s: module %q: %w: %s modules", src.Path, m.Path, ErrUnsupported, m.Kind)
		case m.BBias != "":
			return nil, fmt.Errorf("%s: tensor %q: %w: lora_bias cannot be stored in a GGUF LoRA adapter", src.Path, m.BBias, ErrUnsupported)
		}
	}

	// Scaling rule.
	alpha0, rank0 := an.Modules[0].Alpha, an.Modules[0].Rank
	uniformAlpha, uniformRank := true, true
	for _, m := range an.Modules {
		uniformAlpha = uniformAlpha && m.Alpha == alpha0
		uniformRank = uniformRank && m.Rank == rank0
	}
	rule := RuleFolded
	var metaAlpha float32
	switch {
	case uniformAlpha && alpha0 != 0 && !pc.UseRSLoRA && float32(alpha0) != 0:
		rule, metaAlpha = RuleAlpha, float32(alpha0)
		p.Notes = append(p.Notes, fmt.Sprintf("scaling: adapter.lora.alpha = lora_alpha = %g; llama.cpp applies alpha/r per tensor, as PEFT does", alpha0))
	case uniformAlpha && uniformRank && alpha0 != 0 && pc.UseRSLoRA:
		rule, metaAlpha = RuleRSLoRA, float32(alpha0*math.Sqrt(float64(rank0)))
		p.Notes = append(p.Notes, fmt.Sprintf("scaling: rsLoRA with r = %d: adapter.lora.alpha = %g·√%d = %g, so llama.cpp's alpha/r equals PEFT's alpha/√r", rank0, alpha0, rank0, metaAlpha))
	default:
		why := "per-module alphas (alpha_pattern)"
		switch {
		case uniformAlpha && alpha0 == 0:
			why = "lora_alpha = 0 (llama.cpp would read alpha 0 as scale 1)"
		case pc.UseRSLoRA && !uniformRank:
			why = "rsLoRA with per-module ranks"
		}
		p.Notes = append(p.Notes, fmt.Sprintf("scaling: %s: each lora_b holds s·B with PEFT's scale s folded in; adapter.lora.alpha = 0 (llama.cpp scale 1)", why))
	}

	pos := sourceIndex(src)
	for _, m := range an.Modules {
		at, err := base.GGUF.Adapter(m.Path)
		if err != nil {
			return nil, fmt.Errorf("%s: module %q: %w: %w", src.Path, m.Path, ErrUnsupported, err)
		}
		gname := at.Base
		want := [2]int64{m.Out, m.In}
		if m.Kind == peft.KindEmbedding {
			want = [2]int64{m.In, m.Out}
			if gname != "token_embd.weight" {
				return nil, fmt.Errorf("%s: module %q: %w: embedding LoRA on %s", src.Path, m.Path, ErrUnsupported, gname)
			}
			if _, ok := base.Shapes["output.weight"]; !ok {
				return nil, fmt.Errorf("%s: module %q: %w: LoRA on the embedding, but %s has no output.weight: llama.cpp reuses token_embd as the output layer and would apply the adapter there too", src.Path, m.Path, ErrBase, base.Path)
			}
		}
		if bs, ok := base.Shapes[gname]; !ok {
			return nil, fmt.Errorf("%s: module %q: %w: %s has no tensor %s", src.Path, m.Path, ErrBase, base.Path, gname)
		} else if len(bs) != 2 || bs[0] != want[0] || bs[1] != want[1] {
			return nil, fmt.Errorf("%s: module %q: %w: adapter implies %v, %s has %s %v", src.Path, m.Path, ErrBase, want, base.Path, gname, bs)
		}
		vocab := m.In // the rows of an embedding's lora_a in GGUF
		if at.A.TrimVocab && m.Kind == peft.KindEmbedding {
			if base.Tokens <= 0 {
				return nil, fmt.Errorf("%s: module %q: %w: llama.cpp's %s keeps only the tokenizer's tokens of the embedding, and the base's tokenizer is unknown: give the HF model folder as --base", src.Path, m.Path, ErrBase, base.GGUF.Arch)
			}
			vocab = min(vocab, int64(base.Tokens))
		}
		aInfo, _ := src.Info(m.A)
		bInfo, _ := src.Info(m.B)
		for _, t := range []struct {
			name string
			d    dtype.DType
		}{{m.A, aInfo.DType}, {m.B, bInfo.DType}} {
			if !floatInput(t.d) {
				return nil, fmt.Errorf("%s: tensor %q: %w: dtype %s", src.Path, t.name, ErrUnsupported, t.d)
			}
		}
		r := int64(m.Rank)
		scale := float32(1)
		if rule == RuleFolded {
			scale = m.Scaling
		}
		if at.B.Scale != 0 {
			scale *= at.B.Scale // a factor the base's weight carries too (Gemma 2's attention scale)
		}
		// lora_a: (r, in) → ne [in, r]; for an embedding, A (r, V) transposed → ne [r, V].
		ai := item{deps: []string{m.A}}
		bi := item{deps: []string{m.B}, scale: scale, scaleSet: true}
		var aShape, bShape []int64
		switch {
		case m.Kind == peft.KindEmbedding:
			ai.f32 = transposeLoader(m.A)
			ai.rows, ai.cols = vocab, r
			if vocab < m.In {
				ai.srcRows = m.In
			}
			aShape = []int64{vocab, r}
			bi.from, bi.in, bi.rows, bi.cols = m.B, bInfo.DType, m.Out, r
			bShape = []int64{m.Out, r}
		case m.Transposed: // MLX: A (in, r), B (r, out)
			ai.f32 = transposeLoader(m.A)
			ai.rows, ai.cols = r, m.In
			bi.f32 = transposeLoader(m.B)
			bi.rows, bi.cols = m.Out, r
			aShape, bShape = []int64{r, m.In}, []int64{m.Out, r}
		default:
			ai.from, ai.in, ai.rows, ai.cols = m.A, aInfo.DType, r, m.In
			bi.from, bi.in, bi.rows, bi.cols = m.B, bInfo.DType, m.Out, r
			aShape, bShape = []int64{r, m.In}, []int64{m.Out, r}
		}
		if heads := at.B.PermuteHeads; heads > 0 {
			perm, err := gguf.LlamaQKRowOrder(int(m.Out), heads)
			if err != nil {
				return nil, fmt.Errorf("%s: tensor %q: %w", src.Path, m.B, err)
			}
			bi.perm = perm
		}
		p.add(gguf.TensorInfo{Name: gname + ".lora_a", Type: o.Type, Shape: gguf.ReverseShape(aShape)}, ai, pos)
		p.add(gguf.TensorInfo{Name: gname + ".lora_b", Type: o.Type, Shape: gguf.ReverseShape(bShape)}, bi, pos)
	}
	p.order()

	p.Metadata = append(general(base.GGUF.Arch, "adapter", src, o.Name),
		gguf.KV{Key: "adapter.type", Value: "lora"},
		gguf.KV{Key: "adapter.lora.alpha", Value: metaAlpha})
	if _, err := gguf.NewWriter(discard{}, p.Metadata, p.Tensors); err != nil {
		return nil, fmt.Errorf("%s: %w", src.Path, err)
	}
	return p, nil
}

func doraError(path string) error {
	return fmt.Errorf("%s: %w (llama.cpp has no magnitude vector); merge it into the base first: lora-merge --base M --adapter %s -o merged && lora-gguf merged -o model.gguf", path, ErrDoRA, path)
}

// transposeLoader reads a 2-D source tensor as float32 and transposes it.
func transposeLoader(name string) loader {
	return func(in *pipeline.Input) ([]float32, []int64, error) {
		info, ok := in.Info(name)
		if !ok {
			return nil, nil, fmt.Errorf("%w: source tensor %q not available", ErrInvalid, name)
		}
		data, err := in.Read(name)
		if err != nil {
			return nil, nil, err
		}
		if len(info.Shape) != 2 {
			return nil, nil, fmt.Errorf("%w: tensor %q: shape %v is not 2-D", ErrInvalid, name, info.Shape)
		}
		rows, cols := info.Shape[0], info.Shape[1]
		f := make([]float32, rows*cols)
		if err := dtype.ToF32(f, data, info.DType); err != nil {
			return nil, nil, err
		}
		return num.Transpose(f, int(rows), int(cols)), []int64{cols, rows}, nil
	}
}
