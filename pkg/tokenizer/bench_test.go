package tokenizer

import (
	"strings"
	"sync"
	"testing"
)

var refCache sync.Map // name → *Tokenizer

// cachedRef loads a reference tokenizer once per test binary.
func cachedRef(t testing.TB, name string) *Tokenizer {
	t.Helper()
	if v, ok := refCache.Load(name); ok {
		return v.(*Tokenizer)
	}
	tk := loadRef(t, name)
	refCache.Store(name, tk)
	return tk
}

// benchText returns about n bytes of mixed text (prose, code, numbers,
// Unicode) built from the golden corpus.
func benchText(t testing.TB, n int) string {
	rows := readRows[idsRow](t, "llama3_ids.json")
	var b strings.Builder
	for b.Len() < n {
		for _, r := range rows {
			b.WriteString(r.Text)
			b.WriteByte(' ')
		}
	}
	return b.String()[:n]
}

func benchEncode(b *testing.B, name string, fresh bool) {
	tk := cachedRef(b, name)
	text := benchText(b, 1<<20)
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for b.Loop() {
		if fresh {
			b.StopTimer()
			tk.model.cache = map[string][]tok{}
			b.StartTimer()
		}
		tk.Encode(text, true)
	}
}

// BenchmarkEncodeLlama3 encodes 1 MiB with a warm word cache.
func BenchmarkEncodeLlama3(b *testing.B) { benchEncode(b, "llama3", false) }

// BenchmarkEncodeLlama3Cold empties the word cache before each encode.
func BenchmarkEncodeLlama3Cold(b *testing.B) { benchEncode(b, "llama3", true) }

// BenchmarkEncodeLlama2 encodes 1 MiB (SentencePiece-style: the text is one word).
func BenchmarkEncodeLlama2(b *testing.B) { benchEncode(b, "llama2", false) }

// BenchmarkEncodeQwen3 encodes 1 MiB (NFC check, the per-digit split).
func BenchmarkEncodeQwen3(b *testing.B) { benchEncode(b, "qwen3", false) }

// BenchmarkEncodeGemma3 encodes 1 MiB (SentencePiece-style without prefix
// space, 514k merges).
func BenchmarkEncodeGemma3(b *testing.B) { benchEncode(b, "gemma3", false) }

// BenchmarkEncodeO200k encodes 1 MiB through the generic regex splitter
// (Go's regexp plus the \s+(?!\S) fix-up).
func BenchmarkEncodeO200k(b *testing.B) { benchEncode(b, "o200k", false) }

func BenchmarkDecodeLlama3(b *testing.B) {
	tk := cachedRef(b, "llama3")
	text := benchText(b, 1<<20)
	ids := tk.Encode(text, false)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		tk.Decode(ids, false)
	}
}

func BenchmarkLoadLlama3(b *testing.B) {
	dir := refDir(b, refModels["llama3"])
	for b.Loop() {
		if _, err := Load(dir); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChatTemplate renders and encodes a 6-turn conversation with the
// Llama 3.1 template (synthetic tokenizer: runs without reference files).
func BenchmarkChatTemplate(b *testing.B) {
	tk := chatTokenizer(b, llama31Template(b))
	msgs := []Message{{"system", "You are a helpful assistant."}}
	for range 3 {
		msgs = append(msgs, Message{"user", strings.Repeat("What is the capital of France? ", 5)},
			Message{"assistant", strings.Repeat("The capital of France is Paris. ", 8)})
	}
	for b.Loop() {
		c, err := tk.ApplyChatTemplate(msgs, ChatOptions{})
		if err != nil {
			b.Fatal(err)
		}
		tk.EncodeChat(c)
	}
}

// BenchmarkEncodeSynthetic encodes 1 MiB with the small byte-level test
// tokenizer (mostly byte tokens: the merge loop's worst case per byte).
func BenchmarkEncodeSynthetic(b *testing.B) {
	tk := mustNew(b, byteLevelJSON(true), "")
	text := benchText(b, 1<<20)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		tk.Encode(text, false)
	}
}
