package randmodel

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Special tokens of the generated tokenizer: its last three ids.
const (
	BOSToken = "<|begin_of_text|>"
	EOSToken = "<|end_of_text|>"
	PadToken = "<|pad|>"
)

// splitRegex is Llama 3's pre-tokenizer regex, which llama.cpp knows as
// "llama-bpe".
const splitRegex = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// TokenizerFiles returns tokenizer.json and tokenizer_config.json of a
// byte-level BPE tokenizer of n tokens (n ≥ 260): ids 0–255 are the bytes
// (GPT-2's byte alphabet), then merges of two printable ASCII characters,
// lower-case letters first ("aa", "ab", ..., "a!", ...), then BOSToken, EOSToken and PadToken as ids n−3,
// n−2 and n−1. transformers, tokenizers and llama.cpp read it.
func TokenizerFiles(n int) (tokJSON, cfgJSON []byte, err error) {
	chars := []rune("abcdefghijklmnopqrstuvwxyz")
	for r := '!'; r <= '~'; r++ {
		if r < 'a' || r > 'z' {
			chars = append(chars, r)
		}
	}
	printable := len(chars)
	merges := n - 256 - 3
	if merges < 1 || merges > printable*printable {
		return nil, nil, fmt.Errorf("randmodel: a tokenizer of %d tokens (want 260 to %d)", n, 259+printable*printable)
	}
	alphabet := byteAlphabet()
	var vocab strings.Builder // model.vocab in id order
	vocab.WriteByte('{')
	entry := func(tok string, id int) {
		if id > 0 {
			vocab.WriteByte(',')
		}
		k, _ := json.Marshal(tok)
		vocab.Write(k)
		vocab.WriteString(":" + strconv.Itoa(id))
	}
	for b := range 256 {
		entry(string(alphabet[b]), b)
	}
	pairs := make([][2]string, merges)
	for k := range pairs {
		a, b := string(chars[k/printable]), string(chars[k%printable])
		pairs[k] = [2]string{a, b}
		entry(a+b, 256+k)
	}
	vocab.WriteByte('}')
	var added []map[string]any
	for i, s := range []string{BOSToken, EOSToken, PadToken} {
		added = append(added, map[string]any{"id": n - 3 + i, "content": s, "single_word": false, "lstrip": false,
			"rstrip": false, "normalized": false, "special": true})
	}
	tok := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil, "added_tokens": added, "normalizer": nil,
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": splitRegex}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
		}},
		"post_processor": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
		"decoder":        map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
			"vocab": json.RawMessage(vocab.String()), "merges": pairs},
	}
	if tokJSON, err = json.MarshalIndent(tok, "", "  "); err != nil {
		return nil, nil, err
	}
	cfg := map[string]any{"bos_token": BOSToken, "eos_token": EOSToken, "pad_token": PadToken, "add_bos_token": false,
		"clean_up_tokenization_spaces": false, "model_max_length": 1 << 20, "tokenizer_class": "PreTrainedTokenizerFast"}
	if cfgJSON, err = json.MarshalIndent(cfg, "", "  "); err != nil {
		return nil, nil, err
	}
	return append(tokJSON, '\n'), append(cfgJSON, '\n'), nil
}

// byteAlphabet is GPT-2's bytes_to_unicode: printable bytes stand for
// themselves, the others for U+0100 onwards.
func byteAlphabet() [256]rune {
	var m [256]rune
	next := rune(256)
	for b := range 256 {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE {
			m[b] = rune(b)
		} else {
			m[b], next = next, next+1
		}
	}
	return m
}
