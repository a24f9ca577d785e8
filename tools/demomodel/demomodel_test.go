package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tokenizer"
)

// small is a shape that keeps the tests fast.
var small = Shape{Hidden: 32, Intermediate: 64, Layers: 1, Heads: 2, KVHeads: 1}

func generate(t *testing.T, s Shape, seed uint64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "m")
	if err := Generate(dir, s, seed); err != nil {
		t.Fatal(err)
	}
	return dir
}

func readAll(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = b
	}
	return m
}

func TestGenerateDeterministic(t *testing.T) {
	a := readAll(t, generate(t, DefaultShape, 1))
	b := readAll(t, generate(t, DefaultShape, 1))
	c := readAll(t, generate(t, DefaultShape, 2))
	want := []string{"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
	var names []string
	for n := range a {
		names = append(names, n)
	}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Fatalf("files %v, want %v", names, want)
	}
	for _, n := range want {
		if !bytes.Equal(a[n], b[n]) {
			t.Errorf("%s differs between two runs with the same seed", n)
		}
	}
	if bytes.Equal(a["model.safetensors"], c["model.safetensors"]) {
		t.Error("seeds 1 and 2 gave the same weights")
	}
	if !bytes.Equal(a["tokenizer.json"], c["tokenizer.json"]) {
		t.Error("the tokenizer depends on the seed")
	}
}

func TestGenerateLoads(t *testing.T) {
	dir := generate(t, DefaultShape, 1)
	src, err := checkpoint.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	cfg, err := src.Config()
	if err != nil {
		t.Fatal(err)
	}
	lc, err := arch.ParseConfig(cfg.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if lc.Hidden != 128 || lc.Layers != 2 || lc.Vocab != vocabSize || lc.Intermediate != 384 {
		t.Errorf("config %+v", lc)
	}
	if got, want := len(src.Tensors), 3+9*DefaultShape.Layers; got != want {
		t.Errorf("%d tensors, want %d", got, want)
	}
	for _, ti := range src.Tensors {
		if ti.DType != "F32" {
			t.Errorf("%s: dtype %s", ti.Name, ti.DType)
		}
	}
	if _, ok := src.Info("lm_head.weight"); !ok {
		t.Error("no lm_head.weight")
	}
}

func TestTokenizerRoundTrip(t *testing.T) {
	tj, cj, err := TokenizerFiles()
	if err != nil {
		t.Fatal(err)
	}
	tk, err := tokenizer.New(tj, cj)
	if err != nil {
		t.Fatal(err)
	}
	if !tk.ByteLevel() {
		t.Fatal("not byte-level")
	}
	for _, tc := range []struct {
		text string
		ids  []int
	}{
		{"abcd=", []int{bosID, 'a', 'b', 'c', 'd', '='}},
		{"a   b", []int{bosID, 'a', vocabSize - 2, ' ', 'b'}}, // "  " is merged
		{"x\n\ny", []int{bosID, 'x', vocabSize - 1, 'y'}},     // so is "\n\n"
		{"é", []int{bosID, 0xC3, 0xA9}},
		{"", []int{bosID}},
	} {
		got := tk.Encode(tc.text, true)
		if !slices.Equal(got, tc.ids) {
			t.Errorf("Encode(%q) = %v, want %v", tc.text, got, tc.ids)
		}
		if back := tk.Decode(got, true); back != tc.text {
			t.Errorf("Decode(Encode(%q)) = %q", tc.text, back)
		}
	}
	for name, id := range map[string]int{"bos_token": bosID, "eos_token": eosID, "pad_token": padID} {
		if got, ok := tk.SpecialTokenID(name); !ok || got != id {
			t.Errorf("%s = %d, %v; want %d", name, got, ok, id)
		}
	}
	// Every ASCII character is its own token; UTF-8 text round-trips.
	var all []byte
	for i := range 128 {
		all = append(all, byte(i))
	}
	text := strings.ReplaceAll(strings.ReplaceAll(string(all), "  ", ""), "\n\n", "") + "zürich ✓ 日本"
	ids := tk.Encode(text, false)
	if back := tk.Decode(ids, false); back != text {
		t.Errorf("round trip: %q, want %q", back, text)
	}
	if ids := tk.Encode(string(all[:32]), false); !slices.Equal(ids, func() []int {
		r := make([]int, 32)
		for i := range r {
			r[i] = i
		}
		return r
	}()) {
		t.Errorf("control characters: %v", ids)
	}
}

func TestSplit(t *testing.T) {
	tr, te := Split(1, 500, 20)
	tr2, te2 := Split(1, 500, 20)
	if !slices.Equal(tr, tr2) || !slices.Equal(te, te2) {
		t.Fatal("Split is not deterministic")
	}
	seen := map[string]bool{}
	for _, e := range append(slices.Clone(tr), te...) {
		if seen[e.Prompt] {
			t.Fatalf("prompt %q twice", e.Prompt)
		}
		seen[e.Prompt] = true
		w := strings.TrimSuffix(e.Prompt, "=")
		if len(w) != taskLen || e.Completion != rot13(w) || rot13(e.Completion) != w {
			t.Fatalf("bad example %+v", e)
		}
	}
	if rot13("hello") != "uryyb" {
		t.Errorf("rot13(hello) = %q", rot13("hello"))
	}
}

// TestShippedData checks that examples/data holds what `demomodel data -seed 1`
// writes.
func TestShippedData(t *testing.T) {
	tr, te := Split(1, 2000, 20)
	for name, ex := range map[string][]Example{"rot13-train.jsonl": tr, "rot13-test.jsonl": te} {
		var want bytes.Buffer
		if err := WriteJSONL(&want, ex); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join("..", "..", "examples", "data", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("examples/data/%s differs from demomodel data -seed 1", name)
		}
	}
}

func TestGenerator(t *testing.T) {
	dir := generate(t, small, 3)
	g, err := OpenGenerator(dir, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ids, err := g.generateIDs("abcd=", 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) > 5 || slices.Contains(ids, eosID) {
		t.Errorf("generated %v: more than 5 tokens, or EOS", ids)
	}
	a := g.tok.Decode(ids, true)
	b, err := g.Generate("abcd=", 5)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("greedy decoding differs: %q, %q", a, b)
	}
	ex := []Example{{Prompt: "abcd=", Completion: a}, {Prompt: "abcd=", Completion: a + "x"}}
	s, err := g.Evaluate(ex, 5)
	if err != nil {
		t.Fatal(err)
	}
	if s.Correct != 1 || s.Total != 2 {
		t.Errorf("score %d/%d, want 1/2", s.Correct, s.Total)
	}
}

// writeAdapter writes a rank-4 LoRA on layer 0's o_proj whose B is bScale
// times a fixed pattern.
func writeAdapter(t *testing.T, dir string, bScale float32) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := `{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8, "target_modules": ["o_proj"], "lora_dropout": 0.0, "bias": "none"}`
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	f32 := func(n int, scale float32) []byte {
		v := make([]float32, n)
		for i := range v {
			v[i] = scale * (float32(i%7) - 3)
		}
		b := make([]byte, 4*n)
		if err := dtype.FromF32(b, v, dtype.F32); err != nil {
			t.Fatal(err)
		}
		return b
	}
	h := int64(small.Hidden)
	var st bytes.Buffer
	err := safetensors.Encode(&st, map[string]string{"format": "pt"}, map[string]safetensors.Tensor{
		"base_model.model.model.layers.0.self_attn.o_proj.lora_A.weight": {DType: dtype.F32, Shape: []int64{4, h}, Data: f32(4*small.Hidden, 1)},
		"base_model.model.model.layers.0.self_attn.o_proj.lora_B.weight": {DType: dtype.F32, Shape: []int64{h, 4}, Data: f32(4*small.Hidden, bScale)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), st.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestGeneratorAdapter checks that an adapter is applied: one whose B is zero
// leaves the output as it is, one with a large B changes it.
func TestGeneratorAdapter(t *testing.T) {
	dir := generate(t, small, 4)
	zero, big := filepath.Join(t.TempDir(), "zero"), filepath.Join(t.TempDir(), "big")
	writeAdapter(t, zero, 0)
	writeAdapter(t, big, 10)
	var outs [3]string
	for i, adapter := range []string{"", zero, big} {
		g, err := OpenGenerator(dir, adapter, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"wxyz=", "abcd=", "hello"} {
			o, err := g.Generate(p, 6)
			if err != nil {
				t.Fatal(err)
			}
			outs[i] += o + "|"
		}
		g.Close()
	}
	if outs[0] != outs[1] {
		t.Errorf("zero adapter changed the output: %q, %q", outs[0], outs[1])
	}
	if outs[0] == outs[2] {
		t.Errorf("a large adapter did not change the output: %q", outs[0])
	}
	if _, err := OpenGenerator(dir, filepath.Join(dir, "missing"), 1); err == nil {
		t.Error("a missing adapter: no error")
	}
}
