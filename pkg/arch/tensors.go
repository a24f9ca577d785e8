package arch

import (
	"strconv"
	"strings"
)

// Role is what a tensor is for.
type Role uint8

const (
	RoleEmbedding Role = iota // model.embed_tokens
	RoleAttention             // q/k/v/o (or fused qkv) weights and biases
	RoleMLP                   // gate/up/down (or fused gate_up) weights and biases
	RoleNorm                  // every RMSNorm weight, q/k norms included
	RoleLMHead                // lm_head (absent when embeddings are tied)
)

func (r Role) String() string {
	switch r {
	case RoleEmbedding:
		return "embedding"
	case RoleAttention:
		return "attention"
	case RoleMLP:
		return "mlp"
	case RoleNorm:
		return "norm"
	case RoleLMHead:
		return "lm_head"
	}
	return "Role(" + strconv.Itoa(int(r)) + ")"
}

// Tensor is one tensor of the Hugging Face checkpoint of the text model.
type Tensor struct {
	// Name is the checkpoint name, e.g. "model.layers.3.self_attn.q_proj.weight".
	Name string
	// Shape is the row-major (PyTorch) shape: (out, in) for a Linear weight.
	Shape []int64
	Role  Role
	// Layer is the decoder layer, -1 for embed_tokens, norm and lm_head.
	Layer int
	// Module is the module's own name: "q_proj", "input_layernorm",
	// "embed_tokens", "norm", "lm_head", ...
	Module string
	// Bias marks a Linear's bias vector.
	Bias bool
}

// Params is the number of values in the tensor.
func (t Tensor) Params() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Quantizable reports whether the tensor is the weight of a Linear inside a
// decoder layer: what QLoRA stores as NF4 (embeddings, lm_head, norms and
// biases stay in 16 bits).
func (t Tensor) Quantizable() bool {
	return t.Layer >= 0 && !t.Bias && (t.Role == RoleAttention || t.Role == RoleMLP)
}

// slot is one tensor of a decoder layer, by its path inside the layer.
type slot struct {
	path    string // "self_attn.q_proj.weight"
	module  string
	role    Role
	shape   []int64
	bias    bool
	linear  bool // the module is a Linear (LoRA-adaptable)
	inFeat  int64
	outFeat int64
}

// layerSlots lists the tensors of one decoder layer in the order of
// named_parameters (module registration order).
func (c *Config) layerSlots() []slot {
	h, i := int64(c.Hidden), int64(c.Intermediate)
	q, kv, hd := int64(c.Heads*c.HeadDim), int64(c.KVHeads*c.HeadDim), int64(c.HeadDim)
	var s []slot
	linear := func(block, module string, role Role, in, out int64, bias bool) {
		s = append(s, slot{path: block + "." + module + ".weight", module: module, role: role, shape: []int64{out, in}, linear: true, inFeat: in, outFeat: out})
		if bias {
			s = append(s, slot{path: block + "." + module + ".bias", module: module, role: role, shape: []int64{out}, bias: true, linear: true, inFeat: in, outFeat: out})
		}
	}
	norm := func(path, module string, n int64) {
		s = append(s, slot{path: path + ".weight", module: module, role: RoleNorm, shape: []int64{n}})
	}
	if c.FusedQKV {
		// Phi3Attention registers o_proj before qkv_proj.
		linear("self_attn", "o_proj", RoleAttention, q, h, c.OBias)
		linear("self_attn", "qkv_proj", RoleAttention, h, q+2*kv, c.QKVBias)
	} else {
		linear("self_attn", "q_proj", RoleAttention, h, q, c.QKVBias)
		linear("self_attn", "k_proj", RoleAttention, h, kv, c.QKVBias)
		linear("self_attn", "v_proj", RoleAttention, h, kv, c.QKVBias)
		linear("self_attn", "o_proj", RoleAttention, q, h, c.OBias)
	}
	if c.QKNorm {
		norm("self_attn.q_norm", "q_norm", hd)
		norm("self_attn.k_norm", "k_norm", hd)
	}
	if c.FusedGateUp {
		linear("mlp", "gate_up_proj", RoleMLP, h, 2*i, c.MLPBias)
	} else {
		linear("mlp", "gate_proj", RoleMLP, h, i, c.MLPBias)
		linear("mlp", "up_proj", RoleMLP, h, i, c.MLPBias)
	}
	linear("mlp", "down_proj", RoleMLP, i, h, c.MLPBias)
	norm("input_layernorm", "input_layernorm", h)
	norm("post_attention_layernorm", "post_attention_layernorm", h)
	if c.SandwichNorms {
		norm("pre_feedforward_layernorm", "pre_feedforward_layernorm", h)
		norm("post_feedforward_layernorm", "post_feedforward_layernorm", h)
	}
	return s
}

// globalTensors are the tensors outside the layers: embed_tokens, then (in
// Tensors' order, after the layers) the final norm and lm_head.
func (c *Config) globalTensors() (embed Tensor, tail []Tensor) {
	v, h := int64(c.Vocab), int64(c.Hidden)
	embed = Tensor{Name: "model.embed_tokens.weight", Shape: []int64{v, h}, Role: RoleEmbedding, Layer: -1, Module: "embed_tokens"}
	tail = []Tensor{{Name: "model.norm.weight", Shape: []int64{h}, Role: RoleNorm, Layer: -1, Module: "norm"}}
	if !c.TiedEmbeddings {
		tail = append(tail, Tensor{Name: "lm_head.weight", Shape: []int64{v, h}, Role: RoleLMHead, Layer: -1, Module: "lm_head"})
	}
	return embed, tail
}

// LayerPrefix is the checkpoint prefix of decoder layer l: "model.layers.3.".
func LayerPrefix(l int) string { return "model.layers." + strconv.Itoa(l) + "." }

// Tensors lists every tensor of the text model's Hugging Face checkpoint in
// named_parameters order: embed_tokens, each layer's tensors, the final norm,
// and lm_head unless embeddings are tied. Names are the text model's; see
// Config.TextName for a multimodal wrapper's checkpoint names.
func (c *Config) Tensors() []Tensor {
	slots := c.layerSlots()
	embed, tail := c.globalTensors()
	out := make([]Tensor, 0, 1+len(slots)*c.Layers+len(tail))
	out = append(out, embed)
	for l := 0; l < c.Layers; l++ {
		p := LayerPrefix(l)
		for _, s := range slots {
			out = append(out, Tensor{Name: p + s.path, Shape: s.shape, Role: s.role, Layer: l, Module: s.module, Bias: s.bias})
		}
	}
	return append(out, tail...)
}

// Tensor looks a text-model tensor up by name; ok is false for a name that
// is not part of this config's layout (including layers beyond
// num_hidden_layers and lm_head of a tied model).
func (c *Config) Tensor(name string) (Tensor, bool) {
	if rest, ok := strings.CutPrefix(name, "model.layers."); ok {
		n, path, ok := strings.Cut(rest, ".")
		l, err := strconv.Atoi(n)
		if !ok || err != nil || l < 0 || l >= c.Layers || strconv.Itoa(l) != n {
			return Tensor{}, false
		}
		for _, s := range c.layerSlots() {
			if s.path == path {
				return Tensor{Name: name, Shape: s.shape, Role: s.role, Layer: l, Module: s.module, Bias: s.bias}, true
			}
		}
		return Tensor{}, false
	}
	embed, tail := c.globalTensors()
	for _, t := range append([]Tensor{embed}, tail...) {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

// isLinearModule reports whether a module name is a Linear of the family.
func isLinearModule(m string) bool {
	switch m {
	case "q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "gate_proj", "up_proj", "down_proj", "gate_up_proj", "lm_head":
		return true
	}
	return false
}
