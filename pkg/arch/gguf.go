package arch

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// GGUF is how a Config maps onto llama.cpp, as data for pkg/export: the
// general.architecture, the architecture's metadata keys, the tensor names
// and per-tensor transforms, generated tensors, and every place where
// llama.cpp would compute something other than transformers together with
// what is done about it. It follows convert_hf_to_gguf.py and
// convert_lora_to_gguf.py, and what llama.cpp's loader and graphs read
// (src/llama-model.cpp, src/models/<arch>.cpp) in the release node-llama-cpp
// 3.21.1 runs.
type GGUF struct {
	// Arch is general.architecture.
	Arch string
	// Metadata are the "<Arch>.*" keys in a fixed order. Not included:
	// general.* and tokenizer.* (the writer's), and <Arch>.vocab_size, which
	// depends on the token count after TrimVocab.
	Metadata []KV
	// Extra are tensors llama.cpp needs that the checkpoint lacks
	// (rope_freqs.weight for llama3 rope scaling, rope_factors_long/short for
	// LongRoPE); all 1-D F32.
	Extra []ExtraTensor
	// Divergences list every difference between transformers and llama.cpp
	// for this config, with the remedy applied. Divergences with RemedyRefuse
	// make Check (and Config.GGUF) fail.
	Divergences []Divergence
	// TrimVocab: token_embd keeps only the tokenizer's tokens, as the
	// converter trims Gemma 3's padded embedding (export applies
	// Transform.TrimVocab with the token count).
	TrimVocab bool

	c          *Config
	permute    bool    // rows of q/k interleaved for LLAMA_ROPE_TYPE_NORM
	normAdd    float32 // added to every norm weight
	qScale     float32 // folded into q rows (and adapter q B); 0: none
	qNormScale float32 // folded into attn_q_norm; 0: none
	outputTied bool    // llama.cpp's graph always uses token_embd as output
	context    int     // context_length written
	keys       []KV    // architecture-specific keys, after the common ones
	ropeKeys   bool    // write rope.scaling.* for a linear global rope
}

// KV is one metadata key and its value: uint32, float32, string or bool, of
// the type llama.cpp's typed getters require.
type KV struct {
	Key   string
	Value any
}

// ExtraTensor is a generated 1-D F32 tensor.
type ExtraTensor struct {
	Name string
	Data []float32
}

// Transform is what export does to a tensor's values on the way to GGUF,
// in this order: add Add to every value, multiply every value by Scale (when
// not 0), reorder rows with PermuteHeads, keep the first rows for TrimVocab.
// Computed in float32 before the output type's rounding.
type Transform struct {
	// Drop, when set, says why the tensor is not written (rotary caches, a
	// tied lm_head, a multimodal model's vision tower).
	Drop string
	// Add is added to every value (1 for Gemma norms: llama.cpp multiplies by
	// the stored weight where transformers multiplies by 1 + w).
	Add float32
	// Scale multiplies every value (0 means no scaling): a factor folded in
	// so that llama.cpp computes transformers' attention scale.
	Scale float32
	// PermuteHeads > 0 interleaves the rows of each of that many heads for
	// llama.cpp's adjacent-pair rotary (Llama, Mistral q and k, weights,
	// biases and LoRA B): new_row[h·hd + 2i + j] = old_row[h·hd + j·hd/2 + i].
	PermuteHeads int
	// TrimVocab keeps only the first n rows, n the tokenizer's token count.
	TrimVocab bool
}

// IsIdentity reports whether the tensor is written as it is.
func (t Transform) IsIdentity() bool {
	return t.Drop == "" && t.Add == 0 && (t.Scale == 0 || t.Scale == 1) && t.PermuteHeads == 0 && !t.TrimVocab
}

// AdapterTensor maps one LoRA module onto its GGUF base tensor: the adapter
// writes Base+".lora_a" and Base+".lora_b", transformed by A and B.
type AdapterTensor struct {
	Base string
	A, B Transform
}

// Remedy is what is done about a divergence.
type Remedy uint8

const (
	// RemedyFold folds a factor into tensors so that llama.cpp's fixed math
	// computes transformers' result.
	RemedyFold Remedy = iota + 1
	// RemedyKey writes a metadata key llama.cpp reads.
	RemedyKey
	// RemedyContext writes context_length = the window, so that llama.cpp's
	// full attention equals the sliding window attention within the context
	// it is told the model has (llama.cpp warns when asked for more).
	RemedyContext
	// RemedyNote: a bounded numerical difference (or one outside the
	// trained context) that export reports and does not change.
	RemedyNote
	// RemedyRefuse: llama.cpp cannot compute it; export refuses.
	RemedyRefuse
)

func (r Remedy) String() string {
	switch r {
	case RemedyFold:
		return "fold"
	case RemedyKey:
		return "key"
	case RemedyContext:
		return "context"
	case RemedyNote:
		return "note"
	case RemedyRefuse:
		return "refuse"
	}
	return "Remedy(" + strconv.Itoa(int(r)) + ")"
}

// Divergence is one place where llama.cpp computes something other than
// transformers for this config.
type Divergence struct {
	// Field is the config field or feature at stake.
	Field string
	// Transformers and LlamaCpp say what each computes.
	Transformers, LlamaCpp string
	Remedy                 Remedy
	// Action says what export does (or why it refuses).
	Action string
}

func (d Divergence) String() string {
	return fmt.Sprintf("%s [%s]: transformers: %s; llama.cpp: %s; so: %s", d.Field, d.Remedy, d.Transformers, d.LlamaCpp, d.Action)
}

// GGUF returns the GGUF mapping of the config. The error wraps ErrGGUF and
// gives the reasons when any divergence is refused; the returned plan is
// complete either way, for reports.
func (c *Config) GGUF() (*GGUF, error) {
	g := &GGUF{Arch: c.Arch.GGUFArch, c: c, context: c.MaxPositions, ropeKeys: true}
	if c.Norm == NormGemma {
		g.normAdd = 1
	}
	c.Arch.gguf(c, g)
	g.finish()
	return g, g.Check()
}

// Check returns an error wrapping ErrGGUF that lists every refused
// divergence, or nil.
func (g *GGUF) Check() error {
	var reasons []string
	for _, d := range g.Divergences {
		if d.Remedy == RemedyRefuse {
			reasons = append(reasons, d.Field+": "+d.Action)
		}
	}
	if len(reasons) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s to %s: %s", ErrGGUF, g.c.Arch.ModelType, g.Arch, strings.Join(reasons, "; "))
}

func (g *GGUF) diverge(d Divergence) { g.Divergences = append(g.Divergences, d) }

func (g *GGUF) refuse(field, transformers, llamacpp, reason string) {
	g.diverge(Divergence{Field: field, Transformers: transformers, LlamaCpp: llamacpp, Remedy: RemedyRefuse, Action: reason})
}

func (g *GGUF) key(k string, v any) { g.keys = append(g.keys, KV{Key: g.Arch + "." + k, Value: v}) }

// globalRope is the rope of full-attention layers (layer 0's if none).
func (c *Config) globalRope() *Rope {
	for _, a := range c.Attention {
		if !a.Sliding {
			return a.Rope
		}
	}
	return c.Attention[0].Rope
}

// localRope is the rope of sliding layers, nil if there are none.
func (c *Config) localRope() *Rope {
	for _, a := range c.Attention {
		if a.Sliding {
			return a.Rope
		}
	}
	return nil
}

// finish writes the keys every architecture shares, then the
// architecture's own.
func (g *GGUF) finish() {
	c := g.c
	r := c.globalRope()
	a := g.Arch + "."
	kv := []KV{
		{a + "context_length", u32(g.context)},
		{a + "embedding_length", u32(c.Hidden)},
		{a + "block_count", u32(c.Layers)},
		{a + "feed_forward_length", u32(c.Intermediate)},
		{a + "attention.head_count", u32(c.Heads)},
		{a + "attention.head_count_kv", u32(c.KVHeads)},
		{a + "attention.layer_norm_rms_epsilon", float32(c.NormEps)},
		{a + "rope.freq_base", float32(r.Theta)},
		{a + "rope.dimension_count", u32(r.Dims)},
	}
	if c.HeadDim*c.Heads != c.Hidden {
		kv = append(kv, KV{a + "attention.key_length", u32(c.HeadDim)}, KV{a + "attention.value_length", u32(c.HeadDim)})
	}
	if r.Type == RopeLinear && g.ropeKeys {
		kv = append(kv, KV{a + "rope.scaling.type", "linear"}, KV{a + "rope.scaling.factor", float32(r.Factor)})
	}
	g.Metadata = append(kv, g.keys...)
}

func u32(n int) uint32 { return uint32(n) }

// ropeSupport refuses rope types the llama.cpp architecture cannot run.
func (g *GGUF) ropeSupport(types ...RopeType) {
	for _, r := range g.c.Ropes() {
		if !containsType(types, r.Type) {
			g.refuse("rope "+r.Type.String(), "computes "+r.String(), g.Arch+" has no "+r.Type.String()+" rope scaling",
				fmt.Sprintf("llama.cpp's %s graph cannot apply %s rope scaling", g.Arch, r.Type))
		}
	}
}

// needSiLU refuses an MLP activation the architecture's graph does not use.
func (g *GGUF) needSiLU() {
	if g.c.Act != ActSiLU {
		g.refuse("hidden_act", "uses "+g.c.Act.String(), g.Arch+" always uses SiLU", "llama.cpp's "+g.Arch+" MLP is SiLU-gated")
	}
}

// needQDimHidden refuses a head_dim that the architecture's loader cannot
// take (qwen2 and phi3 size q and o as hidden_size).
func (g *GGUF) needQDimHidden() {
	c := g.c
	if c.Heads*c.HeadDim != c.Hidden {
		g.refuse("head_dim", fmt.Sprintf("q has %d·%d = %d rows", c.Heads, c.HeadDim, c.Heads*c.HeadDim),
			fmt.Sprintf("%s sizes q and o as hidden_size %d", g.Arch, c.Hidden), "llama.cpp would reject the tensor shapes")
	}
}

// noSlidingWindow handles sliding windows on an architecture whose
// llama.cpp graph attends globally in every layer: the two agree as long as
// no query is more than a window away from the first key, so context_length
// is capped to the window.
func (g *GGUF) noSlidingWindow(why string) {
	c := g.c
	w := 0
	for _, a := range c.Attention {
		if a.Sliding && (w == 0 || a.Window < w) {
			w = a.Window
		}
	}
	if w == 0 {
		return
	}
	d := Divergence{Field: "sliding_window",
		Transformers: fmt.Sprintf("%d of %d layers attend to the last %d keys", c.SlidingLayers(), c.Layers, w),
		LlamaCpp:     why}
	if w >= c.MaxPositions {
		d.Remedy, d.Action = RemedyNote, fmt.Sprintf("the window %d is not smaller than max_position_embeddings %d: identical within the context", w, c.MaxPositions)
	} else {
		g.context = min(g.context, w)
		d.Remedy, d.Action = RemedyContext, fmt.Sprintf("context_length = %d (the window, not max_position_embeddings %d): within it both compute the same; llama.cpp warns when run longer", w, c.MaxPositions)
	}
	g.diverge(d)
}

// swaPattern finds llama.cpp's sliding-window period for the layers:
// layer l is sliding iff l mod p < p−1 (p = 0: all sliding, p = 1: none).
func swaPattern(c *Config) (int, bool) {
	for p := 0; p <= c.Layers+1; p++ {
		ok := true
		for l, a := range c.Attention {
			want := p == 0 || l%p < p-1
			if a.Sliding != want {
				ok = false
				break
			}
		}
		if ok {
			return p, true
		}
	}
	return 0, false
}

// gemmaNotes are the divergences every Gemma generation shares.
func (g *GGUF) gemmaNotes() {
	c := g.c
	exact := float32(math.Sqrt(float64(c.Hidden)))
	if v := EmbedScaleValue(c.Hidden, c.DType); v != exact {
		g.diverge(Divergence{Field: "embedding scale",
			Transformers: fmt.Sprintf("multiplies embeddings by √%d rounded to %s = %g", c.Hidden, c.DType.TorchName(), v),
			LlamaCpp:     fmt.Sprintf("multiplies by √%d in float32 = %g", c.Hidden, exact),
			Remedy:       RemedyNote,
			Action:       fmt.Sprintf("relative difference %.1e on the input embeddings; token_embd is also the output layer, so it cannot be folded", math.Abs(float64(v/exact)-1))})
	}
	act := "gelu_pytorch_tanh (tanh formula)"
	if c.Act == ActGELU {
		act = "the exact erf GELU"
	}
	g.diverge(Divergence{Field: "hidden_activation", Transformers: "computes " + act,
		LlamaCpp: "computes the tanh GELU through a float16 lookup table on the CPU",
		Remedy:   RemedyNote, Action: "expect logit differences of about 1e-4 to 1e-3"})
	if c.OBias {
		g.refuse("attention_bias", "adds a bias to o_proj", g.Arch+" loads no attn_output bias", "llama.cpp would reject the extra tensor")
	}
}

// foldQueryScale compares transformers' attention scale with the one
// llama.cpp infers for Gemma 2 and 3 (1/√head_dim, or 1/√(hidden/heads) for
// the 27B layer count) and, when they differ, folds the ratio into a tensor
// q passes through before the scores: q_proj (Gemma 2) or q_norm (Gemma 3).
func (g *GGUF) foldQueryScale(bigLayers int, intoQNorm bool) {
	c := g.c
	denom := c.HeadDim
	rule := fmt.Sprintf("1/√head_dim = 1/√%d", c.HeadDim)
	if c.Layers == bigLayers {
		denom = c.Hidden / c.Heads
		rule = fmt.Sprintf("1/√(hidden/heads) = 1/√%d (it assumes the 27B model from the %d layers)", denom, bigLayers)
	}
	ratio := math.Sqrt(float64(denom) / c.QueryPreAttnScalar)
	if math.Abs(ratio-1) < 1e-9 {
		return
	}
	target := "attn_q (weight, bias) and an adapter's q lora_b"
	if intoQNorm {
		target = "attn_q_norm (after the +1): q is normalized after q_proj, so only its norm can carry it"
		g.qNormScale = float32(ratio)
	} else {
		g.qScale = float32(ratio)
	}
	g.diverge(Divergence{Field: "query_pre_attn_scalar",
		Transformers: fmt.Sprintf("scales scores by query_pre_attn_scalar^-0.5 = 1/√%g", c.QueryPreAttnScalar),
		LlamaCpp:     "scales q by " + rule,
		Remedy:       RemedyFold,
		Action:       fmt.Sprintf("multiplies %s by %.9g", target, ratio)})
}

// TensorName maps a checkpoint tensor name to its GGUF name and transform.
// A tensor that is not written has name "" and Transform.Drop set. Names
// outside the architecture's layout (or layers beyond num_hidden_layers)
// give an error wrapping ErrTensor.
func (g *GGUF) TensorName(name string) (string, Transform, error) {
	c := g.c
	hf, ok := c.TextName(name)
	if !ok {
		return "", Transform{Drop: "not part of the language model (vision tower or projector; llama.cpp puts it in a separate mmproj file)"}, nil
	}
	if strings.HasSuffix(hf, ".rotary_emb.inv_freq") {
		return "", Transform{Drop: "rotary cache"}, nil
	}
	if hf == "lm_head.weight" && (c.TiedEmbeddings || g.outputTied) {
		return "", Transform{Drop: "lm_head: tie_word_embeddings, llama.cpp reuses token_embd as the output layer"}, nil
	}
	t, ok := c.Tensor(hf)
	if !ok {
		return "", Transform{}, fmt.Errorf("%w: %q is not a tensor of a %s model with this config", ErrTensor, name, c.Arch.ModelType)
	}
	base, err := ggufBase(c, t)
	if err != nil {
		return "", Transform{}, err
	}
	var tr Transform
	if t.Role == RoleNorm {
		tr.Add = g.normAdd
		if t.Module == "q_norm" && g.qNormScale != 0 {
			tr.Scale = g.qNormScale
		}
	}
	if g.permute {
		switch t.Module {
		case "q_proj":
			tr.PermuteHeads = c.Heads
		case "k_proj":
			tr.PermuteHeads = c.KVHeads
		}
	}
	if t.Module == "q_proj" && g.qScale != 0 {
		tr.Scale = g.qScale
	}
	if t.Role == RoleEmbedding && g.TrimVocab {
		tr.TrimVocab = true
	}
	return base, tr, nil
}

// ggufBase is a tensor's GGUF name.
func ggufBase(c *Config, t Tensor) (string, error) {
	suffix := ".weight"
	if t.Bias {
		suffix = ".bias"
	}
	if t.Layer < 0 {
		switch t.Role {
		case RoleEmbedding:
			return "token_embd" + suffix, nil
		case RoleNorm:
			return "output_norm" + suffix, nil
		case RoleLMHead:
			return "output" + suffix, nil
		}
		return "", fmt.Errorf("%w: %q has no GGUF name", ErrTensor, t.Name)
	}
	var n string
	switch t.Module {
	case "input_layernorm":
		n = "attn_norm"
	case "q_proj":
		n = "attn_q"
	case "k_proj":
		n = "attn_k"
	case "v_proj":
		n = "attn_v"
	case "qkv_proj":
		n = "attn_qkv"
	case "o_proj":
		n = "attn_output"
	case "q_norm":
		n = "attn_q_norm"
	case "k_norm":
		n = "attn_k_norm"
	case "post_attention_layernorm":
		n = "ffn_norm" // the pre-MLP norm without sandwich norms
		if c.SandwichNorms {
			n = "post_attention_norm"
		}
	case "pre_feedforward_layernorm":
		n = "ffn_norm"
	case "post_feedforward_layernorm":
		n = "post_ffw_norm"
	case "gate_proj":
		n = "ffn_gate"
	case "up_proj", "gate_up_proj":
		n = "ffn_up" // llama.cpp's phi3 splits the fused gate/up from ffn_up
	case "down_proj":
		n = "ffn_down"
	default:
		return "", fmt.Errorf("%w: %q has no GGUF name", ErrTensor, t.Name)
	}
	return "blk." + strconv.Itoa(t.Layer) + "." + n + suffix, nil
}

// Adapter maps a LoRA module of the text model ("model.layers.3.self_attn.q_proj",
// "lm_head", "model.embed_tokens") onto the GGUF adapter tensors llama.cpp
// applies, or refuses (ErrGGUF) what llama.cpp cannot apply. B takes the
// rows' permutation and folded scale of the base weight; A of an embedding
// (PEFT's lora_embedding_A, transposed by export to vocab × r) takes the
// vocabulary trim.
func (g *GGUF) Adapter(module string) (AdapterTensor, error) {
	c := g.c
	hf, ok := c.TextName(module + ".weight")
	if !ok {
		return AdapterTensor{}, fmt.Errorf("%w: LoRA on %s: not part of the language model", ErrGGUF, module)
	}
	base, t, err := g.TensorName(module + ".weight")
	if err != nil {
		return AdapterTensor{}, err
	}
	info, _ := c.Tensor(hf)
	switch {
	case hf == "lm_head.weight":
		if base == "" {
			return AdapterTensor{}, fmt.Errorf("%w: LoRA on lm_head: the base ties embeddings and llama.cpp has no output.weight to adapt", ErrGGUF)
		}
	case info.Role == RoleEmbedding:
		if c.TiedEmbeddings || g.outputTied {
			return AdapterTensor{}, fmt.Errorf("%w: LoRA on embed_tokens: llama.cpp reuses token_embd as the output layer and would apply the embedding adapter there too (as a linear adapter of the wrong shape)", ErrGGUF)
		}
	case base == "":
		return AdapterTensor{}, fmt.Errorf("%w: LoRA on %s: %s", ErrGGUF, module, t.Drop)
	case info.Bias || !isLinearModule(info.Module):
		return AdapterTensor{}, fmt.Errorf("%w: LoRA on %s: llama.cpp applies adapters to linear layers and embeddings only", ErrGGUF, module)
	}
	at := AdapterTensor{Base: base}
	at.B.PermuteHeads, at.B.Scale = t.PermuteHeads, t.Scale
	at.A.TrimVocab = t.TrimVocab
	return at, nil
}
