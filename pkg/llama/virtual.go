package llama

import (
	"fmt"
	"slices"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/dtype"
)

// Virtual-token methods: PEFT's prompt learning (PROMPT_TUNING,
// PREFIX_TUNING without prefix_projection).
const (
	// MethodPrompt prepends Tokens trainable embeddings [Tokens, Hidden] to
	// every sequence (PEFT's PromptEmbedding): the sequence the layers see
	// is Tokens+Seq long, with positions 0 … Tokens+Seq−1 and causal
	// attention, as transformers runs inputs_embeds; the virtual positions
	// have no label. The concatenation is built from existing backend ops:
	// Embedding fills every row (a placeholder id on the virtual rows),
	// Convert copies the prompt over the virtual rows of each sequence, and
	// the backward pass sums those rows' gradients over the batch with Axpy.
	MethodPrompt = "prompt"
	// MethodPrefix gives every layer Tokens trainable past keys and values
	// (PEFT's PrefixEncoder without prefix_projection), one per KV head as
	// PEFT's GQA layout: the tensor PromptEmbeddings [Tokens,
	// Layers·2·KVHeads·HeadDim], each row layer after layer, the keys then
	// the values, head after head. They enter attention as a KV cache does
	// (compute.Attention.Prefix), used as given (not rotated), and the real
	// tokens' positions start at Tokens (transformers' cache_position). A
	// sequence's keys and values are built per layer as [prefix; rotated
	// keys] with Copy and Convert, the prefix's gradient summed over the
	// batch with Axpy.
	MethodPrefix = "prefix"
)

// PromptEmbeddings is the name of the prompt-tuning parameter, as PEFT's
// get_peft_model_state_dict saves it.
const PromptEmbeddings = "prompt_embeddings"

// Virtual describes virtual tokens trained instead of, or besides, module
// adapters. The zero value is none.
type Virtual struct {
	Method string // MethodPrompt or MethodPrefix
	Tokens int    // num_virtual_tokens
}

// virtual is a model's virtual tokens and their gradient.
type virtual struct {
	Virtual
	emb, grad compute.Buffer // prompt: [Tokens, Hidden]; prefix: [Tokens, Layers·2·KVHeads·HeadDim] (F32)
	width     int            // a row of emb
}

// maxVirtualTokens bounds Virtual.Tokens.
const maxVirtualTokens = 1 << 16

// ScaledEmbeddingModule reports whether the model's embedding scale belongs
// to its word-embedding module (Gemma 3's Gemma3TextScaledWordEmbedding)
// rather than to the model's forward (Gemma 1 and 2 multiply inputs_embeds).
// It decides whether prompt-tuning embeddings, which enter as inputs_embeds,
// are scaled: not with a scaled module, whose output they stand for.
func (m *Model) ScaledEmbeddingModule() bool {
	switch m.cfg.Arch.ModelType {
	case "gemma3", "gemma3_text":
		return true
	}
	return false
}

// promptScale is the factor the model applies to prompt embeddings (0:
// none).
func (m *Model) promptScale() float32 {
	if m.ScaledEmbeddingModule() {
		return 0
	}
	return m.embedScale
}

// AddVirtual attaches virtual tokens, reading their values through load:
// the tensor PromptEmbeddings, [Tokens, Hidden] for MethodPrompt,
// [Tokens, Layers·2·KVHeads·HeadDim] for MethodPrefix (PrefixWidth). A
// model has at most one set of virtual tokens.
func (m *Model) AddVirtual(v Virtual, load Loader) error {
	if m.virt != nil {
		return fmt.Errorf("%w: the model already has virtual tokens", ErrAdapter)
	}
	if v.Tokens <= 0 || v.Tokens > maxVirtualTokens {
		return fmt.Errorf("%w: %d virtual tokens (1 … %d)", ErrAdapter, v.Tokens, maxVirtualTokens)
	}
	width := m.cfg.Hidden
	switch v.Method {
	case MethodPrompt:
	case MethodPrefix:
		w, err := PrefixWidth(m.cfg)
		if err != nil {
			return err
		}
		width = w
	default:
		return fmt.Errorf("%w: virtual-token method %q", ErrAdapter, v.Method)
	}
	emb, err := m.tensor(load, PromptEmbeddings, compute.F32, v.Tokens, width)
	if err != nil {
		return err
	}
	grad, err := m.alloc(compute.F32, v.Tokens*width)
	if err != nil {
		return err
	}
	m.virt = &virtual{Virtual: v, emb: emb, grad: grad, width: width}
	if m.ws != nil {
		m.ws.free()
		m.ws = nil
	}
	return nil
}

// PrefixWidth is the width of a prefix-tuning row for a model of cfg,
// Layers·2·KVHeads·HeadDim. PEFT derives the head size as token_dim /
// num_attention_heads with token_dim = hidden_size / num_attention_heads ·
// num_key_value_heads, which is the model's head_dim only when head_dim =
// hidden_size / num_attention_heads; for other models (Gemma 2 and 3,
// some Qwen3) PEFT's own prefix cannot have the cache's shape, and
// PrefixWidth refuses them.
func PrefixWidth(cfg *arch.Config) (int, error) {
	if cfg.Hidden%cfg.Heads != 0 || cfg.Hidden/cfg.Heads != cfg.HeadDim {
		return 0, fmt.Errorf("%w: prefix tuning: head_dim %d is not hidden_size / num_attention_heads (%d / %d): PEFT lays its prefix out with that head size, so its keys and values cannot fit this %s model's cache",
			ErrAdapter, cfg.HeadDim, cfg.Hidden, cfg.Heads, cfg.Arch.ModelType)
	}
	return cfg.Layers * 2 * cfg.KVHeads * cfg.HeadDim, nil
}

// VirtualTokens returns the model's virtual tokens (the zero Virtual when
// it has none).
func (m *Model) VirtualTokens() Virtual {
	if m.virt == nil {
		return Virtual{}
	}
	return m.virt.Virtual
}

// virtualParams returns the virtual tokens' parameter, if any.
func (m *Model) virtualParams() []Param {
	if m.virt == nil {
		return nil
	}
	return []Param{{Name: PromptEmbeddings, Shape: []int{m.virt.Tokens, m.virt.width}, Value: m.virt.emb, Grad: m.virt.grad}}
}

// promptTokens is the number of virtual rows prepended to each sequence.
func (m *Model) promptTokens() int {
	if m.virt == nil || m.virt.Method != MethodPrompt {
		return 0
	}
	return m.virt.Tokens
}

// prefixTokens is the number of prefix keys and values of every layer.
func (m *Model) prefixTokens() int {
	if m.virt == nil || m.virt.Method != MethodPrefix {
		return 0
	}
	return m.virt.Tokens
}

// withVirtual returns the batch the layers see with virtual tokens. Prompt
// tuning prepends the prompt's rows to every sequence: placeholder ids (0,
// overwritten by the embeddings), label −100, and the positions 0 …
// P+Seq−1 the model assigns to inputs_embeds. Prefix tuning keeps the
// tokens and numbers them from P, after the prefix. Batches with their own
// Positions or Segments (packing) are refused.
func (m *Model) withVirtual(b *Batch) (Batch, error) {
	if b.Positions != nil || b.Segments != nil {
		return Batch{}, fmt.Errorf("%w: a batch with virtual tokens takes no Positions or Segments (packing)", ErrBatch)
	}
	if P := m.prefixTokens(); P > 0 {
		out := *b
		out.Positions = make([]int32, b.Rows*b.Seq)
		for i := range out.Positions {
			out.Positions[i] = int32(P + i%b.Seq)
		}
		return out, nil
	}
	P := m.promptTokens()
	S := P + b.Seq
	out := Batch{Rows: b.Rows, Seq: S, IDs: make([]int32, b.Rows*S)}
	if b.Labels != nil {
		out.Labels = make([]int32, b.Rows*S)
	}
	for r := range b.Rows {
		copy(out.IDs[r*S+P:(r+1)*S], b.IDs[r*b.Seq:(r+1)*b.Seq])
		if b.Labels != nil {
			lab := out.Labels[r*S : (r+1)*S]
			for i := range P {
				lab[i] = compute.IgnoreIndex
			}
			copy(lab[P:], b.Labels[r*b.Seq:(r+1)*b.Seq])
		}
	}
	return out, nil
}

// prefixRows copies layer l's prefix keys (kv 0) or values (kv 1) from the
// PEFT layout of src ([P, Layers·2·kvDim]) into the contiguous [P, kvDim]
// dst, or with back adds dst into those rows of src.
func (m *Model) prefixRows(l, kv int, src, dst compute.Buffer, back bool) {
	P, W, hkv := m.virt.Tokens, m.virt.width, m.cfg.KVHeads*m.cfg.HeadDim
	for p := range P {
		row, d := m.be.View(src, p*W+(2*l+kv)*hkv, hkv), m.be.View(dst, p*hkv, hkv)
		if back {
			m.be.Axpy(row, d, 1)
		} else {
			m.be.Copy(d, row)
		}
	}
}

// prefixForward builds layer l's keys and values with the prefix: for each
// sequence its P prefix rows (rounded to the activations' dtype, as PEFT's
// past_key_values.to(dtype)), then its rotated keys and its values.
func (m *Model) prefixForward(l int, a *acts) {
	ws, be := m.ws, m.be
	P, S, hkv := m.virt.Tokens, ws.seq, m.cfg.KVHeads*m.cfg.HeadDim
	for kv, x := range []struct{ dst, src compute.Buffer }{{a.kx, a.k}, {a.vx, a.v}} {
		m.prefixRows(l, kv, m.virt.emb, ws.pre, false)
		for r := range ws.rows {
			be.Convert(be.View(x.dst, r*(P+S)*hkv, P*hkv), ws.pre)
			be.Copy(be.View(x.dst, (r*(P+S)+P)*hkv, S*hkv), be.View(x.src, r*S*hkv, S*hkv))
		}
	}
}

// prefixBackward adds layer l's prefix gradient, the sum over the batch of
// the prefix rows of ws.dkx and ws.dvx, and copies the real rows into
// ws.dk and ws.dv.
func (m *Model) prefixBackward(l int) {
	ws, be := m.ws, m.be
	P, S, hkv := m.virt.Tokens, ws.seq, m.cfg.KVHeads*m.cfg.HeadDim
	for kv, x := range []struct{ src, dst compute.Buffer }{{ws.dkx, ws.dk}, {ws.dvx, ws.dv}} {
		be.Zero(ws.pre)
		for r := range ws.rows {
			be.Axpy(ws.pre, be.View(x.src, r*(P+S)*hkv, P*hkv), 1)
			be.Copy(be.View(x.dst, r*S*hkv, S*hkv), be.View(x.src, (r*(P+S)+P)*hkv, S*hkv))
		}
		m.prefixRows(l, kv, m.virt.grad, ws.pre, true)
	}
}

// promptForward writes the prompt over the virtual rows of each sequence of
// h (the embedded batch, already scaled where the model scales it), rounded
// to the activations' dtype as PEFT's prompts.to(inputs_embeds.dtype), then
// scaled as the model scales inputs_embeds.
func (m *Model) promptForward(h compute.Buffer) {
	P := m.promptTokens()
	if P == 0 {
		return
	}
	ws, D := m.ws, m.cfg.Hidden
	for r := range ws.rows {
		dst := m.be.View(h, r*ws.seq*D, P*D)
		m.be.Convert(dst, m.virt.emb)
		if s := m.promptScale(); s != 0 {
			m.be.Scale(dst, s)
		}
	}
}

// promptBackward adds to the prompt's gradient the gradient at the virtual
// rows of the layers' input (ws.dh), summed over the batch.
func (m *Model) promptBackward() {
	P := m.promptTokens()
	if P == 0 {
		return
	}
	ws, D := m.ws, m.cfg.Hidden
	alpha := float32(1)
	if s := m.promptScale(); s != 0 {
		alpha = s
	}
	for r := range ws.rows {
		m.be.Axpy(m.virt.grad, m.be.View(ws.dh, r*ws.seq*D, P*D), alpha)
	}
}

// TokenEmbeddings returns the rows of ids as the model's word-embedding
// module outputs them, [len(ids), Hidden] f32: the embedding table's rows,
// times the embedding scale (rounded to the table's dtype) where the module
// scales (ScaledEmbeddingModule). PEFT initialises prompt tuning's TEXT
// embeddings with them.
func (m *Model) TokenEmbeddings(ids []int32) ([]float32, error) {
	D := m.cfg.Hidden
	for i, id := range ids {
		if id < 0 || int(id) >= m.cfg.Vocab {
			return nil, fmt.Errorf("%w: token id %d at %d outside [0, %d)", ErrBatch, id, i, m.cfg.Vocab)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	idb, err := m.be.Alloc(compute.I32, len(ids))
	if err != nil {
		return nil, err
	}
	defer m.be.Free(idb)
	out, err := m.be.Alloc(m.embed.DType(), len(ids)*D)
	if err != nil {
		return nil, err
	}
	defer m.be.Free(out)
	m.be.UploadInt32(idb, ids)
	m.be.Embedding(out, m.embed, idb, D)
	v := make([]float32, len(ids)*D)
	if err := m.be.Download(v, out); err != nil {
		return nil, err
	}
	if m.ScaledEmbeddingModule() && m.cfg.EmbedScale {
		wdt := dtype.F32
		if m.embed.DType() == compute.BF16 {
			wdt = dtype.BF16
		}
		s := arch.EmbedScaleValue(m.cfg.Hidden, wdt)
		for i := range v {
			v[i] *= s
		}
		if wdt == dtype.BF16 {
			raw := make([]byte, 2*len(v))
			dtype.FromF32(raw, v, dtype.BF16)
			dtype.ToF32(v, raw, dtype.BF16)
		}
	}
	return slices.Clip(v), nil
}
