package export

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/lorakit/lorakit/pkg/gguf"
)

// llama3Regex is Llama 3's pre-tokenizer split regex (spec §3.6).
const llama3Regex = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// byteLevelTokenizer is a small Llama 3-style tokenizer.json.
func byteLevelTokenizer(t testing.TB, regex string, merges any) []byte {
	return mustJSON(t, map[string]any{
		"version": "1.0",
		"added_tokens": []any{
			map[string]any{"id": 5, "content": "<|begin_of_text|>", "special": true},
			map[string]any{"id": 6, "content": "<|eot_id|>", "special": true},
			map[string]any{"id": 7, "content": "myword", "special": false},
			map[string]any{"id": 8, "content": "<|tool|>", "special": false},
		},
		"normalizer": nil,
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": regex}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
		}},
		"post_processor": map[string]any{"type": "Sequence", "processors": []any{
			map[string]any{"type": "ByteLevel"},
			map[string]any{"type": "TemplateProcessing", "single": []any{
				map[string]any{"SpecialToken": map[string]any{"id": "<|begin_of_text|>", "type_id": 0}},
				map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
			}},
		}},
		"model": map[string]any{"type": "BPE", "byte_fallback": false, "ignore_merges": true,
			"vocab": map[string]int{"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġa": 4}, "merges": merges},
	})
}

func TestReadVocabByteLevel(t *testing.T) {
	tok := byteLevelTokenizer(t, llama3Regex, []any{[]string{"a", "b"}, []string{"Ġ", "a"}, []string{"a b", "c"}})
	files := map[string][]byte{
		"tokenizer.json":        tok,
		"tokenizer_config.json": []byte(`{"bos_token": "<|begin_of_text|>", "eos_token": {"content": "<|eot_id|>"}, "unk_token": null, "chat_template": "{{ messages }}"}`),
		"config.json":           []byte(`{"pad_token_id": 9, "eos_token_id": [1, 2], "bos_token_id": 0}`),
	}
	v, err := ReadVocab(files, 10, "")
	if err != nil {
		t.Fatal(err)
	}
	if v.Model != TokenizerGPT2 || v.Pre != "llama-bpe" {
		t.Errorf("model %q pre %q", v.Model, v.Pre)
	}
	wantTokens := []string{"a", "b", "ab", "Ġ", "Ġa", "<|begin_of_text|>", "<|eot_id|>", "myword", "<|tool|>", "[PAD9]"}
	wantTypes := []int32{1, 1, 1, 1, 1, 3, 3, 4, 3, 5}
	if !slices.Equal(v.Tokens, wantTokens) || !slices.Equal(v.Types, wantTypes) {
		t.Errorf("tokens %q types %v", v.Tokens, v.Types)
	}
	if want := []string{"a b", "Ġ a", "aĠb c"}; !slices.Equal(v.Merges, want) {
		t.Errorf("merges %q, want %q", v.Merges, want)
	}
	if v.Special["bos"] != 5 || v.Special["eos"] != 6 || v.Special["pad"] != 9 || len(v.Special) != 3 {
		t.Errorf("special %v", v.Special)
	}
	if v.AddBOS == nil || !*v.AddBOS || v.AddEOS != nil {
		t.Errorf("add_bos %v add_eos %v", v.AddBOS, v.AddEOS)
	}
	if v.ChatTemplate != "{{ messages }}" || v.Scores != nil || v.AddSpacePrefix != nil {
		t.Errorf("template %q scores %v", v.ChatTemplate, v.Scores)
	}
	// The KVs are what llama.cpp reads, with its types.
	kvs := gguf.Metadata(v.KVs())
	for key, want := range map[string]string{
		"tokenizer.ggml.model": "string", "tokenizer.ggml.pre": "string", "tokenizer.ggml.tokens": "[]string",
		"tokenizer.ggml.token_type": "[]int32", "tokenizer.ggml.merges": "[]string", "tokenizer.ggml.bos_token_id": "uint32",
		"tokenizer.ggml.eos_token_id": "uint32", "tokenizer.ggml.padding_token_id": "uint32",
		"tokenizer.ggml.add_bos_token": "bool", "tokenizer.chat_template": "string",
	} {
		got, ok := kvs.Get(key)
		if !ok || typeName(got) != want {
			t.Errorf("%s: %T, want %s", key, got, want)
		}
	}
	if _, err := gguf.NewWriter(discard{}, kvs, nil); err != nil {
		t.Error(err)
	}

	// tokenizer_config.json's add_bos_token overrides the post-processor; a list-valued
	// chat_template goes to the default and named keys.
	files["tokenizer_config.json"] = []byte(`{"bos_token": "<|begin_of_text|>", "add_bos_token": false, "add_eos_token": true,
		"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]}`)
	v, err = ReadVocab(files, 10, "")
	if err != nil {
		t.Fatal(err)
	}
	if *v.AddBOS || !*v.AddEOS || v.ChatTemplate != "D" || len(v.NamedTemplates) != 1 || v.NamedTemplates[0] != (NamedTemplate{"tool_use", "T"}) {
		t.Errorf("add_bos %v add_eos %v templates %q %v", *v.AddBOS, *v.AddEOS, v.ChatTemplate, v.NamedTemplates)
	}
	kvs = v.KVs()
	if names, _ := kvs.Strings("tokenizer.chat_templates"); !slices.Equal(names, []string{"tool_use"}) || !kvs.Has("tokenizer.chat_template.tool_use") {
		t.Errorf("named templates: %v", names)
	}
	// chat_template.jinja when tokenizer_config.json has none.
	files["tokenizer_config.json"] = []byte(`{}`)
	files["chat_template.jinja"] = []byte("J")
	if v, err = ReadVocab(files, 10, ""); err != nil || v.ChatTemplate != "J" {
		t.Errorf("chat_template.jinja: %q %v", v.ChatTemplate, err)
	}
	// With no tokenizer_config.json special tokens, config.json's plain integers count;
	// lists are ignored.
	if v.Special["bos"] != 0 || v.Special["pad"] != 9 {
		t.Errorf("special from config.json: %v", v.Special)
	}
	if _, ok := v.Special["eos"]; ok {
		t.Errorf("eos taken from a list: %v", v.Special)
	}
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case []string:
		return "[]string"
	case []int32:
		return "[]int32"
	case uint32:
		return "uint32"
	case bool:
		return "bool"
	case []float32:
		return "[]float32"
	}
	return "other"
}

func TestReadVocabErrors(t *testing.T) {
	good := byteLevelTokenizer(t, llama3Regex, []string{"a b"})
	for _, tc := range []struct {
		name string
		tok  []byte
		n    int
		pre  string
		want error
	}{
		{"unknown regex", byteLevelTokenizer(t, `\s+`, []string{"a b"}), 10, "", ErrPreTokenizer},
		{"vocabulary beyond the embeddings", good, 8, "", ErrInvalid},
		{"no merges", byteLevelTokenizer(t, llama3Regex, []string{}), 10, "", ErrInvalid},
		{"bad merge", byteLevelTokenizer(t, llama3Regex, []any{[]string{"a"}}), 10, "", ErrInvalid},
		{"unigram", []byte(`{"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}`), 10, "", ErrUnsupported},
		{"not json", []byte(`{"model": `), 10, "", ErrInvalid},
		{"zero vocabulary", good, 0, "", ErrInvalid},
	} {
		_, err := ReadVocab(map[string][]byte{"tokenizer.json": tc.tok}, tc.n, tc.pre)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// --pre names an unrecognised pre-tokenizer.
	v, err := ReadVocab(map[string][]byte{"tokenizer.json": byteLevelTokenizer(t, `\s+`, []string{"a b"})}, 10, "gpt-2")
	if err != nil || v.Pre != "gpt-2" {
		t.Errorf("--pre: %v %q", err, v.Pre)
	}
	// Duplicate strings are renamed (llama.cpp asserts uniqueness).
	dup := mustJSON(t, map[string]any{
		"added_tokens": []any{map[string]any{"id": 3, "content": "a", "special": true}},
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": llama3Regex}},
			map[string]any{"type": "ByteLevel"}}},
		"model": map[string]any{"type": "BPE", "vocab": map[string]int{"a": 0, "b": 1}, "merges": []string{"a b"}},
	})
	v, err = ReadVocab(map[string][]byte{"tokenizer.json": dup}, 4, "")
	if err != nil || v.Tokens[3] != "[PAD3]" || v.Types[3] != TokenUnused || !hasWarning(v.Warnings, "repeats") {
		t.Errorf("duplicates: %v %q %v", err, v.Tokens, v.Warnings)
	}
}

// TestReadVocabSentencePiece: a byte-fallback BPE (Llama 2, Mistral) becomes model
// "llama" with BYTE tokens and scores ordered like the merges.
func TestReadVocabSentencePiece(t *testing.T) {
	tok := mustJSON(t, map[string]any{
		"added_tokens": []any{
			map[string]any{"id": 0, "content": "<unk>", "special": true},
			map[string]any{"id": 1, "content": "<s>", "special": true},
			map[string]any{"id": 2, "content": "</s>", "special": true},
		},
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "▁"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"}}},
		"post_processor": map[string]any{"type": "TemplateProcessing", "single": []any{
			map[string]any{"SpecialToken": map[string]any{"id": "<s>"}}, map[string]any{"Sequence": map[string]any{"id": "A"}}}},
		"model": map[string]any{"type": "BPE", "byte_fallback": true, "unk_token": "<unk>",
			"vocab":  map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "▁▁": 4, "▁t": 5, "▁": 6, "t": 7, "h": 8, "▁th": 9},
			"merges": []string{"▁ t", "▁t h", "▁ ▁"}},
	})
	files := map[string][]byte{"tokenizer.json": tok, "tokenizer_config.json": []byte(`{"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}`)}
	v, err := ReadVocab(files, 10, "")
	if err != nil {
		t.Fatal(err)
	}
	if v.Model != TokenizerLlama || v.Pre != "default" || v.Merges != nil {
		t.Errorf("model %q pre %q merges %v", v.Model, v.Pre, v.Merges)
	}
	if want := []int32{2, 3, 3, 6, 1, 1, 1, 1, 1, 1}; !slices.Equal(v.Types, want) {
		t.Errorf("types %v, want %v", v.Types, want)
	}
	// ▁t (merge 0) > ▁th (merge 1) > ▁▁ (merge 2) > unmerged singles.
	s := v.Scores
	if !(s[5] > s[9] && s[9] > s[4] && s[4] > s[6] && s[6] > s[8]) || s[0] != 0 || s[3] != 0 {
		t.Errorf("scores %v", s)
	}
	if v.AddSpacePrefix == nil || !*v.AddSpacePrefix || v.AddBOS == nil || !*v.AddBOS {
		t.Errorf("add_space_prefix %v add_bos %v", v.AddSpacePrefix, v.AddBOS)
	}
	if v.Special["bos"] != 1 || v.Special["eos"] != 2 || v.Special["unk"] != 0 {
		t.Errorf("special %v", v.Special)
	}
	kvs := gguf.Metadata(v.KVs())
	if sc, ok := kvs.Get("tokenizer.ggml.scores"); !ok || typeName(sc) != "[]float32" {
		t.Errorf("scores key: %T", sc)
	}
	if b, ok := kvs.Bool("tokenizer.ggml.add_space_prefix"); !ok || !b {
		t.Error("add_space_prefix not written")
	}
}

func TestMinimalVocab(t *testing.T) {
	v := MinimalVocab(256)
	if v.Model != TokenizerLlama || len(v.Tokens) != 256 || v.Tokens[0x41] != "<0x41>" || v.Types[0] != TokenByte || !v.Minimal {
		t.Errorf("%+v", v)
	}
	v = MinimalVocab(100)
	if v.Model != TokenizerNoVocab || v.Tokens != nil || len(v.Warnings) == 0 {
		t.Errorf("n < 256: %+v", v)
	}
	kvs := gguf.Metadata(NoVocab(7).KVs())
	if len(kvs) != 1 || kvs[0].Value != TokenizerNoVocab {
		t.Errorf("no_vocab KVs %v", kvs)
	}
}

// FuzzReadVocab: any tokenizer files give an error or a vocabulary GGUF accepts, with
// one unique string per id.
func FuzzReadVocab(f *testing.F) {
	f.Add(byteLevelTokenizer(f, llama3Regex, []any{[]string{"a", "b"}, "Ġ a"}), []byte(`{"bos_token": "<|begin_of_text|>", "chat_template": "x"}`), []byte(`{"eos_token_id": 6}`), uint16(10))
	f.Add([]byte(`{"model": {"type": "BPE", "byte_fallback": true, "vocab": {"<0x00>": 0, "▁a": 1}, "merges": ["▁ a"]}}`), []byte(`{}`), []byte(`{}`), uint16(3))
	f.Add([]byte(`{"added_tokens": [{"id": 1, "content": "a"}], "model": {"vocab": {"a": 0}, "merges": ["a a"]}, "pre_tokenizer": {"type": "ByteLevel"}}`), []byte(`{"chat_template": [{"name": "default", "template": "t"}]}`), []byte(`{"bos_token_id": 1}`), uint16(2))
	f.Fuzz(func(t *testing.T, tok, tc, cfg []byte, n uint16) {
		files := map[string][]byte{"tokenizer.json": tok, "tokenizer_config.json": tc, "config.json": cfg}
		v, err := ReadVocab(files, int(n), "")
		if err != nil {
			return
		}
		if v.Model != TokenizerNoVocab {
			if len(v.Tokens) != int(n) || len(v.Types) != int(n) {
				t.Fatalf("%d tokens, %d types for n = %d", len(v.Tokens), len(v.Types), n)
			}
			seen := map[string]bool{}
			for _, s := range v.Tokens {
				if seen[s] {
					t.Fatalf("duplicate token %q", s)
				}
				seen[s] = true
			}
		}
		for typ, id := range v.Special {
			if id < 0 || id >= int(n) {
				t.Fatalf("%s id %d outside %d", typ, id, n)
			}
		}
		if _, err := gguf.NewWriter(discard{}, v.KVs(), nil); err != nil {
			t.Fatalf("GGUF refuses the vocabulary: %v", err)
		}
	})
}

// qwenRegex is the Split regex of Qwen2/2.5/3: Llama 3's with single digits.
const qwenRegex = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// TestReadVocabQwen: Qwen's byte-level BPE maps to llama.cpp's "qwen2" pre-tokenizer;
// its non-special added tokens (<think>, <tool_call>) are user-defined, so llama.cpp
// splits them out of any text as transformers does, and no BOS is added.
func TestReadVocabQwen(t *testing.T) {
	tok := mustJSON(t, map[string]any{
		"added_tokens": []any{
			map[string]any{"id": 5, "content": "<|endoftext|>", "special": true},
			map[string]any{"id": 6, "content": "<|im_start|>", "special": true},
			map[string]any{"id": 7, "content": "<|im_end|>", "special": true},
			map[string]any{"id": 8, "content": "<think>", "special": false},
		},
		"normalizer": map[string]any{"type": "NFC"},
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": qwenRegex}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
		}},
		"post_processor": map[string]any{"type": "ByteLevel"},
		"model":          map[string]any{"type": "BPE", "vocab": map[string]int{"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġa": 4}, "merges": [][]string{{"a", "b"}, {"Ġ", "a"}}},
	})
	files := map[string][]byte{
		"tokenizer.json":        tok,
		"tokenizer_config.json": []byte(`{"add_bos_token": false, "bos_token": null, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": "{{ messages }}"}`),
		"config.json":           []byte(`{"bos_token_id": 5, "eos_token_id": 7}`),
	}
	v, err := ReadVocab(files, 12, "")
	if err != nil {
		t.Fatal(err)
	}
	if v.Model != TokenizerGPT2 || v.Pre != "qwen2" {
		t.Errorf("model %q pre %q", v.Model, v.Pre)
	}
	if want := []int32{1, 1, 1, 1, 1, 3, 3, 3, 4, 5, 5, 5}; !slices.Equal(v.Types, want) {
		t.Errorf("types %v, want %v", v.Types, want)
	}
	if v.AddBOS == nil || *v.AddBOS || v.Special["eos"] != 7 || v.Special["pad"] != 5 {
		t.Errorf("add_bos %v special %v", v.AddBOS, v.Special)
	}
}

// TestReadVocabGemma3: Gemma 3's SentencePiece-style BPE (spaces replaced by ▁, no
// prefix space, byte fallback) maps to llama.cpp's "llama" model with
// add_space_prefix false, BYTE tokens and scores ordered like the merges.
func TestReadVocabGemma3(t *testing.T) {
	tok := mustJSON(t, map[string]any{
		"added_tokens": []any{
			map[string]any{"id": 0, "content": "<pad>", "special": true},
			map[string]any{"id": 1, "content": "<eos>", "special": true},
			map[string]any{"id": 2, "content": "<bos>", "special": true},
			map[string]any{"id": 3, "content": "<unk>", "special": true},
			map[string]any{"id": 4, "content": "<start_of_turn>", "special": false},
			map[string]any{"id": 5, "content": "<end_of_turn>", "special": false},
		},
		"normalizer":    map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
		"pre_tokenizer": map[string]any{"type": "Split", "pattern": map[string]any{"String": " "}, "behavior": "MergedWithPrevious", "invert": false},
		"post_processor": map[string]any{"type": "TemplateProcessing", "single": []any{
			map[string]any{"SpecialToken": map[string]any{"id": "<bos>"}}, map[string]any{"Sequence": map[string]any{"id": "A"}}}},
		"model": map[string]any{"type": "BPE", "byte_fallback": true, "fuse_unk": true, "unk_token": "<unk>",
			"vocab": map[string]int{"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<start_of_turn>": 4, "<end_of_turn>": 5,
				"<0x0A>": 6, "▁": 7, "h": 8, "i": 9, "▁h": 10, "▁hi": 11, "\n\n": 12, "\n": 13},
			"merges": [][]string{{"▁", "h"}, {"\n", "\n"}, {"▁h", "i"}}},
	})
	files := map[string][]byte{"tokenizer.json": tok,
		"tokenizer_config.json": []byte(`{"add_bos_token": true, "add_eos_token": false, "bos_token": "<bos>", "eos_token": "<end_of_turn>", "pad_token": "<pad>", "unk_token": "<unk>"}`)}
	v, err := ReadVocab(files, 16, "")
	if err != nil {
		t.Fatal(err)
	}
	if v.Model != TokenizerLlama || v.Pre != "default" || v.AddSpacePrefix == nil || *v.AddSpacePrefix {
		t.Errorf("model %q pre %q add_space_prefix %v", v.Model, v.Pre, v.AddSpacePrefix)
	}
	if want := []int32{3, 3, 3, 2, 4, 4, 6, 1, 1, 1, 1, 1, 1, 1, 5, 5}; !slices.Equal(v.Types, want) {
		t.Errorf("types %v, want %v", v.Types, want)
	}
	s := v.Scores
	if !(s[10] > s[12] && s[12] > s[11] && s[11] > s[7]) {
		t.Errorf("scores %v", s)
	}
	if v.Special["bos"] != 2 || v.Special["eos"] != 5 || v.Special["unk"] != 3 || v.Special["pad"] != 0 {
		t.Errorf("special %v", v.Special)
	}
	if v.AddBOS == nil || !*v.AddBOS || v.AddEOS == nil || *v.AddEOS {
		t.Errorf("add_bos %v add_eos %v", v.AddBOS, v.AddEOS)
	}
}
