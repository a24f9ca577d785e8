package main

import (
	"encoding/json"
	"fmt"

	"github.com/lorakit/lorakit/internal/randmodel"
	"github.com/lorakit/lorakit/pkg/dtype"
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

// config is the randmodel configuration of the demo's model: f32 weights
// initialised for training (embeddings N(0,1), projections N(0,1/fan_in),
// norms 1), the byte-level tokenizer and its special tokens.
func config(s Shape, seed uint64) (randmodel.Config, error) {
	if s.Hidden%s.Heads != 0 || s.Heads%s.KVHeads != 0 || s.Layers < 1 || s.Intermediate < 1 {
		return randmodel.Config{}, fmt.Errorf("demomodel: invalid shape %+v", s)
	}
	tok, tokCfg, err := TokenizerFiles()
	if err != nil {
		return randmodel.Config{}, err
	}
	bos, eos, pad := bosID, eosID, padID
	gen := []byte(fmt.Sprintf("{\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n  \"pad_token_id\": %d,\n  \"do_sample\": false,\n  \"transformers_version\": \"5.17.0\"\n}\n", bosID, eosID, padID))
	return randmodel.Config{Hidden: s.Hidden, Intermediate: s.Intermediate, Layers: s.Layers, Heads: s.Heads,
		KVHeads: s.KVHeads, Vocab: vocabSize, DType: dtype.F32, Seed: seed, MaxPositions: 512,
		BOS: &bos, EOS: &eos, Pad: &pad, Files: map[string][]byte{
			"generation_config.json": gen, "tokenizer.json": tok, "tokenizer_config.json": tokCfg}}, nil
}

// Generate writes the model to path (a folder, a .safetensors file or "-"):
// a pure function of the seed and the shape.
func Generate(path string, s Shape, seed uint64) error {
	c, err := config(s, seed)
	if err != nil {
		return err
	}
	return c.Write(path)
}
