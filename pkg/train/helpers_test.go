package train

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/fixtureio"
	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
	"github.com/lorakit/lorakit/pkg/llama"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tokenizer"
)

// fixtures returns the shared fixtures folder, walking up from the package.
func fixtures(t testing.TB) string {
	t.Helper()
	return testbin.Fixtures(t)
}

func fx(t testing.TB, parts ...string) string {
	return filepath.Join(append([]string{fixtures(t)}, parts...)...)
}

type golden = fixtureio.TrainGolden

func loadGolden(t testing.TB) golden {
	t.Helper()
	return fixtureio.LoadTrainGolden(t, fx(t, "peft", "train", "plain"))
}

// goldenJSONL is golden.json's batch as input_ids/labels JSONL.
func goldenJSONL(g golden) string {
	var b strings.Builder
	for i := range g.InputIDs {
		ids, _ := json.Marshal(g.InputIDs[i])
		labels, _ := json.Marshal(g.Labels[i])
		fmt.Fprintf(&b, "{\"input_ids\": %s, \"labels\": %s}\n", ids, labels)
	}
	return b.String()
}

func goldenExamples(t testing.TB, g golden) []Example {
	t.Helper()
	ex, _, err := ReadData(strings.NewReader(goldenJSONL(g)), "golden", DataOptions{Vocab: 256})
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

func openBase(t testing.TB, parts ...string) *Base {
	t.Helper()
	b, err := OpenBase(fx(t, parts...), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// newModel builds the base in folder (under fixtures) on be with adapters.
func newModel(t testing.TB, be compute.Backend, folder string, ad *Adapter, load llama.Loader, opt llama.Options) *llama.Model {
	t.Helper()
	b := openBase(t, strings.Split(folder, "/")...)
	m, err := b.NewModel(be, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if ad != nil {
		if err := m.AddAdapters(ad.Specs, load); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func tinyConfig(t testing.TB) *arch.Config {
	return openBase(t, "peft", "tiny").Config
}

// plainSettings are the golden run's: constant lr 5e-3, no clipping, no
// decay, batch 2, file order.
func plainSettings(g golden) Settings {
	s := DefaultSettings()
	s.LR, s.Schedule, s.MaxSteps, s.Batch, s.MaxGradNorm, s.Shuffle = g.LR, ScheduleConstant, g.Steps, 2, 0, false
	s.Beta1, s.Beta2, s.Eps, s.WeightDecay = g.Betas[0], g.Betas[1], g.Eps, g.WeightDecay
	return s
}

func download(t testing.TB, be compute.Backend, b compute.Buffer) []float32 {
	t.Helper()
	out := make([]float32, b.Len())
	if err := be.Download(out, b); err != nil {
		t.Fatal(err)
	}
	return out
}

// relErr returns max|a−b| / max|b|.
func relErr(a, b []float32) float64 {
	var d, s float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
		s = math.Max(s, math.Abs(float64(b[i])))
	}
	if s == 0 {
		return d
	}
	return d / s
}

func openST(t testing.TB, path string) *safetensors.File {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func float32s(t testing.TB, f *safetensors.File, name string) []float32 {
	t.Helper()
	v, err := f.Float32(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func int64s(t testing.TB, f *safetensors.File, name string) []int32 {
	t.Helper()
	data, err := f.Data(name)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int32, len(data)/8)
	for i := range out {
		out[i] = int32(int64(binary.LittleEndian.Uint64(data[8*i:])))
	}
	return out
}

func newCPU() compute.Backend { return cpu.New(0) }

// byteToStr is GPT-2's bytes_to_unicode.
var byteToStr = func() [256]string {
	var bs []int
	for b := '!'; b <= '~'; b++ {
		bs = append(bs, int(b))
	}
	for b := 0xA1; b <= 0xAC; b++ {
		bs = append(bs, b)
	}
	for b := 0xAE; b <= 0xFF; b++ {
		bs = append(bs, b)
	}
	var out [256]string
	have := map[int]bool{}
	for _, b := range bs {
		out[b] = string(rune(b))
		have[b] = true
	}
	n := 0
	for b := range 256 {
		if !have[b] {
			out[b] = string(rune(256 + n))
			n++
		}
	}
	return out
}()

// Special tokens of the test tokenizer.
const (
	tokPad   = 0
	tokBegin = 1
	tokEnd   = 2
)

// chatTemplate renders each message as <|begin|>role\ncontent<|end|>.
const chatTemplate = "{% for m in messages %}{{ '<|begin|>' + m['role'] + '\\n' + m['content'] + '<|end|>' }}{% endfor %}" +
	"{% if add_generation_prompt %}{{ '<|begin|>assistant\\n' }}{% endif %}"

// byteTokenizer returns tokenizer.json and tokenizer_config.json of a
// byte-level tokenizer that fits the tiny model's 256 ids: ids 0-2 are
// <|pad|>, <|begin|> (BOS, added in front) and <|end|> (EOS); every other
// byte b is id b (bytes 0-2 have no token: plain text never has them).
func byteTokenizer(t testing.TB) (tj, cfg []byte) {
	vocab := map[string]int{"<|pad|>": tokPad, "<|begin|>": tokBegin, "<|end|>": tokEnd}
	for b := 3; b < 256; b++ {
		vocab[byteToStr[b]] = b
	}
	doc := map[string]any{
		"version": "1.0",
		"added_tokens": []map[string]any{
			{"id": tokPad, "content": "<|pad|>", "special": true},
			{"id": tokBegin, "content": "<|begin|>", "special": true},
			{"id": tokEnd, "content": "<|end|>", "special": true},
		},
		"normalizer":    nil,
		"pre_tokenizer": map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
		"post_processor": map[string]any{"type": "TemplateProcessing",
			"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<|begin|>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
			"pair":           []any{map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "B", "type_id": 1}}},
			"special_tokens": map[string]any{"<|begin|>": map[string]any{"id": "<|begin|>", "ids": []int{tokBegin}, "tokens": []string{"<|begin|>"}}}},
		"decoder": map[string]any{"type": "ByteLevel"},
		"model":   map[string]any{"type": "BPE", "vocab": vocab, "merges": []string{}},
	}
	tj, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ = json.Marshal(map[string]any{"bos_token": "<|begin|>", "eos_token": "<|end|>", "pad_token": "<|pad|>",
		"chat_template": chatTemplate})
	return tj, cfg
}

func testTokenizer(t testing.TB) *tokenizer.Tokenizer {
	tj, cfg := byteTokenizer(t)
	tk, err := tokenizer.New(tj, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// tinyWithTokenizer copies fixtures/peft/tiny into a temporary folder with
// the test tokenizer.
func tinyWithTokenizer(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tiny")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", "model.safetensors"} {
		b, err := os.ReadFile(fx(t, "peft", "tiny", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tj, cfg := byteTokenizer(t)
	os.WriteFile(filepath.Join(dir, "tokenizer.json"), tj, 0o644)
	os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfg, 0o644)
	return dir
}
