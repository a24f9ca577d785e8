package peft

import (
	"fmt"
	"strings"
)

// Role is what a tensor of an adapter file is for.
type Role uint8

// Tensor roles (spec §3.2).
const (
	RoleUnknown          Role = iota
	RoleLoraA                 // <module>.lora_A.weight (r, in); MLX <module>.lora_a (in, r)
	RoleLoraB                 // <module>.lora_B.weight (out, r); MLX <module>.lora_b (r, out)
	RoleLoraBBias             // <module>.lora_B.bias (out,) (lora_bias)
	RoleMagnitude             // <module>.lora_magnitude_vector (out,) (DoRA)
	RoleEmbeddingA            // <module>.lora_embedding_A (r, num_embeddings)
	RoleEmbeddingB            // <module>.lora_embedding_B (embedding_dim, r)
	RoleAdaLoraA              // <module>.lora_A (r, in), AdaLoRA
	RoleAdaLoraB              // <module>.lora_B (out, r), AdaLoRA
	RoleAdaLoraE              // <module>.lora_E (r, 1), AdaLoRA
	RoleIA3                   // <module>.ia3_l: (out, 1), or (1, in) for feedforward modules
	RoleTrainableTokens       // <embedding>.token_adapter.trainable_tokens_delta
	RolePromptEmbeddings      // prompt_embeddings (prompt learning)
	RoleBias                  // a bias replacing the base's (bias="all"/"lora_only")
	RoleFull                  // a full tensor replacing the base's (modules_to_save, saved embeddings)
)

var roleNames = [...]string{
	RoleUnknown: "unknown", RoleLoraA: "lora_A", RoleLoraB: "lora_B", RoleLoraBBias: "lora_B.bias",
	RoleMagnitude: "lora_magnitude_vector", RoleEmbeddingA: "lora_embedding_A",
	RoleEmbeddingB: "lora_embedding_B", RoleAdaLoraA: "adalora_A", RoleAdaLoraB: "adalora_B",
	RoleAdaLoraE: "lora_E", RoleIA3: "ia3_l", RoleTrainableTokens: "trainable_tokens_delta",
	RolePromptEmbeddings: "prompt_embeddings", RoleBias: "bias", RoleFull: "full",
}

// String returns a short name for the role.
func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("Role(%d)", r)
}

// IsLoRA reports whether the role belongs to a low-rank module (A, B, bias,
// magnitude, embedding A/B, AdaLoRA, IA3), as opposed to a full replacement
// tensor.
func (r Role) IsLoRA() bool { return r >= RoleLoraA && r <= RoleIA3 }

// Key is a normalised adapter tensor name.
type Key struct {
	Name       string // the name as stored in the file
	Module     string // module path relative to the HF model, e.g. "model.layers.0.self_attn.q_proj"
	Role       Role
	Param      string // RoleFull/RoleBias: the parameter ("weight", "bias") of Module that the tensor replaces
	Adapter    string // an adapter name left in the key (".default"), dropped from Module
	Prefixes   int    // how many "base_model.model." prefixes were stripped
	Transposed bool   // MLX layout: lora_a is (in, r), lora_b is (r, out)
}

// BaseName returns the base-model tensor the key belongs to: the module's
// weight for low-rank roles, Module.Param for full tensors and biases.
func (k Key) BaseName() string {
	switch k.Role {
	case RoleFull, RoleBias:
		if k.Module == "" {
			return k.Param
		}
		return k.Module + "." + k.Param
	case RolePromptEmbeddings:
		return ""
	}
	return k.Module + ".weight"
}

// Warning is a non-fatal finding about a key or an adapter, with a stable
// code for machine-readable reports.
type Warning struct {
	Code   string // e.g. "double-prefix", "adapter-name", "mlx-layout", "rank-mismatch"
	Tensor string // the tensor concerned, or ""
	Msg    string
}

// String renders the warning for humans.
func (w Warning) String() string {
	if w.Tensor == "" {
		return w.Msg
	}
	return fmt.Sprintf("tensor %q: %s", w.Tensor, w.Msg)
}

// Warning codes.
const (
	WarnDoublePrefix    = "double-prefix"
	WarnAdapterName     = "adapter-name"
	WarnMLX             = "mlx-layout"
	WarnMagnitudeWeight = "magnitude-weight"
	WarnRankMismatch    = "rank-mismatch"
	WarnNotTargeted     = "not-targeted"
	WarnExtraTensor     = "extra-tensor"
	WarnDoRAMismatch    = "dora-mismatch"
	WarnBiasMode        = "bias-mode"
)

// Prefix is the prefix PEFT puts before module paths.
const Prefix = "base_model.model."

// markers are the segments that name a low-rank role.
var markers = map[string]bool{
	"lora_A": true, "lora_B": true, "lora_embedding_A": true, "lora_embedding_B": true,
	"lora_magnitude_vector": true, "lora_E": true, "ia3_l": true, "trainable_tokens_delta": true,
	"lora_a": true, "lora_b": true, "modules_to_save": true,
}

// foreign are segment prefixes of other adapter formats.
var foreign = []string{"lora_", "hada_", "lokr_", "oft_", "boft_", "vera_", "fourierft_", "vblora_", "hra_", "dora_scale"}

// ParseKey normalises an adapter tensor name (spec §3.1, §3.3): it strips
// "base_model.model." (repeatedly, warning when more than once), drops an
// adapter name left in (".default" or any other, warning), accepts keys
// without prefix, recognises MLX lora_a/lora_b (transposed, warning), and
// refuses keys of other adapter formats (ErrUnsupportedKey) or malformed
// ones (ErrBadKey). Names without a low-rank marker are full tensors
// (modules_to_save copies, saved embeddings) or biases.
func ParseKey(name string) (Key, []Warning, error) {
	k := Key{Name: name}
	var warns []Warning
	fail := func(sentinel error, format string, args ...any) (Key, []Warning, error) {
		return Key{}, nil, fmt.Errorf("tensor %q: %s: %w", name, fmt.Sprintf(format, args...), sentinel)
	}
	if name == "" {
		return fail(ErrBadKey, "empty name")
	}
	s := name
	for strings.HasPrefix(s, Prefix) {
		s = s[len(Prefix):]
		k.Prefixes++
	}
	if k.Prefixes > 1 {
		warns = append(warns, Warning{WarnDoublePrefix, name, fmt.Sprintf("%q prefix appears %d times (model wrapped twice); stripped", Prefix, k.Prefixes)})
	}
	if s == "" {
		return fail(ErrBadKey, "no module path")
	}
	segs := strings.Split(s, ".")
	for _, g := range segs {
		if g == "" {
			return fail(ErrBadKey, "empty path segment")
		}
	}
	if s == "prompt_embeddings" {
		k.Role = RolePromptEmbeddings
		return k, warns, nil
	}
	j := -1
	for i := len(segs) - 1; i >= 0; i-- {
		g := segs[i]
		if markers[g] {
			j = i
			break
		}
		if g == "original_module" {
			return fail(ErrUnsupportedKey, "original_module copy: a raw PEFT state_dict, not a saved adapter")
		}
		if g == "base_layer" && i < len(segs)-1 {
			break // <module>.base_layer.<param>: a full tensor, handled below
		}
		for _, f := range foreign {
			if strings.HasPrefix(g, f) {
				return fail(ErrUnsupportedKey, "segment %q is not PEFT LoRA (LoHa/LoKr/OFT/kohya/LyCORIS/... are not supported)", g)
			}
		}
	}
	if j < 0 {
		return fullKey(k, segs, warns)
	}
	marker, tail := segs[j], segs[j+1:]
	module := segs[:j]
	if marker == "trainable_tokens_delta" {
		if j == 0 || segs[j-1] != "token_adapter" {
			return fail(ErrBadKey, "trainable_tokens_delta outside token_adapter")
		}
		module = segs[:j-1]
	}
	if len(module) == 0 {
		return fail(ErrBadKey, "%s without a module path", marker)
	}
	k.Module = strings.Join(module, ".")
	adapterName := func(n string) {
		k.Adapter = n
		warns = append(warns, Warning{WarnAdapterName, name, fmt.Sprintf("adapter name %q left in the key (state_dict saved directly); dropped", n)})
	}
	badTail := func() (Key, []Warning, error) {
		return fail(ErrBadKey, "unexpected %q after %s", strings.Join(tail, "."), marker)
	}
	switch marker {
	case "lora_A", "lora_B":
		last := ""
		switch len(tail) {
		case 0:
		case 1:
			if tail[0] == "weight" || tail[0] == "bias" {
				last = tail[0]
			} else {
				adapterName(tail[0]) // AdaLoRA ParameterDict entry with its name
			}
		case 2:
			if tail[1] != "weight" && tail[1] != "bias" {
				return badTail()
			}
			adapterName(tail[0])
			last = tail[1]
		default:
			return badTail()
		}
		switch {
		case last == "" && marker == "lora_A":
			k.Role = RoleAdaLoraA
		case last == "":
			k.Role = RoleAdaLoraB
		case last == "weight" && marker == "lora_A":
			k.Role = RoleLoraA
		case last == "weight":
			k.Role = RoleLoraB
		case marker == "lora_B":
			k.Role = RoleLoraBBias
		default:
			return fail(ErrBadKey, "lora_A has no bias")
		}
	case "lora_magnitude_vector":
		k.Role = RoleMagnitude
		switch {
		case len(tail) == 0:
		case len(tail) == 1 && tail[0] == "weight":
			warns = append(warns, Warning{WarnMagnitudeWeight, name, "magnitude saved with its in-memory \".weight\" suffix"})
		case len(tail) == 1:
			adapterName(tail[0])
		case len(tail) == 2 && tail[1] == "weight":
			adapterName(tail[0])
		default:
			return badTail()
		}
	case "lora_embedding_A", "lora_embedding_B", "lora_E", "ia3_l", "trainable_tokens_delta":
		k.Role = map[string]Role{
			"lora_embedding_A": RoleEmbeddingA, "lora_embedding_B": RoleEmbeddingB,
			"lora_E": RoleAdaLoraE, "ia3_l": RoleIA3, "trainable_tokens_delta": RoleTrainableTokens,
		}[marker]
		switch len(tail) {
		case 0:
		case 1:
			adapterName(tail[0])
		default:
			return badTail()
		}
	case "lora_a", "lora_b":
		if len(tail) != 0 {
			return badTail()
		}
		k.Role = RoleLoraA
		if marker == "lora_b" {
			k.Role = RoleLoraB
		}
		k.Transposed = true
		warns = append(warns, Warning{WarnMLX, name, "MLX layout (lora_a is (in, r), lora_b is (r, out)); transposed on import"})
	case "modules_to_save":
		// <module>.modules_to_save.<adapter>.<param>: a raw state_dict entry.
		if len(tail) < 2 {
			return badTail()
		}
		adapterName(tail[0])
		k.Role = RoleFull
		k.Param = strings.Join(tail[1:], ".")
		if strings.HasSuffix(k.Param, "bias") {
			k.Role = RoleBias
		}
	}
	return k, warns, nil
}

// fullKey classifies a name without a low-rank marker.
func fullKey(k Key, segs []string, warns []Warning) (Key, []Warning, error) {
	n := len(segs)
	k.Param = segs[n-1]
	mod := segs[:n-1]
	if len(mod) > 0 && mod[len(mod)-1] == "base_layer" {
		mod = mod[:len(mod)-1] // wrapped layer: <module>.base_layer.<param>
	}
	k.Module = strings.Join(mod, ".")
	k.Role = RoleFull
	if k.Param == "bias" {
		k.Role = RoleBias
	}
	return k, warns, nil
}
