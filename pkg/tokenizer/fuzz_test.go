package tokenizer

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// FuzzNew parses arbitrary tokenizer.json (and config) bytes; whatever
// parses must encode and decode without panicking.
func FuzzNew(f *testing.F) {
	f.Add(byteLevelJSON(true), []byte(`{"bos_token": "<|bos|>"}`))
	f.Add(byteLevelJSON(false), []byte(nil))
	f.Add(spJSON(true), []byte(`{"chat_template": [{"name": "default", "template": "{{ x }}"}]}`))
	f.Add(spJSON(false), []byte(`{"eos_token": {"content": "</s>"}}`))
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]},
		"pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true},
		"normalizer": {"type": "Sequence", "normalizers": [{"type": "Lowercase"}, {"type": "Strip", "strip_left": true, "strip_right": true}]},
		"decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first"}}`), []byte(nil))
	f.Add([]byte(`{"model": {"type": "BPE", "vocab": {"a": 0, "1": 1}, "merges": []},
		"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, {"type": "WhitespaceSplit"},
		{"type": "Split", "pattern": {"String": "a"}, "behavior": "MergedWithNext", "invert": false}]}}`), []byte(nil))
	f.Fuzz(func(t *testing.T, tj, cfg []byte) {
		tk, err := New(tj, cfg)
		if err != nil {
			return
		}
		for _, s := range []string{"", "hello world", "ab 12 <|bos|> é\n\n", "\xff"} {
			ids, offs := tk.EncodeOffsets(s, true)
			if len(ids) != len(offs) {
				t.Fatalf("%d ids, %d offsets", len(ids), len(offs))
			}
			_ = tk.Decode(ids, false)
		}
	})
}

// FuzzRoundTrip checks that byte-level BPE decodes back to its input and
// that the token offsets tile the input.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range []string{"", "hello the world", "I'm 12345 ok!!\n\n  x", "a<sep>b word swordfish", "日本語 😀\t\r\n", "<|bos|>x"} {
		f.Add(s)
	}
	tk := mustNew(f, byteLevelJSON(true), "")
	if dir, ok := refDirIfPresent(refModels["llama3"]); ok {
		if rt, err := Load(dir); err == nil {
			refCache.Store("llama3", rt)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		ids, offs := tk.EncodeOffsets(s, false)
		// <sep> strips the spaces around it (lstrip/rstrip), by design.
		if got := tk.Decode(ids, false); got != s && !strings.Contains(s, "<sep>") {
			t.Fatalf("round trip %q -> %v -> %q", s, ids, got)
		}
		end := 0
		for i, o := range offs {
			if o[0] != end || o[1] <= o[0] {
				t.Fatalf("token %d offsets %v after %d (%q)", i, o, end, s)
			}
			end = o[1]
		}
		if end != len(s) {
			t.Fatalf("offsets end at %d of %d", end, len(s))
		}
		// Llama 3 itself, when its reference files are installed.
		if ref, ok := refCache.Load("llama3"); ok {
			rt := ref.(*Tokenizer)
			if got := rt.Decode(rt.Encode(s, false), false); got != s {
				t.Fatalf("llama3 round trip %q -> %q", s, got)
			}
		}
	})
}

// FuzzSplitLlama3 checks that the hand-written pre-tokenizer regex tiles any
// input with non-empty pieces, and that letters never end a piece that the
// next piece continues with more letters.
func FuzzSplitLlama3(f *testing.F) {
	for _, s := range []string{"Hello world", "I'M 'sup", "1234567", "a  \n\n  b", "\xff\xfe", " \u00a0\u3000x", "日本語"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var pieces []string
		end := 0
		splitLlama3(s, 3, func(a, b int) {
			if a != end || b <= a {
				t.Fatalf("piece [%d,%d) after %d in %q", a, b, end, s)
			}
			pieces = append(pieces, s[a:b])
			end = b
		})
		if end != len(s) {
			t.Fatalf("pieces end at %d of %d", end, len(s))
		}
		for i := 1; i < len(pieces); i++ {
			l, _ := utf8.DecodeLastRuneInString(pieces[i-1])
			r, _ := utf8.DecodeRuneInString(pieces[i])
			if classOf(l) == clsLetter && classOf(r) == clsLetter && !strings.HasPrefix(pieces[i], "'") && !strings.HasPrefix(pieces[i-1], "'") {
				t.Fatalf("letters split between %q and %q", pieces[i-1], pieces[i])
			}
		}
	})
}

// FuzzUnicodeNormalize checks the Unicode normalizers against x/text's
// normalization of valid UTF-8 and their alignment: each output byte maps to a non-empty,
// non-decreasing range of the input.
func FuzzUnicodeNormalize(f *testing.F) {
	for _, s := range []string{"", "e\u0301", "\ufb01 \u2460 \u00bd", "A\u030a\u0323 \u1e0b\u0323", "\xff\xfe e\u0301", "한국어 가"} {
		f.Add(s)
	}
	forms := map[string]norm.Form{"NFC": norm.NFC, "NFD": norm.NFD, "NFKC": norm.NFKC, "NFKD": norm.NFKD}
	f.Fuzz(func(t *testing.T, s string) {
		for name, form := range forms {
			n := normUnicode{form}.normalize(normStr{s: s, base: 7})
			// (On invalid UTF-8, which Hugging Face never sees, x/text's String
			// and its Iter disagree; only the alignment is checked.)
			if want := form.String(s); n.s != want && utf8.ValidString(s) {
				t.Fatalf("%s(%q) = %q, want %q", name, s, n.s, want)
			}
			prev := 7
			for k := range len(n.s) {
				lo, hi := n.span(k)
				if lo < prev || hi <= lo || hi > 7+len(s) {
					t.Fatalf("%s(%q): byte %d aligned with [%d, %d) after %d", name, s, k, lo, hi, prev)
				}
				prev = lo
			}
		}
	})
}

// FuzzSplitRegex checks the generic Split regex path (Go's regexp plus the
// \s+(?!\S) fix-up, used for patterns without a hand-written splitter such
// as o200k's) against the hand-written Llama 3, Qwen 2 and GPT-2 splitters.
func FuzzSplitRegex(f *testing.F) {
	for _, s := range []string{"Hello  world", "a   \n\n  b  ", " \u00a0\u3000x", "I'M  'sup 1234567", "x  1  ?!  \t\t y", "\xff  \xfe", "  "} {
		f.Add(s)
	}
	type ref struct {
		pat  string
		fast func(string, func(a, b int))
	}
	refs := []ref{
		{patLlama3, func(s string, emit func(a, b int)) { splitLlama3(s, 3, emit) }},
		{patQwen2, func(s string, emit func(a, b int)) { splitLlama3(s, 1, emit) }},
		{patGPT2, splitGPT2},
	}
	splits := make([]*preSplit, len(refs))
	for i, r := range refs {
		re, la, err := compileSplitRegex(r.pat)
		if err != nil || !la {
			f.Fatalf("%q: %v %v", r.pat, err, la)
		}
		splits[i] = &preSplit{re: re, spaceLookahead: la, beh: behIsolated}
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return // the hand-written splitters read invalid bytes as U+FFFD
		}
		for i, r := range refs {
			var want [][2]int
			r.fast(s, func(a, b int) { want = append(want, [2]int{a, b}) })
			if got := splits[i].findSplits(s); !slices.Equal(got, want) {
				t.Fatalf("pattern %d on %q: regexp %v, hand-written %v", i, s, got, want)
			}
		}
	})
}

// FuzzChatSpans renders two-turn conversations with arbitrary contents with
// the Qwen3, Gemma 3 and Phi-3 templates: the assistant spans lie in the
// text, in order and apart, start after the last assistant header before
// them and hold the assistant's (stripped) content.
func FuzzChatSpans(f *testing.F) {
	f.Add("Hi", "Hello.", "", false)
	f.Add("<|im_end|>", "<think>\nR\n</think>\n\n  A  ", "why", true)
	f.Add("", "", "", true)
	f.Add("<start_of_turn>model\n", "<end_of_turn><|end|>", "\n\n", false)
	templates := map[string]string{}
	for _, name := range []string{"qwen3", "gemma3", "phi3"} {
		templates[name] = readTemplateFile(f, name)
	}
	tk := mustNew(f, byteLevelJSON(true), `{"bos_token": "<bos>", "eos_token": "<|endoftext|>"}`)
	headers := map[string]string{"qwen3": "<|im_start|>assistant\n", "gemma3": "<start_of_turn>model\n", "phi3": "<|assistant|>\n"}
	f.Fuzz(func(t *testing.T, user, reply, reasoning string, noThinking bool) {
		if !utf8.ValidString(user) || !utf8.ValidString(reply) || !utf8.ValidString(reasoning) {
			return
		}
		msgs := []map[string]any{{"role": "user", "content": user}, {"role": "assistant", "content": reply}}
		if reasoning != "" {
			msgs[1]["reasoning_content"] = reasoning
		}
		js, _ := json.Marshal(msgs)
		for name, tmpl := range templates {
			opt := ChatOptions{Template: tmpl, EndTokens: []string{"<|im_end|>", "<end_of_turn>", "<|end|>"}}
			if noThinking {
				opt.Vars = map[string]any{"enable_thinking": false}
			}
			c, err := tk.ApplyChatTemplateJSON(js, opt)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			prev := 0
			for _, s := range c.Assistant {
				if s[0] < prev || s[1] <= s[0] || s[1] > len(c.Text) {
					t.Fatalf("%s: spans %v in %d bytes", name, c.Assistant, len(c.Text))
				}
				prev = s[1]
			}
			if len(c.Assistant) != 1 {
				t.Fatalf("%s: %d spans in %q", name, len(c.Assistant), c.Text)
			}
			s := c.Assistant[0]
			if h := strings.LastIndex(c.Text[:s[0]], headers[name]); h < 0 {
				t.Fatalf("%s: span %q not after the header in %q", name, c.Text[s[0]:s[1]], c.Text)
			}
			// Python's str.strip also strips U+001C–U+001F.
			want := strings.TrimFunc(reply, func(r rune) bool { return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f })
			if !strings.Contains(c.Text[s[0]:s[1]], want) && !strings.Contains(reply, "</think>") {
				t.Fatalf("%s: span %q lacks the reply %q", name, c.Text[s[0]:s[1]], want)
			}
		}
	})
}
