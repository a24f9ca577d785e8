package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// byteLevelJSON builds a small Llama 3 style tokenizer.json: ids 0-255 are
// the byte tokens (id = byte value), then a few merges and added tokens.
func byteLevelJSON(ignoreMerges bool) []byte {
	vocab := map[string]int{}
	for b := range 256 {
		vocab[byteToStr[b]] = b
	}
	extra := []string{"Ġt", "he", "Ġthe", "ll", "ell", "hell", "hello", "abc"}
	for i, s := range extra {
		vocab[s] = 256 + i
	}
	tj := map[string]any{
		"version": "1.0",
		"added_tokens": []map[string]any{
			{"id": 300, "content": "<|bos|>", "special": true},
			{"id": 301, "content": "<sep>", "special": true, "lstrip": true, "rstrip": true},
			{"id": 302, "content": "word", "single_word": true},
		},
		"normalizer": nil,
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": patLlama3}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
		}},
		"post_processor": map[string]any{"type": "Sequence", "processors": []any{
			map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
			map[string]any{"type": "TemplateProcessing",
				"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<|bos|>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
				"special_tokens": map[string]any{"<|bos|>": map[string]any{"id": "<|bos|>", "ids": []int{300}, "tokens": []string{"<|bos|>"}}}},
		}},
		"decoder": map[string]any{"type": "ByteLevel"},
		"model": map[string]any{"type": "BPE", "ignore_merges": ignoreMerges, "vocab": vocab,
			"merges": []string{"Ġ t", "h e", "Ġt he", "l l", "e ll", "h ell", "hell o"}},
	}
	b, _ := json.Marshal(tj)
	return b
}

// spJSON builds a small Llama 2 style tokenizer.json.
func spJSON(byteFallback bool) []byte {
	vocab := map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2}
	for b := range 256 {
		vocab[fallbackName(byte(b))] = 3 + b
	}
	for i, s := range []string{"▁", "h", "e", "l", "o", "▁h", "ll", "▁he", "llo", "▁hello", "w", "r", "d"} {
		vocab[s] = 259 + i
	}
	tj := map[string]any{
		"added_tokens": []map[string]any{
			{"id": 0, "content": "<unk>", "special": true},
			{"id": 1, "content": "<s>", "special": true},
			{"id": 2, "content": "</s>", "special": true},
		},
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "▁"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
		}},
		"pre_tokenizer": nil,
		"post_processor": map[string]any{"type": "TemplateProcessing",
			"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
			"special_tokens": map[string]any{"<s>": map[string]any{"id": "<s>", "ids": []int{1}, "tokens": []string{"<s>"}}}},
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "},
			map[string]any{"type": "ByteFallback"},
			map[string]any{"type": "Fuse"},
			map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0},
		}},
		"model": map[string]any{"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": byteFallback,
			"vocab": vocab, "merges": [][]string{{"▁", "h"}, {"l", "l"}, {"▁h", "e"}, {"ll", "o"}, {"▁he", "llo"}}},
	}
	b, _ := json.Marshal(tj)
	return b
}

func mustNew(t testing.TB, tj []byte, cfg string) *Tokenizer {
	t.Helper()
	tk, err := New(tj, []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func b(s string) []int { // the byte tokens of s
	var ids []int
	for i := 0; i < len(s); i++ {
		ids = append(ids, int(s[i]))
	}
	return ids
}

func cat(parts ...[]int) []int { return slices.Concat(parts...) }

func TestByteLevel(t *testing.T) {
	tk := mustNew(t, byteLevelJSON(true), "")
	noIgnore := mustNew(t, byteLevelJSON(false), "")
	tests := []struct {
		in      string
		want    []int
		wantRaw []int // with ignore_merges false; nil: same
	}{
		{"", nil, nil},
		{"hello", []int{262}, []int{257, 259, 'o'}}, // merges give he+ll+o
		{" the", []int{258}, nil},
		{"hello the", []int{262, 258}, []int{257, 259, 'o', 258}},
		{"abc", []int{263}, b("abc")}, // in the vocab, no merge path
		{"xabc", b("xabc"), nil},      // not a whole word
		{"the", []int{'t', 257}, nil}, // "the" is not in the vocab, "Ġthe" is
		{"12345", b("12345"), nil},
		{"a<sep>b", []int{'a', 301, 'b'}, nil},
		{"a  <sep>  b", []int{'a', 301, 'b'}, nil}, // lstrip and rstrip eat the spaces
		{"a word b", cat(b("a "), []int{302}, b(" b")), nil},
		{"swordfish", b("swordfish"), nil}, // single_word: inside a word
		{"word,", []int{302, ','}, nil},    // punctuation is a boundary
		{"<|bos|>hello", []int{300, 262}, []int{300, 257, 259, 'o'}},
		{"é", []int{0xC3, 0xA9}, nil},
		{"hello\n\nthe", []int{262, '\n', '\n', 't', 257}, []int{257, 259, 'o', '\n', '\n', 't', 257}},
	}
	for _, tc := range tests {
		got := tk.Encode(tc.in, false)
		if !slices.Equal(got, tc.want) {
			t.Errorf("Encode(%q) = %v, want %v", tc.in, got, tc.want)
		}
		want := tc.wantRaw
		if want == nil {
			want = tc.want
		}
		if got := noIgnore.Encode(tc.in, false); !slices.Equal(got, want) {
			t.Errorf("Encode(%q) without ignore_merges = %v, want %v", tc.in, got, want)
		}
		if got := tk.Encode(tc.in, true); !slices.Equal(got, cat([]int{300}, tc.want)) {
			t.Errorf("Encode(%q, special) = %v", tc.in, got)
		}
	}
	if got := tk.Decode([]int{300, 262, 258, 301}, false); got != "<|bos|>hello the<sep>" {
		t.Errorf("Decode = %q", got)
	}
	if got := tk.Decode([]int{300, 262, 258, 301, 302}, true); got != "hello theword" {
		t.Errorf("Decode(skip) = %q", got)
	}
	if got := tk.Decode([]int{'a', 0xE2, 0x82, 'b', 0xFF, 999999, -1}, false); got != "a\uFFFDb\uFFFD" {
		t.Errorf("Decode(invalid) = %q", got)
	}
}

func TestOffsets(t *testing.T) {
	tk := mustNew(t, byteLevelJSON(true), "")
	text := "hello  <sep> the 12345"
	ids, offs := tk.EncodeOffsets(text, true)
	var pieces []string
	for _, o := range offs {
		pieces = append(pieces, text[o[0]:o[1]])
	}
	// <sep> takes the spaces around it (lstrip, rstrip), so "the" has no
	// leading space and is t+he.
	want := []string{"", "hello", "  <sep> ", "t", "he", " ", "1", "2", "3", "4", "5"}
	if !slices.Equal(pieces, want) {
		t.Errorf("offsets %v: pieces %q, want %q (ids %v)", offs, pieces, want, ids)
	}
	sp := mustNew(t, spJSON(true), "")
	text = "hello hé"
	ids, offs = sp.EncodeOffsets(text, false)
	pieces = nil
	for _, o := range offs {
		pieces = append(pieces, text[o[0]:o[1]])
	}
	// ▁hello aligns with "hello" (the prepended ▁ with the first rune), "▁h"
	// with " h", and each <0xNN> with its byte.
	want = []string{"hello", " h", "\xc3", "\xa9"}
	if !slices.Equal(pieces, want) {
		t.Errorf("SP offsets %v: pieces %q, want %q (ids %v)", offs, pieces, want, ids)
	}
}

// TestUnicodeNormalizers: NFC composes before BPE (Qwen), and each composed
// character aligns with the bytes it comes from.
func TestUnicodeNormalizers(t *testing.T) {
	nfc := strings.Replace(string(byteLevelJSON(true)), `"normalizer":null`, `"normalizer":{"type":"NFC"}`, 1)
	tk := mustNew(t, []byte(nfc), "")
	text := "he\u0301llo e\u0301"
	ids, offs := tk.EncodeOffsets(text, false)
	if want := tk.Encode("héllo é", false); !slices.Equal(ids, want) {
		t.Errorf("NFC: ids %v, want %v", ids, want)
	}
	var pieces []string
	for _, o := range offs {
		pieces = append(pieces, text[o[0]:o[1]])
	}
	// é is two byte-level tokens, both aligned with "e\u0301".
	if want := []string{"h", "e\u0301", "e\u0301", "ll", "o", " ", "e\u0301", "e\u0301"}; !slices.Equal(pieces, want) {
		t.Errorf("NFC offsets: pieces %q, want %q", pieces, want)
	}
	for _, tc := range []struct{ form, in, want string }{
		{"NFC", "A\u030a", "\u00c5"},
		{"NFD", "\u00c5", "A\u030a"},
		{"NFKC", "\ufb01 \u2460", "fi 1"},
		{"NFKD", "\u00bd", "1\u20442"},
	} {
		n, err := parseNormalizer([]byte(`{"type": "` + tc.form + `"}`))
		if err != nil {
			t.Fatal(err)
		}
		if got := n.normalize(normStr{s: tc.in}); got.s != tc.want {
			t.Errorf("%s(%q) = %q, want %q", tc.form, tc.in, got.s, tc.want)
		}
	}
}

func TestSentencePieceBPE(t *testing.T) {
	tk := mustNew(t, spJSON(true), `{"bos_token": "<s>", "eos_token": "</s>"}`)
	const sp, w, o, r, l, d = 259, 269, 263, 270, 262, 271
	tests := []struct {
		in   string
		want []int
	}{
		{"", nil},
		{"hello", []int{268}},
		{"hello world", []int{268, sp, w, o, r, l, d}},
		{"hé", []int{264, 3 + 0xC3, 3 + 0xA9}},
		{" hello", []int{sp, 268}},
		{"hello</s>hello", []int{268, 2, 268}}, // each piece gets its own ▁
		{"\n", []int{sp, 3 + '\n'}},
	}
	for _, tc := range tests {
		if got := tk.Encode(tc.in, false); !slices.Equal(got, tc.want) {
			t.Errorf("Encode(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	if got := tk.Encode("hello", true); !slices.Equal(got, []int{1, 268}) {
		t.Errorf("with BOS: %v", got)
	}
	for _, tc := range []struct {
		ids  []int
		skip bool
		want string
	}{
		{[]int{268, sp, w, o, r, l, d}, false, "hello world"},
		{[]int{1, 264, 3 + 0xC3, 3 + 0xA9}, false, "<s> hé"},
		{[]int{1, 264, 3 + 0xC3, 3 + 0xA9}, true, "hé"},
		{[]int{264, 3 + 0xC3}, false, "h\uFFFD"},
	} {
		if got := tk.Decode(tc.ids, tc.skip); got != tc.want {
			t.Errorf("Decode(%v) = %q, want %q", tc.ids, got, tc.want)
		}
	}
	if id, ok := tk.SpecialTokenID("eos_token"); !ok || id != 2 {
		t.Errorf("eos id = %d %v", id, ok)
	}
	// Without byte fallback, unknown characters fuse into one <unk>.
	unk := mustNew(t, spJSON(false), "")
	if got := unk.Encode("héé h", false); !slices.Equal(got, []int{264, 0, 264}) {
		t.Errorf("unk: %v", got)
	}
}

// TestSplitLlama3 checks the hand-written matcher of the Llama 3 regex on
// cases worked out by hand from the regex (leftmost-first alternation).
func TestSplitLlama3(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"Hello world", []string{"Hello", " world"}},
		{"I'm here", []string{"I", "'m", " here"}},
		{"I'M HERE'S", []string{"I", "'M", " HERE", "'S"}},
		{"'sup 'x", []string{"'s", "up", " '", "x"}},
		{"1234567", []string{"123", "456", "7"}},
		{"a   b", []string{"a", "  ", " b"}},
		{"a  \n\n  b", []string{"a", "  \n\n", " ", " b"}},
		{"x\t\ty", []string{"x", "\t", "\ty"}},
		{"trail   ", []string{"trail", "   "}},
		{"!!! ok", []string{"!!!", " ok"}},
		{"a !!!\n\nb", []string{"a", " !!!\n\n", "b"}},
		{"(hello)", []string{"(hello", ")"}},
		{"\nhello", []string{"\n", "hello"}},
		{" \u00a0x", []string{" ", "\u00a0x"}},
		{"日本語のテキスト", []string{"日本語のテキスト"}},
		{"٣٤٥٦", []string{"٣٤٥", "٦"}},
		{"'ſ", []string{"'ſ"}},
		{"a\r\n", []string{"a", "\r\n"}},
		{" \r\n x", []string{" \r\n", " x"}},
		{"\xff\xfeab", []string{"\xff\xfe", "ab"}}, // invalid bytes are "other"
	}
	for _, tc := range tests {
		var got []string
		splitLlama3(tc.in, 3, func(a, b int) { got = append(got, tc.in[a:b]) })
		if !slices.Equal(got, tc.want) {
			t.Errorf("split(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSplitGPT2(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"Hello world", []string{"Hello", " world"}},
		{"I'M it's", []string{"I", "'", "M", " it", "'s"}},
		{"1234567 x", []string{"1234567", " x"}},
		{"a   b", []string{"a", "  ", " b"}},
		{"a\n\nb", []string{"a", "\n", "\n", "b"}}, // \s+(?!\S) backtracks to one
		{"a\n\n", []string{"a", "\n\n"}},
		{"x !!", []string{"x", " !!"}},
	}
	for _, tc := range tests {
		var got []string
		splitGPT2(tc.in, func(a, b int) { got = append(got, tc.in[a:b]) })
		if !slices.Equal(got, tc.want) {
			t.Errorf("split(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCompileOnig(t *testing.T) {
	re, err := compileOnig(`\s+|[^\s\d]+|\d`)
	if err != nil {
		t.Fatal(err)
	}
	got := re.FindAllString("a\u3000b٣c", -1)
	if want := []string{"a", "\u3000", "b", "٣", "c"}; !slices.Equal(got, want) {
		t.Errorf("got %q want %q", got, want)
	}
	if _, err := compileOnig(`\s+(?!\S)`); !errors.Is(err, ErrUnsupported) {
		t.Errorf("look-ahead: %v", err)
	}
}

func TestBadFiles(t *testing.T) {
	good := string(byteLevelJSON(true))
	tests := []struct {
		name string
		json string
		want error
	}{
		{"not json", "{", ErrFormat},
		{"no model", `{"added_tokens": []}`, ErrFormat},
		{"unigram", `{"model": {"type": "Unigram", "vocab": []}}`, ErrUnsupported},
		{"bert normalizer", strings.Replace(good, `"normalizer":null`, `"normalizer":{"type":"BertNormalizer"}`, 1), ErrUnsupported},
		{"merge not in vocab", `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}`, ErrFormat},
		{"merge without space", `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["ab"]}}`, ErrFormat},
		{"negative id", `{"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}}`, ErrFormat},
		{"huge id", `{"model": {"type": "BPE", "vocab": {"a": 99999999}, "merges": []}}`, ErrFormat},
		{"sparse ids", `{"model": {"type": "BPE", "vocab": {"a": 4000000}, "merges": []}}`, ErrFormat},
		{"empty added", strings.Replace(good, `"content":"word"`, `"content":""`, 1), ErrFormat},
		{"bad special id", strings.Replace(good, `"ids":[300]`, `"ids":[123456]`, 1), ErrFormat},
		{"unk missing", `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": "<unk>"}}`, ErrFormat},
	}
	for _, tc := range tests {
		if _, err := New([]byte(tc.json), nil); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := New([]byte(good), []byte("{")); !errors.Is(err, ErrFormat) {
		t.Errorf("bad config: %v", err)
	}
}

func TestPairMerges(t *testing.T) {
	// Merges as pairs (transformers >= 4.45) and as strings give the same model.
	a := mustNew(t, byteLevelJSON(false), "")
	var m map[string]any
	_ = json.Unmarshal(byteLevelJSON(false), &m)
	model := m["model"].(map[string]any)
	var pairs [][]string
	for _, s := range model["merges"].([]any) {
		x, y, _ := strings.Cut(s.(string), " ")
		pairs = append(pairs, []string{x, y})
	}
	model["merges"] = pairs
	js, _ := json.Marshal(m)
	bt := mustNew(t, js, "")
	for _, s := range []string{"hello the", "the hell", "shell"} {
		if x, y := a.Encode(s, false), bt.Encode(s, false); !slices.Equal(x, y) {
			t.Errorf("%q: %v vs %v", s, x, y)
		}
	}
}

func TestLongWord(t *testing.T) {
	// Words long enough for the heap merge agree with the quadratic one.
	tk := mustNew(t, byteLevelJSON(false), "")
	for _, n := range []int{1, 2, 23, 24, 25, 100, 1000} {
		word := strings.Repeat("hellothe", n)
		var want []int
		syms := tk.model.initial(nil, word)
		for _, s := range tk.model.mergeSmall(syms) {
			want = append(want, int(s.id))
		}
		if got := tk.Encode(word, false); !slices.Equal(got, want) {
			t.Errorf("n=%d: heap and quadratic merges differ", n)
		}
	}
}

func TestCleanUp(t *testing.T) {
	got := CleanUpTokenizationSpaces("Hello , world ! I 'm here . Is n't it ?")
	if want := "Hello, world! I'm here. Isn't it?"; got != want {
		t.Errorf("got %q want %q", got, want)
	}
}

func TestUTF8Lossy(t *testing.T) {
	tests := []struct{ in, want string }{
		{"abc", "abc"},
		{"\xe2\x82", "\uFFFD"},
		{"\xe2\x82a", "\uFFFDa"},
		{"\xff\xfe", "\uFFFD\uFFFD"},
		{"\xf0\x9f\x98", "\uFFFD"},
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"}, // surrogate: E0..9F rule
		{"\xc0\xaf", "\uFFFD\uFFFD"},
	}
	for _, tc := range tests {
		if got := utf8Lossy([]byte(tc.in)); got != tc.want {
			t.Errorf("%q: got %q want %q", tc.in, got, tc.want)
		}
	}
}

func ExampleTokenizer_Encode() {
	tk, err := New(byteLevelJSON(true), nil)
	if err != nil {
		panic(err)
	}
	ids := tk.Encode("hello the", true)
	fmt.Println(ids, tk.Decode(ids, true))
	// Output: [300 262 258] hello the
}

func TestAccessors(t *testing.T) {
	tk := mustNew(t, byteLevelJSON(true), `{"bos_token": {"content": "<|bos|>"}, "clean_up_tokenization_spaces": true}`)
	if got := tk.Merges(); len(got) != 7 || got[0] != [2]string{"Ġ", "t"} || got[6] != [2]string{"hell", "o"} {
		t.Errorf("merges %q", got)
	}
	if tk.VocabSize() != 303 || len(tk.Tokens()) != 303 || !tk.ByteLevel() || !tk.CleanUpTokenizationSpaces() {
		t.Errorf("vocab %d, byte-level %v", tk.VocabSize(), tk.ByteLevel())
	}
	if id, ok := tk.SpecialTokenID("bos_token"); !ok || id != 300 || !tk.IsSpecial(300) || tk.IsSpecial(302) {
		t.Errorf("bos %d %v", id, ok)
	}
	if s, ok := tk.IDToToken(258); !ok || s != "Ġthe" {
		t.Errorf("IDToToken = %q", s)
	}
	if _, ok := tk.IDToToken(299); ok {
		t.Errorf("id 299 has no token")
	}
	if id, ok := tk.TokenToID("word"); !ok || id != 302 {
		t.Errorf("TokenToID = %d", id)
	}
}

func TestConcurrent(t *testing.T) {
	tk := mustNew(t, byteLevelJSON(false), "")
	want := tk.Encode("hello the world, hello again", false)
	tk.model.cache = map[string][]tok{}
	done := make(chan []int)
	for range 8 {
		go func() { done <- tk.Encode("hello the world, hello again", false) }()
	}
	for range 8 {
		if got := <-done; !slices.Equal(got, want) {
			t.Errorf("got %v want %v", got, want)
		}
	}
}
