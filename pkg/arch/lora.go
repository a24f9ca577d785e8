package arch

import (
	"fmt"
	"strings"
)

// Linear is one LoRA-adaptable module type of the architecture.
type Linear struct {
	// Module is the module name PEFT's target_modules matches: "q_proj",
	// "qkv_proj", "lm_head", "embed_tokens", ...
	Module string
	// In and Out are in_features and out_features; for the embedding,
	// (num_embeddings, embedding_dim).
	In, Out int64
	// Count is how many modules have it (one per layer, or 1).
	Count int
	// Embedding marks nn.Embedding (embed_tokens), adapted with
	// lora_embedding_A/B.
	Embedding bool
}

// AllLinearShorthand is PEFT's target_modules value for every linear layer.
const AllLinearShorthand = "all-linear"

// Linears lists the adaptable module types: each decoder layer's Linears in
// module order (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj,
// down_proj; Phi-3: o_proj, qkv_proj, gate_up_proj, down_proj), then lm_head
// and embed_tokens. lm_head is listed for tied models too: PEFT can adapt it
// (it shares the weight, not the adapter).
func (c *Config) Linears() []Linear {
	var out []Linear
	for _, s := range c.layerSlots() {
		if s.linear && !s.bias {
			out = append(out, Linear{Module: s.module, In: s.inFeat, Out: s.outFeat, Count: c.Layers})
		}
	}
	v, h := int64(c.Vocab), int64(c.Hidden)
	return append(out,
		Linear{Module: "lm_head", In: h, Out: v, Count: 1},
		Linear{Module: "embed_tokens", In: v, Out: h, Count: 1, Embedding: true})
}

// AllLinear is what PEFT's "all-linear" selects: every nn.Linear except the
// output layer (get_output_embeddings, i.e. lm_head), so each decoder layer's
// projections. For a multimodal wrapper PEFT would also select the vision
// tower's and projector's linears; this list is the language model's.
func (c *Config) AllLinear() []string {
	var out []string
	for _, l := range c.Linears() {
		if l.Module != "lm_head" && !l.Embedding {
			out = append(out, l.Module)
		}
	}
	return out
}

// AttentionTargets are the architecture's attention projections, lorakit's
// default LoRA targets: q_proj, k_proj, v_proj and o_proj, or Phi-3's fused
// qkv_proj and o_proj.
func (c *Config) AttentionTargets() []string {
	if c.FusedQKV {
		return []string{"qkv_proj", "o_proj"}
	}
	return []string{"q_proj", "k_proj", "v_proj", "o_proj"}
}

// Targets lists the target names the CLI accepts for this architecture:
// the layer projections, lm_head, embed_tokens and "all-linear".
func (c *Config) Targets() []string {
	var out []string
	for _, l := range c.Linears() {
		out = append(out, l.Module)
	}
	return append(out, AllLinearShorthand)
}

// ResolveTargets expands target names ("all-linear" case-insensitively, as
// PEFT) into module types, in Linears order without duplicates. An unknown
// name gives an error wrapping ErrTarget that lists the accepted ones.
func (c *Config) ResolveTargets(targets []string) ([]Linear, error) {
	lin := c.Linears()
	want := map[string]bool{}
	for _, t := range targets {
		if strings.EqualFold(t, AllLinearShorthand) {
			for _, m := range c.AllLinear() {
				want[m] = true
			}
			continue
		}
		known := false
		for _, l := range lin {
			known = known || l.Module == t
		}
		if !known {
			return nil, fmt.Errorf("%w: %q is not a module of %s (targets: %s)", ErrTarget, t, c.Arch.ModelType, strings.Join(c.Targets(), ", "))
		}
		want[t] = true
	}
	if len(want) == 0 {
		return nil, fmt.Errorf("%w: no targets (targets: %s)", ErrTarget, strings.Join(c.Targets(), ", "))
	}
	var out []Linear
	for _, l := range lin {
		if want[l.Module] {
			out = append(out, l)
		}
	}
	return out, nil
}

// LoRAParams is the trainable parameter count of a plain LoRA of the given
// rank on the targets: rank·(in+out) per module (rank·(num_embeddings +
// embedding_dim) for embed_tokens).
func (c *Config) LoRAParams(rank int, targets []string) (int64, error) {
	if rank <= 0 {
		return 0, fmt.Errorf("%w: rank %d must be positive", ErrTarget, rank)
	}
	lin, err := c.ResolveTargets(targets)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, l := range lin {
		n += int64(rank) * (l.In + l.Out) * int64(l.Count)
	}
	return n, nil
}

// ModulePath returns the text model's module path of a layer's module,
// "model.layers.3.self_attn.q_proj", or "" when the architecture has no such
// module.
func (c *Config) ModulePath(layer int, module string) string {
	for _, s := range c.layerSlots() {
		if s.module == module {
			return LayerPrefix(layer) + strings.TrimSuffix(s.path, ".weight")
		}
	}
	return ""
}
