package peft

import (
	"errors"
	"strings"
	"testing"
)

func TestParseKey(t *testing.T) {
	const q = "model.layers.0.self_attn.q_proj"
	for _, tc := range []struct {
		name       string
		module     string
		role       Role
		param      string
		adapter    string
		prefixes   int
		transposed bool
		warn       string // warning code expected, "" for none
		base       string // BaseName
	}{
		{"base_model.model." + q + ".lora_A.weight", q, RoleLoraA, "", "", 1, false, "", q + ".weight"},
		{"base_model.model." + q + ".lora_B.weight", q, RoleLoraB, "", "", 1, false, "", q + ".weight"},
		{"base_model.model." + q + ".lora_B.bias", q, RoleLoraBBias, "", "", 1, false, "", q + ".weight"},
		{"base_model.model." + q + ".lora_magnitude_vector", q, RoleMagnitude, "", "", 1, false, "", q + ".weight"},
		{q + ".lora_A.weight", q, RoleLoraA, "", "", 0, false, "", q + ".weight"},
		{"base_model.model.base_model.model." + q + ".lora_A.weight", q, RoleLoraA, "", "", 2, false, WarnDoublePrefix, q + ".weight"},
		{"base_model.model." + q + ".lora_A.default.weight", q, RoleLoraA, "", "default", 1, false, WarnAdapterName, q + ".weight"},
		{"base_model.model." + q + ".lora_B.my_adapter.bias", q, RoleLoraBBias, "", "my_adapter", 1, false, WarnAdapterName, q + ".weight"},
		{"base_model.model." + q + ".lora_magnitude_vector.default.weight", q, RoleMagnitude, "", "default", 1, false, WarnAdapterName, q + ".weight"},
		{"base_model.model." + q + ".lora_magnitude_vector.weight", q, RoleMagnitude, "", "", 1, false, WarnMagnitudeWeight, q + ".weight"},
		{"base_model.model." + q + ".lora_magnitude_vector.default", q, RoleMagnitude, "", "default", 1, false, WarnAdapterName, q + ".weight"},
		{"base_model.model.model.embed_tokens.lora_embedding_A", "model.embed_tokens", RoleEmbeddingA, "", "", 1, false, "", "model.embed_tokens.weight"},
		{"base_model.model.model.embed_tokens.lora_embedding_B", "model.embed_tokens", RoleEmbeddingB, "", "", 1, false, "", "model.embed_tokens.weight"},
		{"base_model.model.model.embed_tokens.lora_embedding_A.default", "model.embed_tokens", RoleEmbeddingA, "", "default", 1, false, WarnAdapterName, "model.embed_tokens.weight"},
		{q + ".lora_a", q, RoleLoraA, "", "", 0, true, WarnMLX, q + ".weight"},
		{q + ".lora_b", q, RoleLoraB, "", "", 0, true, WarnMLX, q + ".weight"},
		{"base_model.model." + q + ".lora_A", q, RoleAdaLoraA, "", "", 1, false, "", q + ".weight"},
		{"base_model.model." + q + ".lora_B", q, RoleAdaLoraB, "", "", 1, false, "", q + ".weight"},
		{"base_model.model." + q + ".lora_E", q, RoleAdaLoraE, "", "", 1, false, "", q + ".weight"},
		{"base_model.model." + q + ".ia3_l", q, RoleIA3, "", "", 1, false, "", q + ".weight"},
		{"base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta", "model.embed_tokens", RoleTrainableTokens, "", "", 1, false, "", "model.embed_tokens.weight"},
		{"prompt_embeddings", "", RolePromptEmbeddings, "", "", 0, false, "", ""},
		{"base_model.model.lm_head.weight", "lm_head", RoleFull, "weight", "", 1, false, "", "lm_head.weight"},
		{"base_model.model.model.embed_tokens.weight", "model.embed_tokens", RoleFull, "weight", "", 1, false, "", "model.embed_tokens.weight"},
		{"base_model.model.score.weight", "score", RoleFull, "weight", "", 1, false, "", "score.weight"},
		{"base_model.model.lm_head.base_layer.weight", "lm_head", RoleFull, "weight", "", 1, false, "", "lm_head.weight"},
		{"base_model.model." + q + ".base_layer.bias", q, RoleBias, "bias", "", 1, false, "", q + ".bias"},
		{"base_model.model.model.norm.bias", "model.norm", RoleBias, "bias", "", 1, false, "", "model.norm.bias"},
		{"base_model.model.lm_head.modules_to_save.default.weight", "lm_head", RoleFull, "weight", "default", 1, false, WarnAdapterName, "lm_head.weight"},
		{"model.layers.0.input_layernorm.weight", "model.layers.0.input_layernorm", RoleFull, "weight", "", 0, false, "", "model.layers.0.input_layernorm.weight"},
	} {
		k, warns, err := ParseKey(tc.name)
		if err != nil {
			t.Errorf("ParseKey(%q): %v", tc.name, err)
			continue
		}
		if k.Name != tc.name || k.Module != tc.module || k.Role != tc.role || k.Param != tc.param ||
			k.Adapter != tc.adapter || k.Prefixes != tc.prefixes || k.Transposed != tc.transposed {
			t.Errorf("ParseKey(%q) = %+v", tc.name, k)
		}
		if b := k.BaseName(); b != tc.base {
			t.Errorf("ParseKey(%q).BaseName() = %q, want %q", tc.name, b, tc.base)
		}
		switch {
		case tc.warn == "" && len(warns) > 0:
			t.Errorf("ParseKey(%q): unexpected warnings %v", tc.name, warns)
		case tc.warn != "" && (len(warns) != 1 || warns[0].Code != tc.warn || warns[0].Tensor != tc.name):
			t.Errorf("ParseKey(%q): warnings %v, want one %s", tc.name, warns, tc.warn)
		}
	}
}

func TestParseKeyErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		want error
	}{
		{"", ErrBadKey},
		{"base_model.model.", ErrBadKey},
		{"a..lora_A.weight", ErrBadKey},
		{".lora_A.weight", ErrBadKey},
		{"lora_A.weight", ErrBadKey},
		{"base_model.model.lora_B.weight", ErrBadKey},
		{"x.lora_A.bias", ErrBadKey},
		{"x.lora_A.default.weight.extra", ErrBadKey},
		{"x.lora_A.a.b", ErrBadKey},
		{"x.lora_embedding_A.a.b", ErrBadKey},
		{"x.lora_a.weight", ErrBadKey},
		{"x.trainable_tokens_delta", ErrBadKey},
		{"x.modules_to_save.default", ErrBadKey},
		{"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", ErrUnsupportedKey},
		{"model.layers.0.q_proj.lora_down.weight", ErrUnsupportedKey},
		{"model.layers.0.q_proj.alpha.lora_up", ErrUnsupportedKey},
		{"base_model.model.model.layers.0.self_attn.q_proj.hada_w1_a", ErrUnsupportedKey},
		{"base_model.model.model.layers.0.self_attn.q_proj.lokr_w1", ErrUnsupportedKey},
		{"base_model.model.model.layers.0.self_attn.q_proj.oft_r", ErrUnsupportedKey},
		{"model.layers.0.self_attn.q_proj.dora_scale", ErrUnsupportedKey},
		{"base_model.model.lm_head.original_module.weight", ErrUnsupportedKey},
	} {
		_, _, err := ParseKey(tc.name)
		if !errors.Is(err, tc.want) {
			t.Errorf("ParseKey(%q) = %v, want %v", tc.name, err, tc.want)
		} else if !strings.Contains(err.Error(), `"`+tc.name+`"`) {
			t.Errorf("ParseKey(%q) error %q does not name the tensor", tc.name, err)
		}
	}
}

func TestRoleString(t *testing.T) {
	if RoleLoraA.String() != "lora_A" || RoleFull.String() != "full" || Role(200).String() != "Role(200)" {
		t.Error("Role.String")
	}
	if !RoleMagnitude.IsLoRA() || RoleFull.IsLoRA() || RoleBias.IsLoRA() || RoleTrainableTokens.IsLoRA() {
		t.Error("Role.IsLoRA")
	}
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{
		"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
		"base_model.model.base_model.model.model.layers.0.mlp.down_proj.lora_B.default.weight",
		"model.layers.0.self_attn.q_proj.lora_a", "prompt_embeddings", "base_model.model.lm_head.weight",
		"base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta", "x.lora_magnitude_vector.weight",
		"lora_unet_x.lora_down.weight", "a..b", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		k, warns, err := ParseKey(name)
		if err != nil {
			if !errors.Is(err, ErrBadKey) && !errors.Is(err, ErrUnsupportedKey) {
				t.Fatalf("ParseKey(%q): error without sentinel: %v", name, err)
			}
			return
		}
		if k.Name != name {
			t.Fatalf("Name %q != %q", k.Name, name)
		}
		if k.Role == RoleUnknown {
			t.Fatalf("ParseKey(%q): unknown role without error", name)
		}
		if k.Role.IsLoRA() && k.Module == "" {
			t.Fatalf("ParseKey(%q): low-rank role without module", name)
		}
		if strings.HasPrefix(k.Module, Prefix) {
			t.Fatalf("ParseKey(%q): prefix left in module %q", name, k.Module)
		}
		for _, w := range warns {
			if w.Code == "" || w.Tensor != name {
				t.Fatalf("ParseKey(%q): bad warning %+v", name, w)
			}
		}
	})
}
