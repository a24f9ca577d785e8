package train

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/tokenizer"
)

const M = compute.IgnoreIndex

func bytesIDs(s string) []int32 {
	out := make([]int32, len(s))
	for i := range s {
		out[i] = int32(s[i])
	}
	return out
}

func TestForms(t *testing.T) {
	o := DataOptions{Tokenizer: testTokenizer(t), Vocab: 256}
	cat := func(parts ...[]int32) []int32 { return slices.Concat(parts...) }
	one := func(id int32) []int32 { return []int32{id} }
	masked := func(n int) []int32 {
		m := make([]int32, n)
		for i := range m {
			m[i] = M
		}
		return m
	}
	chatIDs := cat(one(tokBegin), bytesIDs("user\nhi"), one(tokEnd), one(tokBegin), bytesIDs("assistant\nyo"), one(tokEnd))
	chatLabels := cat(masked(1+7+1+1+10), bytesIDs("yo"), one(tokEnd))
	for _, c := range []struct {
		name, line     string
		ids, labels    []int32
		noTokenizerErr bool
	}{
		{"text", `{"text": "Hi"}`, cat(one(tokBegin), bytesIDs("Hi"), one(tokEnd)), cat(one(tokBegin), bytesIDs("Hi"), one(tokEnd)), true},
		{"text ending with eos", `{"text": "Hi<|end|>"}`, cat(one(tokBegin), bytesIDs("Hi"), one(tokEnd)), cat(one(tokBegin), bytesIDs("Hi"), one(tokEnd)), true},
		{"prompt/completion", `{"prompt": "Q:", "completion": " A", "id": 7}`, cat(one(tokBegin), bytesIDs("Q: A"), one(tokEnd)),
			cat(masked(3), bytesIDs(" A"), one(tokEnd)), true},
		{"messages", `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}`, chatIDs, chatLabels, true},
		{"conversational prompt/completion", `{"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": "yo"}]}`,
			chatIDs, chatLabels, true},
		{"input_ids", `{"input_ids": [5, 6, 7]}`, []int32{5, 6, 7}, []int32{5, 6, 7}, false},
		{"input_ids and labels", `{"input_ids": [5, 6, 7], "labels": [-100, 6, 7.0], "attention_mask": [1, 1, 1]}`, []int32{5, 6, 7}, []int32{M, 6, 7}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ex, err := ParseExample([]byte(c.line), o)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ex.IDs, c.ids) || !slices.Equal(ex.Labels, c.labels) {
				t.Errorf("ids %v\nlabels %v\nwant %v\n     %v", ex.IDs, ex.Labels, c.ids, c.labels)
			}
			_, err = ParseExample([]byte(c.line), DataOptions{Vocab: 256})
			if (err != nil) != c.noTokenizerErr || (err != nil && !strings.Contains(err.Error(), "tokenizer")) {
				t.Errorf("without a tokenizer: %v", err)
			}
		})
	}
}

func TestBadLines(t *testing.T) {
	o := DataOptions{Tokenizer: testTokenizer(t), Vocab: 256}
	for _, c := range []struct{ line, msg string }{
		{`not json`, "invalid character"},
		{`[1, 2]`, "not a JSON object"},
		{`"text"`, "not a JSON object"},
		{`null`, "null"},
		{`{}`, "no example"},
		{`{"foo": 1}`, "no example"},
		{`{"text": 5}`, "text is not a string"},
		{`{"text": "a", "messages": []}`, "several forms"},
		{`{"text": "a", "input_ids": [1]}`, "several forms"},
		{`{"input_ids": []}`, "no tokens"},
		{`{"input_ids": [1, 256]}`, "outside the vocabulary"},
		{`{"input_ids": [-1]}`, "outside the vocabulary"},
		{`{"input_ids": [1.5]}`, "not an integer"},
		{`{"input_ids": [1e30]}`, "not an integer"},
		{`{"input_ids": "abc"}`, "not an array"},
		{`{"input_ids": [1, 2], "labels": [1]}`, "1 labels for 2"},
		{`{"input_ids": [1, 2], "labels": [-5, 2]}`, "neither -100"},
		{`{"labels": [1]}`, "labels without input_ids"},
		{`{"prompt": "x"}`, "prompt and completion"},
		{`{"prompt": "x", "completion": 3}`, "completion is not a string"},
		{`{"prompt": [{"role": "user", "content": "x"}], "completion": "y"}`, "list of messages"},
		{`{"messages": [{"role": "user", "content": "x"}]}`, "no assistant"},
		{`{"messages": "x"}`, "list of objects"},
		{`{"messages": []}`, "empty"},
		{`{"messages": [{"content": "x"}]}`, "role"},
		{`{"input_ids": [1]} {"input_ids": [2]}`, "more than one"},
	} {
		data := "{\"input_ids\": [1, 2]}\n\n" + c.line + "\n{\"input_ids\": [3]}\n"
		_, _, err := ReadData(strings.NewReader(data), "d.jsonl", o)
		if err == nil || !errors.Is(err, ErrData) || !strings.Contains(err.Error(), "d.jsonl: line 3: ") || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v (want line 3 and %q)", c.line, err, c.msg)
		}
	}
	if _, _, err := ReadData(strings.NewReader("\n  \n"), "e.jsonl", o); !errors.Is(err, ErrData) || !strings.Contains(err.Error(), "no examples") {
		t.Errorf("empty file: %v", err)
	}
	long := "{\"text\": \"" + strings.Repeat("a", MaxLine) + "\"}\n"
	if _, _, err := ReadData(strings.NewReader("{\"input_ids\": [1]}\n"+long), "l.jsonl", o); !errors.Is(err, ErrData) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("long line: %v", err)
	}
}

func TestTruncation(t *testing.T) {
	data := "\xef\xbb\xbf{\"input_ids\": [1, 2, 3]}\n{\"input_ids\": [1, 2, 3, 4, 5, 6, 7], \"labels\": [-100, -100, -100, -100, -100, 6, 7]}\n" +
		"{\"input_ids\": [4, 5, 6, 7, 8, 9]}\n"
	ex, st, err := ReadData(strings.NewReader(data), "t", DataOptions{Vocab: 256, Seq: 5})
	if err != nil {
		t.Fatal(err)
	}
	want := DataStats{Examples: 3, Tokens: 13, Targets: 2 + 0 + 4, Truncated: 2, Dropped: 3, FirstTruncated: 2, NoTargets: 1}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	if len(ex[2].IDs) != 5 || ex[2].Line != 3 || cap(ex[2].IDs) != 5 {
		t.Errorf("example 3: %+v", ex[2])
	}
}

func TestPack(t *testing.T) {
	var ex []Example
	for i, n := range []int{5, 3, 4, 2, 6} {
		e := Example{Line: i + 1}
		for j := range n {
			e.IDs = append(e.IDs, int32(10*(i+1)+j))
		}
		e.Labels = slices.Clone(e.IDs)
		ex = append(ex, e)
	}
	rows := Pack(ex, 8)
	// Best fit decreasing: 6→A, 5→B, 4→C, 3→B (fullest that fits), 2→A.
	want := [][]int{{1, 2}, {3}, {4, 5}}
	if len(rows) != len(want) {
		t.Fatalf("%d rows", len(rows))
	}
	for k, r := range rows {
		if !slices.Equal(r.Lines, want[k]) {
			t.Errorf("row %d lines %v, want %v", k, r.Lines, want[k])
		}
		var ids []int32
		for _, l := range r.Lines {
			ids = append(ids, ex[l-1].IDs...)
		}
		if !slices.Equal(r.IDs, ids) || len(r.IDs) > 8 {
			t.Errorf("row %d ids %v", k, r.IDs)
		}
		start := 0
		for j, n := range r.Segments {
			if l := r.Labels[start]; (j == 0) != (l != M) {
				t.Errorf("row %d segment %d: first label %d", k, j, l)
			}
			start += n
		}
		pos := r.Positions()
		if r.Lines[0] == 4 && !slices.Equal(pos, []int32{0, 1, 0, 1, 2, 3, 4, 5}) {
			t.Errorf("positions %v", pos)
		}
	}
	b := makeBatch([]*Row{&rows[0], &rows[1]}, 0)
	if b.Seq != 8 || !slices.Equal(b.Segments, []int32{0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1}) ||
		!slices.Equal(b.Labels[12:], []int32{M, M, M, M}) {
		t.Errorf("batch %+v", b)
	}
	if u := makeBatch([]*Row{&Rows(ex)[0]}, 0); u.Segments != nil {
		t.Errorf("unpacked batch has segments")
	}
}

// TestPackedTraining checks that an update on packed rows equals the
// update on the same examples as separate rows (no dropout).
func TestPackedTraining(t *testing.T) {
	g := loadGolden(t)
	var ex []Example
	for i, e := range goldenExamples(t, g) {
		for _, cut := range [][2]int{{0, 7}, {7, 16}} {
			p := Example{IDs: e.IDs[cut[0]:cut[1]], Labels: slices.Clone(e.Labels[cut[0]:cut[1]]), Line: 2*i + len(ex)%2 + 1}
			p.Labels[0] = p.IDs[0] // the packed row must not score it from the previous example
			ex = append(ex, p)
		}
	}
	run := func(rows []Row) (StepResult, [][]float32) {
		s := plainSettings(g)
		s.Batch, s.MaxSteps = len(rows), 1
		tr, m, be := goldenTrainer(t, s, rows)
		r, err := tr.Step()
		if err != nil {
			t.Fatal(err)
		}
		var gs [][]float32
		for _, p := range m.Params() {
			gs = append(gs, download(t, be, p.Grad))
		}
		return r, gs
	}
	packed := Pack(ex, 16)
	if len(packed) != 2 || len(packed[0].Segments) != 2 {
		t.Fatalf("packed into %d rows", len(packed))
	}
	rp, gp := run(packed)
	ru, gu := run(Rows(ex))
	if rp.Targets != ru.Targets || rp.Tokens != ru.Tokens {
		t.Fatalf("packed %+v, unpacked %+v", rp, ru)
	}
	if d := (rp.Loss - ru.Loss) / ru.Loss; d > 1e-6 || d < -1e-6 {
		t.Errorf("loss packed %v, separate %v", rp.Loss, ru.Loss)
	}
	for i := range gp {
		if e := relErr(gp[i], gu[i]); e > 1e-5 {
			t.Errorf("gradient %d differs by %.3g", i, e)
		}
	}
	t.Logf("packed loss %.9g, separate %.9g", rp.Loss, ru.Loss)
}

func FuzzParseExample(f *testing.F) {
	for _, s := range []string{
		`{"text": "Hello"}`, `{"prompt": "Q", "completion": "A"}`, `{"input_ids": [1, 2], "labels": [-100, 2]}`,
		`{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}`,
		`{"prompt": [{"role": "user", "content": "x"}], "completion": [{"role": "assistant", "content": "y"}]}`,
		`{"input_ids": [1e3, -0, 2.0]}`, `{"text": "\u00e9\u4e2d"}`, `null`, `[]`, `{"messages": [{}]}`,
	} {
		f.Add([]byte(s))
	}
	tk := testTokenizer(f)
	f.Fuzz(func(t *testing.T, line []byte) {
		ex, err := ParseExample(line, DataOptions{Tokenizer: tk, Vocab: 256})
		if err != nil {
			if !errors.Is(err, ErrData) {
				t.Fatalf("error without ErrData: %v", err)
			}
			return
		}
		if len(ex.IDs) == 0 || len(ex.IDs) != len(ex.Labels) {
			t.Fatalf("%d ids, %d labels", len(ex.IDs), len(ex.Labels))
		}
		for i, id := range ex.IDs {
			if id < 0 || id >= 256 || (ex.Labels[i] != M && (ex.Labels[i] < 0 || ex.Labels[i] >= 256)) {
				t.Fatalf("id %d label %d", id, ex.Labels[i])
			}
		}
		b := makeBatch([]*Row{{IDs: ex.IDs, Labels: ex.Labels, Segments: []int{len(ex.IDs)}}}, 0)
		if b.Targets() != ex.Targets() {
			t.Fatalf("targets %d vs %d", b.Targets(), ex.Targets())
		}
	})
}

// chatMLTokenizer is the test tokenizer with <|im_start|> (256) and
// <|im_end|> (257, EOS) added, and the given chat template.
func chatMLTokenizer(t *testing.T, template string) *tokenizer.Tokenizer {
	t.Helper()
	tj, _ := byteTokenizer(t)
	var doc map[string]any
	if err := json.Unmarshal(tj, &doc); err != nil {
		t.Fatal(err)
	}
	for id, tok := range []string{"<|im_start|>", "<|im_end|>"} {
		doc["added_tokens"] = append(doc["added_tokens"].([]any), map[string]any{"id": 256 + id, "content": tok, "special": true})
		doc["model"].(map[string]any)["vocab"].(map[string]any)[tok] = 256 + id
	}
	tj, _ = json.Marshal(doc)
	cfg, _ := json.Marshal(map[string]any{"bos_token": nil, "eos_token": "<|im_end|>", "pad_token": "<|pad|>", "chat_template": template})
	tk, err := tokenizer.New(tj, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// scored decodes the scored tokens of an example.
func scored(tk *tokenizer.Tokenizer, ex Example) string {
	var ids []int
	for _, l := range ex.Labels {
		if l != M {
			ids = append(ids, int(l))
		}
	}
	return tk.Decode(ids, false)
}

// TestChatTemplateKwargs: the template variables reach both renderings,
// the conversation's and, for conversational prompt/completion data, the
// prompt's that masks it; with Qwen3's template, enable_thinking=false puts
// the empty think block in the assistant header, out of the loss.
func TestChatTemplateKwargs(t *testing.T) {
	hint := "{% if hint is defined %}{{ '<|begin|>system\\n' + hint + '<|end|>' }}{% endif %}" + chatTemplate
	o := DataOptions{Tokenizer: testTokenizer(t), ChatTemplate: hint, Vocab: 256, ChatTemplateKwargs: map[string]any{"hint": "rot13"}}
	ex, err := ParseExample([]byte(`{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "uv"}]}`), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := o.Tokenizer.Decode(toInts(ex.IDs), false); got != "<|begin|>system\nrot13<|end|><|begin|>user\nhi<|end|><|begin|>assistant\nuv<|end|>" {
		t.Errorf("rendered %q", got)
	}
	if got := scored(o.Tokenizer, ex); got != "uv<|end|>" {
		t.Errorf("scored %q", got)
	}
	line := `{"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "n"}, {"role": "user", "content": "b"}],` +
		` "completion": [{"role": "assistant", "content": "o"}]}`
	ex, err = ParseExample([]byte(line), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := scored(o.Tokenizer, ex); got != "o<|end|>" {
		t.Errorf("conversational prompt/completion: scored %q, want only the completion", got)
	}

	qwen3, err := os.ReadFile(filepath.Join("..", "tokenizer", "testdata", "qwen3_chat_template.jinja"))
	if err != nil {
		t.Fatal(err)
	}
	tk := chatMLTokenizer(t, string(qwen3))
	msgs := []byte(`{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}`)
	for _, c := range []struct {
		kwargs string
		scored string
	}{
		{``, "<think>\n\n</think>\n\nyo<|im_end|>"},
		{`{"enable_thinking": true}`, "<think>\n\n</think>\n\nyo<|im_end|>"},
		{`{"enable_thinking": false}`, "yo<|im_end|>"},
	} {
		o := DataOptions{Tokenizer: tk}
		if c.kwargs != "" {
			if o.ChatTemplateKwargs, err = tokenizer.ParseTemplateKwargs([]byte(c.kwargs)); err != nil {
				t.Fatal(err)
			}
		}
		ex, err := ParseExample(msgs, o)
		if err != nil {
			t.Fatal(err)
		}
		if got := tk.Decode(toInts(ex.IDs), false); got != "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nyo<|im_end|>\n" {
			t.Errorf("%s: rendered %q", c.kwargs, got)
		}
		if got := scored(tk, ex); got != c.scored {
			t.Errorf("%s: scored %q, want %q", c.kwargs, got, c.scored)
		}
	}
}

func toInts(ids []int32) []int {
	out := make([]int, len(ids))
	for i, id := range ids {
		out[i] = int(id)
	}
	return out
}
