package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// Shape is the architecture of the generated model.
type Shape struct {
	Hidden, Intermediate, Layers, Heads, KVHeads int
}

// DefaultShape is the demo's model: about 1.2M parameters.
var DefaultShape = Shape{Hidden: 128, Intermediate: 384, Layers: 2, Heads: 4, KVHeads: 4}

// Special tokens follow the 256 byte tokens; two merged tokens ("ĠĠ", "ĊĊ")
// come after them so that llama.cpp finds a merges list.
const (
	bosID     = 256
	eosID     = 257
	padID     = 258
	vocabSize = 261
	bosToken  = "<|begin_of_text|>"
	eosToken  = "<|end_of_text|>"
	padToken  = "<|pad|>"
)

// llama3Regex is Llama 3's pre-tokenizer split regex, which llama.cpp knows as
// "llama-bpe".
const llama3Regex = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// byteToUnicode is GPT-2's bytes_to_unicode: printable bytes map to
// themselves, the others to U+0100 onwards.
func byteToUnicode() [256]rune {
	var m [256]rune
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			m[b] = rune(b)
		} else {
			m[b] = rune(256 + n)
			n++
		}
	}
	return m
}

type addedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

func specials() []addedToken {
	var a []addedToken
	for i, s := range []string{bosToken, eosToken, padToken} {
		a = append(a, addedToken{ID: bosID + i, Content: s, Special: true})
	}
	return a
}

// orderedVocab marshals the vocabulary as a JSON object in id order.
type orderedVocab []string

func (v orderedVocab) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for id, s := range v {
		if id > 0 {
			b = append(b, ',')
		}
		k, err := json.Marshal(s)
		if err != nil {
			return nil, err
		}
		b = append(b, k...)
		b = fmt.Appendf(b, ":%d", id)
	}
	return append(b, '}'), nil
}

// TokenizerFiles returns tokenizer.json and tokenizer_config.json of a
// byte-level BPE tokenizer with one token per byte (id = byte value), two
// merges and the bos/eos/pad specials.
func TokenizerFiles() (tokJSON, cfgJSON []byte, err error) {
	m := byteToUnicode()
	vocab := make(orderedVocab, 0, 258)
	for b := 0; b < 256; b++ {
		vocab = append(vocab, string(m[b]))
	}
	sp, nl := string(m[' ']), string(m['\n'])
	merges := [][2]string{{sp, sp}, {nl, nl}}
	type model struct {
		Type                    string          `json:"type"`
		Dropout                 any             `json:"dropout"`
		UnkToken                any             `json:"unk_token"`
		ContinuingSubwordPrefix any             `json:"continuing_subword_prefix"`
		EndOfWordSuffix         any             `json:"end_of_word_suffix"`
		FuseUnk                 bool            `json:"fuse_unk"`
		ByteFallback            bool            `json:"byte_fallback"`
		IgnoreMerges            bool            `json:"ignore_merges"`
		Vocab                   json.RawMessage `json:"vocab"`
		Merges                  [][2]string     `json:"merges"`
	}
	// model.vocab: the bytes, then the two merged tokens after the specials
	// (which are added tokens, not BPE vocabulary).
	raw, err := vocab.MarshalJSON()
	if err != nil {
		return nil, nil, err
	}
	raw = append(raw[:len(raw)-1], fmt.Sprintf(",%q:%d,%q:%d}", sp+sp, vocabSize-2, nl+nl, vocabSize-1)...)
	special := map[string]any{bosToken: map[string]any{"id": bosToken, "ids": []int{bosID}, "tokens": []string{bosToken}}}
	tok := map[string]any{
		"version":      "1.0",
		"truncation":   nil,
		"padding":      nil,
		"added_tokens": specials(),
		"normalizer":   nil,
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": llama3Regex}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
		}},
		"post_processor": map[string]any{"type": "Sequence", "processors": []any{
			map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
			map[string]any{"type": "TemplateProcessing",
				"single": []any{
					map[string]any{"SpecialToken": map[string]any{"id": bosToken, "type_id": 0}},
					map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
				},
				"pair": []any{
					map[string]any{"SpecialToken": map[string]any{"id": bosToken, "type_id": 0}},
					map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
					map[string]any{"SpecialToken": map[string]any{"id": bosToken, "type_id": 1}},
					map[string]any{"Sequence": map[string]any{"id": "B", "type_id": 1}},
				},
				"special_tokens": special,
			},
		}},
		"decoder": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model":   model{Type: "BPE", Vocab: raw, Merges: merges},
	}
	if tokJSON, err = json.MarshalIndent(tok, "", "  "); err != nil {
		return nil, nil, err
	}
	dec := map[string]any{}
	for _, a := range specials() {
		dec[fmt.Sprint(a.ID)] = map[string]any{"content": a.Content, "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true}
	}
	cfg := map[string]any{
		"added_tokens_decoder":         dec,
		"bos_token":                    bosToken,
		"eos_token":                    eosToken,
		"pad_token":                    padToken,
		"clean_up_tokenization_spaces": false,
		"model_max_length":             512,
		"tokenizer_class":              "PreTrainedTokenizerFast",
	}
	if cfgJSON, err = json.MarshalIndent(cfg, "", "  "); err != nil {
		return nil, nil, err
	}
	return append(tokJSON, '\n'), append(cfgJSON, '\n'), nil
}

// ConfigJSON returns the model's config.json (transformers v5 layout).
func ConfigJSON(s Shape) ([]byte, error) {
	cfg := map[string]any{
		"architectures":           []string{"LlamaForCausalLM"},
		"attention_bias":          false,
		"attention_dropout":       0.0,
		"bos_token_id":            bosID,
		"eos_token_id":            eosID,
		"pad_token_id":            padID,
		"dtype":                   "float32",
		"head_dim":                s.Hidden / s.Heads,
		"hidden_act":              "silu",
		"hidden_size":             s.Hidden,
		"initializer_range":       0.02,
		"intermediate_size":       s.Intermediate,
		"max_position_embeddings": 512,
		"mlp_bias":                false,
		"model_type":              "llama",
		"num_attention_heads":     s.Heads,
		"num_hidden_layers":       s.Layers,
		"num_key_value_heads":     s.KVHeads,
		"pretraining_tp":          1,
		"rms_norm_eps":            1e-05,
		"rope_parameters":         map[string]any{"rope_theta": 10000.0, "rope_type": "default"},
		"tie_word_embeddings":     false,
		"transformers_version":    "5.17.0",
		"use_cache":               true,
		"vocab_size":              vocabSize,
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	return append(b, '\n'), err
}

// tensorSpec is one weight of the model and the standard deviation of its
// random values (0: all ones, for norms).
type tensorSpec struct {
	name  string
	shape []int64
	std   float64
}

func tensorSpecs(s Shape) []tensorSpec {
	h, im := int64(s.Hidden), int64(s.Intermediate)
	hd := int64(s.Hidden / s.Heads)
	q, kv := int64(s.Heads)*hd, int64(s.KVHeads)*hd
	ts := []tensorSpec{{"model.embed_tokens.weight", []int64{vocabSize, h}, 1}}
	for l := 0; l < s.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		ts = append(ts,
			tensorSpec{p + "input_layernorm.weight", []int64{h}, 0},
			tensorSpec{p + "self_attn.q_proj.weight", []int64{q, h}, 1 / math.Sqrt(float64(h))},
			tensorSpec{p + "self_attn.k_proj.weight", []int64{kv, h}, 1 / math.Sqrt(float64(h))},
			tensorSpec{p + "self_attn.v_proj.weight", []int64{kv, h}, 1 / math.Sqrt(float64(h))},
			tensorSpec{p + "self_attn.o_proj.weight", []int64{h, q}, 1 / math.Sqrt(float64(q))},
			tensorSpec{p + "post_attention_layernorm.weight", []int64{h}, 0},
			tensorSpec{p + "mlp.gate_proj.weight", []int64{im, h}, 1 / math.Sqrt(float64(h))},
			tensorSpec{p + "mlp.up_proj.weight", []int64{im, h}, 1 / math.Sqrt(float64(h))},
			tensorSpec{p + "mlp.down_proj.weight", []int64{h, im}, 1 / math.Sqrt(float64(im))},
		)
	}
	return append(ts,
		tensorSpec{"model.norm.weight", []int64{h}, 0},
		tensorSpec{"lm_head.weight", []int64{vocabSize, h}, 1 / math.Sqrt(float64(h))},
	)
}

// Generate writes the model to path (a folder, a .safetensors file or "-"):
// f32 weights drawn from a PCG generator seeded with seed, tensor by tensor in
// name order, so that the same seed and shape give the same bytes.
func Generate(path string, s Shape, seed uint64) error {
	if s.Hidden%s.Heads != 0 || s.Heads%s.KVHeads != 0 || s.Layers < 1 || s.Intermediate < 1 {
		return fmt.Errorf("demomodel: invalid shape %+v", s)
	}
	cfg, err := ConfigJSON(s)
	if err != nil {
		return err
	}
	tok, tokCfg, err := TokenizerFiles()
	if err != nil {
		return err
	}
	gen := []byte(fmt.Sprintf("{\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n  \"pad_token_id\": %d,\n  \"do_sample\": false,\n  \"transformers_version\": \"5.17.0\"\n}\n", bosID, eosID, padID))
	files := map[string][]byte{
		"config.json":            cfg,
		"generation_config.json": gen,
		"tokenizer.json":         tok,
		"tokenizer_config.json":  tokCfg,
	}
	specs := tensorSpecs(s)
	infos := make([]safetensors.TensorInfo, len(specs))
	byName := map[string]tensorSpec{}
	for i, t := range specs {
		infos[i] = safetensors.TensorInfo{Name: t.name, DType: dtype.F32, Shape: t.shape}
		byName[t.name] = t
	}
	w, err := checkpoint.Create(path, files, []checkpoint.Shard{{Name: "model.safetensors", Tensors: infos}})
	if err != nil {
		return err
	}
	for _, info := range w.Order() {
		// One generator per tensor, keyed by its index in specs: the values
		// do not depend on the write order.
		if err := w.WriteTensor(info.Name, tensorBytes(byName[info.Name], seed, indexOf(specs, info.Name))); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Commit()
}

func indexOf(specs []tensorSpec, name string) int {
	for i, t := range specs {
		if t.name == name {
			return i
		}
	}
	return -1
}

func tensorBytes(t tensorSpec, seed uint64, idx int) []byte {
	n := int64(1)
	for _, d := range t.shape {
		n *= d
	}
	out := make([]byte, 4*n)
	r := rand.New(rand.NewPCG(seed, uint64(idx)+1))
	for i := int64(0); i < n; i++ {
		v := float32(1)
		if t.std != 0 {
			v = float32(r.NormFloat64() * t.std)
		}
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
	}
	return out
}
