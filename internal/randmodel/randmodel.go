// Package randmodel makes random checkpoints of any architecture in the
// registry (pkg/arch), with a tokenizer that fits their vocabulary, and
// PEFT adapters for them, from a seed: the one generator behind the tests,
// the benchmarks (e.g. `go run ./tools/genmodel -o DIR` for the ~1 GB model
// of the speed figures) and `make demo`'s model. The values are a pure
// function of the seed, the shape and the tensor's position, so the same
// Config gives the same bytes in any order and on any number of cores.
//
// The tensors are the registry's (arch.Config.Tensors) for the config.json
// the Config describes (ConfigJSON): every projection, bias, norm, q/k norm,
// sandwich norm and fused module of the architecture. Weights are normal.
// With Std set every matrix has that standard deviation (0.02 is the usual
// initializer range); with Std 0 the model is initialised to be trained:
// embeddings N(0, 1) and every projection and bias N(0, 1/fan_in). Norm
// weights are the identity of the architecture's norm (1 for w·x, 0 for
// Gemma's (1+w)·x), plus N(0, NormStd) when NormStd is set.
package randmodel

import (
	"cmp"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/output"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// Config describes the model. HeadDim 0 means Hidden/Heads; KVHeads 0 means
// Heads.
type Config struct {
	// ModelType is the architecture: a model_type of the registry ("": llama).
	ModelType                                                    string
	Hidden, Intermediate, Layers, Heads, KVHeads, HeadDim, Vocab int
	// DType stores the weights: F32, BF16 or F16 ("" is F32).
	DType dtype.DType
	// Shards splits the model into that many files of about equal size (0
	// or 1: one file).
	Shards int
	Seed   uint64
	// Std is the standard deviation of every matrix; 0 initialises for
	// training (see the package documentation).
	Std float64
	// EmbedStd is the standard deviation of the embedding (0: Std, or 1
	// when Std is 0).
	EmbedStd float64
	// NormStd is the standard deviation of the norm weights around their
	// identity (0: exactly the identity).
	NormStd float64
	// ZeroRows zeroes the first rows of every projection (all-zero blocks).
	ZeroRows int
	// Tied ties lm_head to the embedding (no lm_head.weight).
	Tied bool
	// MaxPositions is max_position_embeddings (0: 2048); RopeTheta 0 is
	// 10000; RMSEps 0 is 1e-5.
	MaxPositions int
	RopeTheta    float64
	RMSEps       float64
	// Extra sets config.json keys beyond the generated ones, or replaces
	// them (a nil value removes a key): attention_bias, sliding_window,
	// layer_types, rope_scaling, query_pre_attn_scalar, soft-caps, ... For a
	// multimodal wrapper (gemma3) they go into text_config.
	Extra map[string]any
	// Tokens, when set, adds a byte-level BPE tokenizer.json (and
	// tokenizer_config.json) of that many tokens: the 256 bytes, merged
	// pairs of printable characters, and the bos, eos and pad specials as
	// its last three ids, which become the config's BOS, EOS and Pad unless
	// those are set. At least 260 and at most Vocab.
	Tokens int
	// BOS, EOS and Pad are the special token ids written to config.json
	// (nil: none).
	BOS, EOS, Pad *int
	// Files are carried beside config.json (tokenizer files, ...).
	Files map[string][]byte
}

// Tensor is one tensor of the model: its name, its shape and the mean and
// standard deviation of its values (Std 0: every value is Mean).
type Tensor struct {
	Name  string
	Shape []int64
	Std   float64
	Mean  float64
}

func (c Config) headDim() int {
	if c.HeadDim > 0 {
		return c.HeadDim
	}
	return c.Hidden / max(c.Heads, 1)
}

func (c Config) kvHeads() int       { return cmp.Or(c.KVHeads, c.Heads) }
func (c Config) dtype() dtype.DType { return cmp.Or(c.DType, dtype.F32) }
func (c Config) modelType() string  { return cmp.Or(c.ModelType, "llama") }

// ConfigJSON is the model's config.json, in the layout transformers writes
// for the architecture (v5's rope_parameters, except Gemma 3's per-layer-type
// ropes, written in v4's rope_theta and rope_local_base_freq).
func (c Config) ConfigJSON() []byte {
	mt := c.modelType()
	names := map[dtype.DType]string{dtype.F32: "float32", dtype.BF16: "bfloat16", dtype.F16: "float16"}
	m := map[string]any{
		"attention_dropout": 0.0, "dtype": names[c.dtype()], "head_dim": c.headDim(), "hidden_size": c.Hidden,
		"initializer_range": 0.02, "intermediate_size": c.Intermediate, "max_position_embeddings": cmp.Or(c.MaxPositions, 2048),
		"model_type": mt, "num_attention_heads": c.Heads, "num_hidden_layers": c.Layers, "num_key_value_heads": c.kvHeads(),
		"rms_norm_eps": cmp.Or(c.RMSEps, 1e-5), "tie_word_embeddings": c.Tied, "transformers_version": "5.17.0",
		"use_cache": true, "vocab_size": c.Vocab,
	}
	theta := cmp.Or(c.RopeTheta, 10000.0)
	rope := map[string]any{"rope_theta": theta, "rope_type": "default"}
	switch mt {
	case "llama":
		maps(m, map[string]any{"attention_bias": false, "hidden_act": "silu", "mlp_bias": false, "pretraining_tp": 1, "rope_parameters": rope})
	case "gemma", "gemma2":
		maps(m, map[string]any{"hidden_activation": "gelu_pytorch_tanh", "rope_parameters": rope})
	case "gemma3", "gemma3_text":
		maps(m, map[string]any{"hidden_activation": "gelu_pytorch_tanh", "rope_theta": theta, "rope_local_base_freq": theta})
	case "phi3":
		maps(m, map[string]any{"hidden_act": "silu", "resid_pdrop": 0.0, "embd_pdrop": 0.0,
			"original_max_position_embeddings": cmp.Or(c.MaxPositions, 2048), "rope_parameters": rope})
	default:
		maps(m, map[string]any{"hidden_act": "silu", "rope_parameters": rope})
	}
	if strings.HasPrefix(mt, "gemma2") || strings.HasPrefix(mt, "gemma3") {
		m["query_pre_attn_scalar"] = c.headDim() // as the released models: llama.cpp infers the same scale
	}
	bos, eos, pad := c.specials()
	for key, id := range map[string]*int{"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad} {
		if id != nil {
			m[key] = *id
		}
	}
	if a, err := arch.Lookup(mt); err == nil {
		m["architectures"] = []string{a.Classes[0]}
	}
	maps(m, c.Extra)
	if mt == "gemma3" { // the multimodal wrapper: the language model is text_config
		m["model_type"] = "gemma3_text"
		delete(m, "architectures")
		m = map[string]any{"architectures": []string{"Gemma3ForConditionalGeneration"}, "model_type": "gemma3",
			"text_config": m, "vision_config": map[string]any{"model_type": "siglip_vision_model", "hidden_size": 8},
			"transformers_version": "5.17.0"}
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}

// maps copies src into dst; a nil value deletes the key.
func maps(dst, src map[string]any) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
		} else {
			dst[k] = v
		}
	}
}

// specials are the config's BOS, EOS and Pad, defaulting to the generated
// tokenizer's.
func (c Config) specials() (bos, eos, pad *int) {
	bos, eos, pad = c.BOS, c.EOS, c.Pad
	if c.Tokens > 0 {
		ids := []int{c.Tokens - 3, c.Tokens - 2, c.Tokens - 1}
		bos, eos, pad = cmp.Or(bos, &ids[0]), cmp.Or(eos, &ids[1]), cmp.Or(pad, &ids[2])
	}
	return bos, eos, pad
}

// Arch parses ConfigJSON with the registry.
func (c Config) Arch() (*arch.Config, error) {
	cfg, err := arch.ParseConfig(c.ConfigJSON())
	if err != nil {
		return nil, fmt.Errorf("randmodel: %w", err)
	}
	return cfg, nil
}

// Tensors lists the model's tensors: the registry's, in the order embedding,
// then per layer the input norm, attention, the post-attention norm, the
// pre-feed-forward norm, MLP, the post-feed-forward norm, then the final
// norm and lm_head. A multimodal wrapper's tensors are named as
// transformers ≥ 4.52 saves them (model.language_model.…). It is nil for a
// Config the registry refuses (Write reports why).
func (c Config) Tensors() []Tensor {
	cfg, err := c.Arch()
	if err != nil {
		return nil
	}
	std := func(in int64) float64 {
		if c.Std > 0 {
			return c.Std
		}
		return 1 / math.Sqrt(float64(in))
	}
	norm := float64(1 - cfg.Norm.Offset())
	fanIn := map[string]int64{}
	for _, l := range cfg.Linears() {
		fanIn[l.Module] = l.In
	}
	type keyed struct {
		Tensor
		key int
	}
	var ks []keyed
	for _, t := range cfg.Tensors() {
		x := Tensor{Name: t.Name, Shape: t.Shape}
		switch t.Role {
		case arch.RoleEmbedding:
			x.Std = cmp.Or(c.EmbedStd, c.Std, 1)
		case arch.RoleNorm:
			x.Mean, x.Std = norm, c.NormStd
		default: // weights and biases of linears, lm_head
			x.Std = std(fanIn[t.Module])
		}
		if cfg.Multimodal != nil {
			x.Name = strings.Replace(x.Name, "model.", "model.language_model.", 1)
		}
		ks = append(ks, keyed{x, sortKey(t, cfg.Layers)})
	}
	slices.SortStableFunc(ks, func(a, b keyed) int { return a.key - b.key })
	ts := make([]Tensor, len(ks))
	for i, k := range ks {
		ts[i] = k.Tensor
	}
	return ts
}

// sortKey orders the tensors: the embedding, then per layer the input norm,
// attention, the post-attention norm, the pre-feed-forward norm, MLP and the
// post-feed-forward norm, then the final norm and lm_head (the Llama order of
// the earlier generator, kept so that its seeds give the same models).
func sortKey(t arch.Tensor, layers int) int {
	switch {
	case t.Role == arch.RoleEmbedding:
		return 0
	case t.Layer < 0:
		return 10 * (layers + 1)
	}
	rank := 1 // attention, q/k norms
	switch {
	case t.Module == "input_layernorm":
		rank = 0
	case t.Module == "post_attention_layernorm":
		rank = 2
	case t.Module == "pre_feedforward_layernorm":
		rank = 3
	case t.Role == arch.RoleMLP:
		rank = 4
	case t.Module == "post_feedforward_layernorm":
		rank = 5
	}
	return 10*(t.Layer+1) + rank
}

// Bytes is the size of the tensor data.
func (c Config) Bytes() int64 {
	var n int64
	for _, t := range c.Tensors() {
		n += num.Elements(t.Shape) * int64(c.dtype().Size())
	}
	return n
}

// chunk is the number of values drawn from one random stream: tensors up
// to this size use one stream, larger ones one per chunk, drawn in parallel.
const chunk = 1 << 20

// Values returns tensor i of Tensors() as float32: normal values with the
// tensor's mean and standard deviation, from PCG streams keyed by the seed,
// i and the chunk.
func (c Config) Values(i int) []float32 {
	return c.values(c.Tensors()[i], i)
}

func (c Config) values(t Tensor, i int) []float32 {
	n := num.Elements(t.Shape)
	f := make([]float32, n)
	if t.Std == 0 {
		for k := range f {
			f[k] = float32(t.Mean)
		}
		return f
	}
	chunks := int((n + chunk - 1) / chunk)
	var wg sync.WaitGroup
	next := make(chan int, chunks)
	for k := range chunks {
		next <- k
	}
	close(next)
	for range min(chunks, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for k := range next {
				r := rand.New(rand.NewPCG(c.Seed, uint64(i)+1+uint64(k)<<32))
				for j := int64(k) * chunk; j < min(n, int64(k+1)*chunk); j++ {
					f[j] = float32(t.Mean + r.NormFloat64()*t.Std)
				}
			}
		})
	}
	wg.Wait()
	if c.ZeroRows > 0 && len(t.Shape) == 2 && !strings.HasSuffix(t.Name, "embed_tokens.weight") && t.Name != "lm_head.weight" {
		clear(f[:min(int64(c.ZeroRows)*t.Shape[1], n)])
	}
	return f
}

// Write writes the model to out: a folder (sharded when Shards > 1, with
// config.json, the tokenizer and Files), a .safetensors file (.gz/.zst) or
// "-" (stdout).
func (c Config) Write(out string) error {
	if _, err := c.Arch(); err != nil {
		return err
	}
	ts := c.Tensors()
	dt := c.dtype()
	nsh := max(c.Shards, 1)
	per := c.Bytes()/int64(nsh) + 1
	shards := make([]checkpoint.Shard, nsh)
	var acc int64
	for _, t := range ts {
		s := int(acc / per)
		acc += num.Elements(t.Shape) * int64(dt.Size())
		shards[s].Tensors = append(shards[s].Tensors, safetensors.TensorInfo{Name: t.Name, DType: dt, Shape: t.Shape})
	}
	for i := range shards {
		shards[i].Name = fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, nsh)
	}
	if nsh == 1 {
		shards[0].Name = "model.safetensors"
	}
	files := map[string][]byte{"config.json": c.ConfigJSON()}
	if c.Tokens > 0 {
		tok, cfg, err := TokenizerFiles(c.Tokens)
		if err != nil {
			return err
		}
		files["tokenizer.json"], files["tokenizer_config.json"] = tok, cfg
	}
	for name, b := range c.Files {
		files[name] = b
	}
	w, err := checkpoint.CreateWith(out, files, shards, output.Options{})
	if err != nil {
		return err
	}
	index := map[string]int{}
	for i, t := range ts {
		index[t.Name] = i
	}
	for _, info := range w.Order() {
		i := index[info.Name]
		b, err := encode(c.values(ts[i], i), dt)
		if err == nil {
			err = w.WriteTensor(info.Name, b)
		}
		if err != nil {
			w.Abort()
			return err
		}
	}
	return w.Commit()
}

// Loader serves the model's tensors by name as float32 with their shapes,
// rounded through DType: the llama.Loader of a model that exists only in
// memory.
func (c Config) Loader() func(name string) ([]float32, []int, error) {
	index := map[string]int{}
	ts := c.Tensors()
	for i, t := range ts {
		index[t.Name] = i
	}
	return func(name string) ([]float32, []int, error) {
		i, ok := index[name]
		if !ok {
			return nil, nil, fmt.Errorf("randmodel: no tensor %q", name)
		}
		f := c.values(ts[i], i)
		if dt := c.dtype(); dt != dtype.F32 {
			b, err := encode(f, dt)
			if err != nil {
				return nil, nil, err
			}
			if err := dtype.ToF32(f, b, dt); err != nil {
				return nil, nil, err
			}
		}
		shape := make([]int, len(ts[i].Shape))
		for k, d := range ts[i].Shape {
			shape[k] = int(d)
		}
		return f, shape, nil
	}
}

func encode(f []float32, dt dtype.DType) ([]byte, error) {
	if dt == dtype.F32 {
		return append([]byte(nil), num.F32Bytes(f)...), nil
	}
	b := make([]byte, len(f)*dt.Size())
	return b, dtype.FromF32(b, f, dt)
}

// Adapter writes a PEFT LoRA adapter of rank r for the model to out (a
// folder, a .safetensors file or "-"): F32 A and B on targets (module
// names such as "q_proj", or "all-linear"; none: all-linear), alpha 2r, with
// B non-zero so that merging changes the weights. Values come from seed.
func (c Config) Adapter(out string, r int, seed uint64, targets ...string) error {
	return c.AdapterWith(out, AdapterOptions{Rank: r, Seed: seed, Targets: targets})
}

// AdapterOptions describe a random PEFT LoRA adapter.
type AdapterOptions struct {
	// Rank is r; Alpha is lora_alpha (0: 2r).
	Rank  int
	Alpha float64
	Seed  uint64
	// Targets are module names of the architecture ("q_proj", "qkv_proj",
	// "lm_head", "embed_tokens", ...) or "all-linear" (none: all-linear).
	Targets []string
	// Bias is PEFT's bias option: "all" saves every bias of the model
	// (trained values: P.base_layer.bias of adapted modules, <module>.bias of
	// the others), "lora_only" those of the adapted modules; "" or "none"
	// saves none.
	Bias string
	// LoraBias adds lora_B.bias to every linear module (PEFT's lora_bias).
	LoraBias bool
}

// AdapterWith writes a PEFT LoRA adapter for the model to out (a folder, a
// .safetensors file or "-"): every tensor F32 N(0, 0.05) from the seed, so
// that merging changes the weights.
func (c Config) AdapterWith(out string, o AdapterOptions) error {
	cfg, err := c.Arch()
	if err != nil {
		return err
	}
	targets := o.Targets
	if len(targets) == 0 {
		targets = []string{arch.AllLinearShorthand}
	}
	lin, err := cfg.ResolveTargets(targets)
	if err != nil {
		return fmt.Errorf("randmodel: %w", err)
	}
	want := map[string]arch.Linear{}
	for _, l := range lin {
		want[l.Module] = l
	}
	prefix := func(name string) string {
		if cfg.Multimodal != nil {
			name = strings.Replace(name, "model.", "model.language_model.", 1)
		}
		return "base_model.model." + name
	}
	var infos []safetensors.TensorInfo
	add := func(name string, shape ...int64) {
		infos = append(infos, safetensors.TensorInfo{Name: name, DType: dtype.F32, Shape: shape})
	}
	r := int64(o.Rank)
	for _, t := range cfg.Tensors() {
		l, adapted := want[t.Module]
		module := strings.TrimSuffix(strings.TrimSuffix(t.Name, ".weight"), ".bias")
		p := prefix(module)
		switch {
		case t.Bias && (o.Bias == "all" || o.Bias == "lora_only" && adapted):
			if adapted {
				add(p+".base_layer.bias", t.Shape...)
			} else {
				add(p+".bias", t.Shape...)
			}
		case t.Bias || !adapted:
		case l.Embedding:
			add(p+".lora_embedding_A", r, l.In)
			add(p+".lora_embedding_B", l.Out, r)
		default:
			add(p+".lora_A.weight", r, l.In)
			add(p+".lora_B.weight", l.Out, r)
			if o.LoraBias {
				add(p+".lora_B.bias", l.Out)
			}
		}
	}
	if _, ok := want["lm_head"]; ok && cfg.TiedEmbeddings { // the tied lm_head is a module of its own
		add(prefix("lm_head")+".lora_A.weight", r, int64(cfg.Hidden))
		add(prefix("lm_head")+".lora_B.weight", int64(cfg.Vocab), r)
		if o.LoraBias {
			add(prefix("lm_head")+".lora_B.bias", int64(cfg.Vocab))
		}
	}
	names := make([]string, 0, len(lin))
	for _, l := range lin {
		names = append(names, l.Module)
	}
	tm, _ := json.Marshal(names)
	bias := cmp.Or(o.Bias, "none")
	cfgJSON := fmt.Sprintf(`{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": %d, "lora_alpha": %g, "lora_dropout": 0.0, "bias": %q, "target_modules": %s, "init_lora_weights": false%s}`,
		o.Rank, cmp.Or(o.Alpha, float64(2*o.Rank)), bias, tm, map[bool]string{true: `, "lora_bias": true`}[o.LoraBias])
	w, err := checkpoint.CreateWith(out, map[string][]byte{"adapter_config.json": []byte(cfgJSON)},
		[]checkpoint.Shard{{Name: "adapter_model.safetensors", Tensors: infos}}, output.Options{})
	if err != nil {
		return err
	}
	for _, t := range w.Order() {
		h := fnv.New64a()
		h.Write([]byte(t.Name))
		rng := rand.New(rand.NewPCG(o.Seed, h.Sum64()))
		f := make([]float32, t.NumElements())
		for i := range f {
			f[i] = float32(rng.NormFloat64() * 0.05)
		}
		if err := w.WriteTensor(t.Name, num.F32Bytes(f)); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Commit()
}

// ModelTypes lists the model_type values Tiny takes: every architecture of
// the registry, then Gemma 3's multimodal wrapper (gemma3).
func ModelTypes() []string {
	var out []string
	for _, a := range arch.All() {
		out = append(out, a.ModelType)
	}
	return append(out, "gemma3")
}

// Tiny is a small model of an architecture for tests (hidden 64, 4 heads of
// 16, 2 KV heads, 2 layers, a 320-token tokenizer, 64 positions), with what
// sets the architecture apart switched on where a config can switch it:
// sliding windows of 8 tokens (Mistral, Gemma 2 and 3), Gemma 2's soft-caps
// low enough to bend the logits, Gemma 3's local rope base and a layer
// pattern of period 3 over 3 layers, Qwen3's and Gemma's head_dim of 32
// apart from hidden/heads, Gemma 3's embedding padded beyond its tokenizer
// (336 rows for 320 tokens), Phi-3's partial rotary. Norms are random around
// their identity. The Gemma family's weights are nearer a trained model's
// scale (projections 0.05, embeddings 0.25): llama.cpp's float16 GELU table
// rounds larger activations more coarsely. Tests change the rest through
// Extra.
func Tiny(modelType string, seed uint64) Config {
	c := Config{ModelType: modelType, Hidden: 64, Intermediate: 128, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 16,
		Vocab: 320, Tokens: 320, MaxPositions: 64, Seed: seed, NormStd: 0.1, Extra: map[string]any{}}
	switch modelType {
	case "mistral":
		c.Extra["sliding_window"] = 8
	case "qwen3":
		c.HeadDim = 32
	case "gemma":
		c.HeadDim, c.Tied, c.Std, c.EmbedStd = 32, true, 0.05, 0.25
	case "gemma2":
		c.Tied, c.Std, c.EmbedStd = true, 0.05, 0.25
		maps(c.Extra, map[string]any{"sliding_window": 8, "attn_logit_softcapping": 4.0, "final_logit_softcapping": 3.0})
	case "gemma3_text", "gemma3":
		c.Tied, c.Layers, c.Vocab, c.Std, c.EmbedStd = true, 3, 336, 0.05, 0.25
		maps(c.Extra, map[string]any{"sliding_window": 8, "sliding_window_pattern": 3, "rope_theta": 1e6, "rope_local_base_freq": 1e4})
	case "phi3":
		c.Extra["partial_rotary_factor"] = 0.5
	}
	return c
}
