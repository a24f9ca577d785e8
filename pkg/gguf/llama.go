package gguf

import (
	"fmt"
	"strings"

	"github.com/lorakit/lorakit/pkg/errclass"
)

// ErrUnknownTensor reports an HF tensor name that has no GGUF counterpart.
var ErrUnknownTensor = errclass.New(errclass.Invalid, "gguf: unknown tensor name")

var llamaGlobalNames = map[string]string{
	"model.embed_tokens.weight": "token_embd.weight",
	"model.norm.weight":         "output_norm.weight",
	"lm_head.weight":            "output.weight",
}

var llamaLayerNames = map[string]string{
	"input_layernorm.weight":          "attn_norm.weight",
	"post_attention_layernorm.weight": "ffn_norm.weight",
	"self_attn.q_proj.weight":         "attn_q.weight",
	"self_attn.k_proj.weight":         "attn_k.weight",
	"self_attn.v_proj.weight":         "attn_v.weight",
	"self_attn.o_proj.weight":         "attn_output.weight",
	"self_attn.q_proj.bias":           "attn_q.bias",
	"self_attn.k_proj.bias":           "attn_k.bias",
	"self_attn.v_proj.bias":           "attn_v.bias",
	"self_attn.o_proj.bias":           "attn_output.bias",
	"mlp.gate_proj.weight":            "ffn_gate.weight",
	"mlp.up_proj.weight":              "ffn_up.weight",
	"mlp.down_proj.weight":            "ffn_down.weight",
	"mlp.gate_proj.bias":              "ffn_gate.bias",
	"mlp.up_proj.bias":                "ffn_up.bias",
	"mlp.down_proj.bias":              "ffn_down.bias",
}

// LlamaTensorName maps a Hugging Face Llama tensor name (LlamaForCausalLM) to its GGUF
// name (spec §3.2), e.g. "model.layers.3.self_attn.q_proj.weight" →
// "blk.3.attn_q.weight". Rotary caches ("…rotary_emb.inv_freq") map to "" with a nil
// error: drop them. Any other name gives ErrUnknownTensor (llama.cpp refuses extra
// tensors).
func LlamaTensorName(hf string) (string, error) {
	if strings.HasSuffix(hf, "rotary_emb.inv_freq") {
		return "", nil
	}
	if g, ok := llamaGlobalNames[hf]; ok {
		return g, nil
	}
	if rest, ok := strings.CutPrefix(hf, "model.layers."); ok {
		if n, suffix, ok := strings.Cut(rest, "."); ok && isLayerIndex(n) {
			if g, ok := llamaLayerNames[suffix]; ok {
				return "blk." + n + "." + g, nil
			}
		}
	}
	return "", fmt.Errorf("%w: %q", ErrUnknownTensor, hf)
}

// isLayerIndex reports whether s is a decimal number without leading zeros.
func isLayerIndex(s string) bool {
	if s == "" || len(s) > 1 && s[0] == '0' || len(s) > 6 {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// LlamaQKRowOrder returns, for each row of a permuted q_proj or k_proj weight (or bias)
// with rows = nHead·hd, the row of the HF tensor it comes from (spec §3.4):
//
//	new_row[h·hd + 2i + j] = old_row[h·hd + j·(hd/2) + i],  i < hd/2, j ∈ {0, 1}
//
// This turns HF's NEOX-style rotary layout into llama.cpp's adjacent pairs. Use nHead =
// num_attention_heads for q and num_key_value_heads for k; never permute v, o or others.
// For a LoRA adapter, permute the rows of B only.
func LlamaQKRowOrder(rows, nHead int) ([]int, error) {
	if nHead <= 0 || rows <= 0 || rows%nHead != 0 || (rows/nHead)%2 != 0 {
		return nil, fmt.Errorf("%w: %d rows cannot be split into %d heads of even size", ErrDims, rows, nHead)
	}
	hd := rows / nHead
	order := make([]int, rows)
	for h := 0; h < nHead; h++ {
		for i := 0; i < hd/2; i++ {
			for j := 0; j < 2; j++ {
				order[h*hd+2*i+j] = h*hd + j*(hd/2) + i
			}
		}
	}
	return order, nil
}

// PermuteLlamaQK writes into dst the row-major matrix src (rows × len(src)/rows) with its
// rows reordered by LlamaQKRowOrder(rows, nHead). dst and src must not overlap.
func PermuteLlamaQK(dst, src []float32, rows, nHead int) error {
	order, err := LlamaQKRowOrder(rows, nHead)
	if err != nil {
		return err
	}
	if len(src)%rows != 0 || len(dst) != len(src) {
		return fmt.Errorf("%w: %d values into %d rows (dst %d)", ErrSize, len(src), rows, len(dst))
	}
	cols := len(src) / rows
	for r, from := range order {
		copy(dst[r*cols:(r+1)*cols], src[from*cols:(from+1)*cols])
	}
	return nil
}
