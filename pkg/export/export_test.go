package export

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/gguf"
	"github.com/lorakit/lorakit/pkg/inspect"
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/pipeline"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

func fx(t testing.TB, parts ...string) string {
	return filepath.Join(append([]string{testbin.Fixtures(t)}, parts...)...)
}

// TestModelMetadata checks every key llama.cpp reads with its exact GGUF type (spec §3.1).
func TestModelMetadata(t *testing.T) {
	for _, tc := range []struct {
		typ      gguf.Type
		fileType uint32
		quant    bool
	}{
		{gguf.TypeF32, 0, false}, {gguf.TypeF16, 1, false}, {gguf.TypeBF16, 32, false},
		{gguf.TypeQ8_0, 7, true}, {gguf.TypeQ4_0, 2, true},
	} {
		t.Run(tc.typ.String(), func(t *testing.T) {
			b, _ := exportModel(t, fx(t, "peft", "tiny"), ModelOptions{Type: tc.typ})
			h := readGGUF(t, b)
			want := []struct {
				key string
				val any
			}{
				{"general.architecture", "llama"},
				{"general.type", "model"},
				{"general.name", "tiny"},
				{"general.file_type", tc.fileType},
				{"llama.vocab_size", uint32(256)},
				{"llama.context_length", uint32(128)},
				{"llama.embedding_length", uint32(64)},
				{"llama.block_count", uint32(2)},
				{"llama.feed_forward_length", uint32(128)},
				{"llama.attention.head_count", uint32(4)},
				{"llama.attention.head_count_kv", uint32(2)},
				{"llama.attention.layer_norm_rms_epsilon", float32(1e-5)},
				{"llama.rope.freq_base", float32(10000)},
				{"llama.rope.dimension_count", uint32(16)},
				{"tokenizer.ggml.model", "llama"},
				{"tokenizer.ggml.bos_token_id", uint32(1)},
				{"tokenizer.ggml.eos_token_id", uint32(2)},
			}
			if tc.quant {
				want = append(want, struct {
					key string
					val any
				}{"general.quantization_version", uint32(2)})
			} else if h.Metadata.Has("general.quantization_version") {
				t.Error("general.quantization_version written for an unquantized file")
			}
			for _, w := range want {
				got, ok := h.Metadata.Get(w.key)
				if !ok {
					t.Errorf("%s missing", w.key)
					continue
				}
				if fmt.Sprintf("%T %v", got, got) != fmt.Sprintf("%T %v", w.val, w.val) {
					t.Errorf("%s = %T %v, want %T %v", w.key, got, got, w.val, w.val)
				}
			}
			toks, _ := h.Metadata.Strings("tokenizer.ggml.tokens")
			types, _ := h.Metadata.Get("tokenizer.ggml.token_type")
			tt, ok := types.([]int32)
			if len(toks) != 256 || toks[0] != "<0x00>" || toks[255] != "<0xFF>" || !ok || len(tt) != 256 || tt[10] != TokenByte {
				t.Errorf("minimal vocabulary: %d tokens (%q…), types %T", len(toks), toks[:min(2, len(toks))], types)
			}
			// llama.cpp's typed getters: no 64-bit integers or float64 anywhere.
			for _, kv := range h.Metadata {
				typ, elem, _ := gguf.TypeOf(kv.Value)
				for _, bad := range []gguf.ValueType{gguf.ValueUint64, gguf.ValueInt64, gguf.ValueFloat64} {
					if typ == bad || typ == gguf.ValueArray && elem == bad {
						t.Errorf("%s has type %s/%s", kv.Key, typ, elem)
					}
				}
			}
			if h.Metadata[0].Key != "general.architecture" {
				t.Errorf("first key %s", h.Metadata[0].Key)
			}
			// lora-inspect reads the file back.
			path := writeFile(t, filepath.Join(t.TempDir(), "m.gguf"), b)
			r, err := inspect.GGUF(path, false)
			if err != nil {
				t.Fatalf("lora-inspect: %v", err)
			}
			if r.GGUF.Type != "model" || r.GGUF.VocabSize != 256 || r.TotalParams != 106816 {
				t.Errorf("lora-inspect summary: %+v", r.GGUF)
			}
		})
	}
}

// TestModelTensors checks the name map, shapes (reversed) and types (spec §3.2, §3.3).
func TestModelTensors(t *testing.T) {
	b, _ := exportModel(t, fx(t, "peft", "tiny"), ModelOptions{Type: gguf.TypeQ8_0})
	h := readGGUF(t, b)
	want := map[string][]int64{
		"token_embd.weight": {64, 256}, "output_norm.weight": {64}, "output.weight": {64, 256},
	}
	for l := range 2 {
		p := "blk." + strconv.Itoa(l) + "."
		for name, ne := range map[string][]int64{
			"attn_norm.weight": {64}, "ffn_norm.weight": {64},
			"attn_q.weight": {64, 64}, "attn_k.weight": {64, 32}, "attn_v.weight": {64, 32}, "attn_output.weight": {64, 64},
			"ffn_gate.weight": {64, 128}, "ffn_up.weight": {64, 128}, "ffn_down.weight": {128, 64},
		} {
			want[p+name] = ne
		}
	}
	if len(h.Tensors) != len(want) {
		t.Errorf("%d tensors, want %d", len(h.Tensors), len(want))
	}
	for _, ti := range h.Tensors {
		ne, ok := want[ti.Name]
		if !ok {
			t.Errorf("unexpected tensor %s", ti.Name)
			continue
		}
		if !slices.Equal(ti.Shape, ne) {
			t.Errorf("%s: ne %v, want %v", ti.Name, ti.Shape, ne)
		}
		wantType := gguf.TypeQ8_0
		if len(ne) == 1 {
			wantType = gguf.TypeF32
		}
		if ti.Type != wantType {
			t.Errorf("%s: %s, want %s", ti.Name, ti.Type, wantType)
		}
	}
	if err := h.Packed(); err != nil {
		t.Error(err)
	}
}

// TestQ4_0OutputType: llama-quantize's Q4_0 makes output.weight Q6_K; lorakit keeps it
// Q8_0 and says so (spec §3.8). Rows not a multiple of 32 fall back to F16.
func TestTypeFallbacks(t *testing.T) {
	_, p := exportModel(t, fx(t, "peft", "tiny"), ModelOptions{Type: gguf.TypeQ4_0})
	for _, ti := range p.Tensors {
		want := gguf.TypeQ4_0
		switch {
		case len(ti.Shape) == 1:
			want = gguf.TypeF32
		case ti.Name == "output.weight":
			want = gguf.TypeQ8_0
		}
		if ti.Type != want {
			t.Errorf("%s: %s, want %s", ti.Name, ti.Type, want)
		}
	}
	if !hasWarning(p.Notes, "output.weight kept Q8_0") {
		t.Errorf("notes %q", p.Notes)
	}

	// hidden 48: rows of 48 values cannot be Q8_0 blocks; intermediate 64 can.
	dir := t.TempDir()
	cfg := []byte(`{"model_type": "llama", "hidden_size": 48, "intermediate_size": 64, "num_hidden_layers": 1,
		"num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 300, "max_position_embeddings": 64,
		"tie_word_embeddings": true}`)
	w, shapes := randomModel(1, 48, 64, 2, 1, 24, 300, true)
	writeModel(t, dir, cfg, w, shapes, dtype.F32)
	_, p = exportModel(t, dir, ModelOptions{Type: gguf.TypeQ8_0})
	for _, ti := range p.Tensors {
		want := gguf.TypeF16
		switch {
		case len(ti.Shape) == 1:
			want = gguf.TypeF32
		case ti.Shape[0] == 64:
			want = gguf.TypeQ8_0
		}
		if ti.Type != want {
			t.Errorf("%s %v: %s, want %s", ti.Name, ti.Shape, ti.Type, want)
		}
	}
	if !hasWarning(p.Notes, "stays F16") {
		t.Errorf("notes %q", p.Notes)
	}
	if p.Vocab.Model != TokenizerLlama || len(p.Vocab.Tokens) != 300 || p.Vocab.Tokens[299] != "[PAD299]" || p.Vocab.Types[299] != TokenUnused {
		t.Errorf("minimal vocabulary of 300: %s %d", p.Vocab.Model, len(p.Vocab.Tokens))
	}
	if _, ok := p.Metadata.Get("output.weight"); ok || slices.ContainsFunc(p.Tensors, func(ti gguf.TensorInfo) bool { return ti.Name == "output.weight" }) {
		t.Error("tied model has output.weight")
	}
}

// randomModel makes Llama weights with a fixed pseudo-random pattern.
func randomModel(layers, d, ff, heads, kv, hd, vocab int, tied bool) (refWeights, map[string][]int64) {
	w, shapes := refWeights{}, map[string][]int64{}
	seed := uint32(1)
	put := func(name string, shape ...int64) {
		v := make([]float32, num.Elements(shape))
		for i := range v {
			seed = seed*1664525 + 1013904223
			v[i] = (float32(seed>>8)/float32(1<<24) - 0.5) * 0.2
		}
		w[name], shapes[name] = v, shape
	}
	D, F := int64(d), int64(ff)
	put("model.embed_tokens.weight", int64(vocab), D)
	put("model.norm.weight", D)
	if !tied {
		put("lm_head.weight", int64(vocab), D)
	}
	for l := range layers {
		p := "model.layers." + strconv.Itoa(l) + "."
		put(p+"input_layernorm.weight", D)
		put(p+"post_attention_layernorm.weight", D)
		put(p+"self_attn.q_proj.weight", int64(heads*hd), D)
		put(p+"self_attn.k_proj.weight", int64(kv*hd), D)
		put(p+"self_attn.v_proj.weight", int64(kv*hd), D)
		put(p+"self_attn.o_proj.weight", D, int64(heads*hd))
		put(p+"mlp.gate_proj.weight", F, D)
		put(p+"mlp.up_proj.weight", F, D)
		put(p+"mlp.down_proj.weight", D, F)
	}
	return w, shapes
}

// TestPermutationRoundTrip: undoing the q/k permutation of the exported f32 tensors
// gives the HF bytes back; every other tensor is the HF data unchanged.
func TestPermutationRoundTrip(t *testing.T) {
	b, _ := exportModel(t, fx(t, "peft", "tiny"), ModelOptions{Type: gguf.TypeF32})
	h := readGGUF(t, b)
	hf := loadWeights(t, fx(t, "peft", "tiny", "model.safetensors"))
	for name, want := range hf {
		gname := ggufName(t, name)
		got, ti := tensorF32(t, b, h, gname)
		if heads := qkHeadsFor(gname); heads > 0 {
			if slices.Equal(got, want) {
				t.Errorf("%s: not permuted", gname)
			}
			got = unpermuteRows(t, got, int(ti.Shape[1]), heads)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: differs from %s (max |Δ| %g)", gname, name, maxAbsDiff(got, want))
		}
	}
	// The permutation of spec §3.4: hd = 8, one head → rows 0 4 1 5 2 6 3 7.
	order, err := gguf.LlamaQKRowOrder(8, 1)
	if err != nil || !slices.Equal(order, []int{0, 4, 1, 5, 2, 6, 3, 7}) {
		t.Errorf("row order %v %v", order, err)
	}
}

// TestDeterministic: re-exports are byte-identical whatever the thread count and however
// the input is read (folder, single file, stream from stdin, 4-bit from a stream).
func TestDeterministic(t *testing.T) {
	tiny := fx(t, "peft", "tiny")
	ref, _ := exportModel(t, tiny, ModelOptions{Type: gguf.TypeQ8_0})
	again, _ := exportModel(t, tiny, ModelOptions{Type: gguf.TypeQ8_0})
	if !bytes.Equal(ref, again) {
		t.Fatal("two exports differ")
	}
	if src, err := checkpoint.Open(filepath.Join(tiny, "model.safetensors"), nil); err != nil {
		t.Fatal(err)
	} else if _, err := PlanModel(src, ModelOptions{}); !errors.Is(err, checkpoint.ErrConfig) {
		t.Errorf("single file without config.json: %v", err)
	}
	// A stream carries config.json in its metadata.
	stream := selfDescribing(t, tiny)
	for _, threads := range []int{1, 2, 5} {
		src, err := checkpoint.Open("-", bytes.NewReader(stream))
		if err != nil {
			t.Fatal(err)
		}
		p, err := PlanModel(src, ModelOptions{Type: gguf.TypeQ8_0, Name: "tiny"})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := p.Write(context.Background(), &buf, WriteOptions{Threads: threads}); err != nil {
			t.Fatal(err)
		}
		src.Close()
		if !bytes.Equal(buf.Bytes(), ref) {
			t.Errorf("stream export with %d threads differs from the folder export", threads)
		}
	}

	nf4 := fx(t, "bnb", "tiny-nf4")
	nref, _ := exportModel(t, nf4, ModelOptions{Type: gguf.TypeF16})
	src, err := checkpoint.Open("-", bytes.NewReader(selfDescribing(t, nf4)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p, err := PlanModel(src, ModelOptions{Type: gguf.TypeF16, Name: "tiny-nf4"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := p.Write(context.Background(), &buf, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), nref) {
		t.Error("4-bit stream export differs from the folder export")
	}
}

// selfDescribing returns the folder's model as one safetensors stream carrying its
// config.json in __metadata__.
func selfDescribing(t testing.TB, dir string) []byte {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ts := map[string]safetensors.Tensor{}
	for _, ti := range f.Header.Tensors {
		d, err := f.Data(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		ts[ti.Name] = safetensors.Tensor{DType: ti.DType, Shape: ti.Shape, Data: d}
	}
	var buf bytes.Buffer
	md := checkpoint.Metadata(map[string][]byte{"config.json": mustRead(t, filepath.Join(dir, "config.json"))})
	if err := safetensors.Encode(&buf, md, ts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestNF4Dequantized: 4-bit weights come out as bitsandbytes' dequantize_4bit values.
func TestNF4Dequantized(t *testing.T) {
	for _, name := range []string{"tiny-nf4", "tiny-nf4-nodq"} {
		b, _ := exportModel(t, fx(t, "bnb", name), ModelOptions{Type: gguf.TypeF32})
		h := readGGUF(t, b)
		deq := loadWeights(t, fx(t, "bnb", name, "dequantized.safetensors"))
		if len(deq) != 14 {
			t.Fatalf("%s: %d dequantized tensors", name, len(deq))
		}
		for hf, want := range deq {
			gname := ggufName(t, hf)
			got, ti := tensorF32(t, b, h, gname)
			if heads := qkHeadsFor(gname); heads > 0 {
				got = unpermuteRows(t, got, int(ti.Shape[1]), heads)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s %s: max |Δ| %g from dequantize_4bit", name, gname, maxAbsDiff(got, want))
			}
		}
	}
}

func qkHeadsFor(gname string) int {
	switch {
	case len(gname) > 13 && gname[len(gname)-13:] == "attn_q.weight":
		return 4
	case len(gname) > 13 && gname[len(gname)-13:] == "attn_k.weight":
		return 2
	}
	return 0
}

// TestRopeFactors: rope_freqs.weight (the registry's Rope.Llama3Factors) divides each
// default frequency into transformers' llama3-scaled one (spec §3.5).
func TestRopeFactors(t *testing.T) {
	for _, s := range []string{
		`"factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192`,
		`"factor": 32, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192`,
		`"factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 32`,
	} {
		for _, c := range []struct {
			theta float64
			dim   int
		}{{500000, 128}, {10000, 16}, {500000, 64}} {
			parse := func(scaling string) *arch.Config {
				cfg, err := arch.ParseConfig([]byte(fmt.Sprintf(`{"model_type": "llama", "hidden_size": %d, "num_attention_heads": 1, "rope_theta": %g%s}`, c.dim, c.theta, scaling)))
				if err != nil {
					t.Fatal(err)
				}
				return cfg
			}
			plain := refInvFreq(parse(""))
			cfg := parse(`, "rope_scaling": {"rope_type": "llama3", ` + s + `}`)
			scaled := refInvFreq(cfg)
			r := cfg.Attention[0].Rope
			got := r.Llama3Factors()
			bands := map[string]int{}
			for i, f := range got {
				want := plain[i] / scaled[i]
				if math.Abs(float64(f)-want) > 2e-6*want {
					t.Errorf("θ %g dim %d %s: factor %d = %v, want %v", c.theta, c.dim, s, i, f, want)
				}
				switch {
				case f == 1:
					bands["high"]++
				case float64(f) == r.Factor:
					bands["low"]++
				default:
					bands["mid"]++
				}
			}
			if c.dim == 128 && r.OriginalMaxPositions == 8192 && (bands["high"] == 0 || bands["low"] == 0 || bands["mid"] == 0) {
				t.Errorf("θ %g dim %d: bands %v", c.theta, c.dim, bands)
			}
		}
	}
	// Both config layouts put rope_freqs.weight first, F32, [head_dim/2].
	dir := t.TempDir()
	tiny := fx(t, "peft", "tiny")
	for i, set := range []map[string]any{
		{"rope_parameters": map[string]any{"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
			"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}},
		{"rope_parameters": nil, "rope_theta": 500000.0, "rope_scaling": map[string]any{"rope_type": "llama3", "factor": 8.0,
			"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}, "original_max_position_embeddings": 8192},
	} {
		d := copyDir(t, tiny, filepath.Join(dir, strconv.Itoa(i)), map[string][]byte{"config.json": modifiedJSON(t, filepath.Join(tiny, "config.json"), set)})
		b, p := exportModel(t, d, ModelOptions{Type: gguf.TypeF16})
		h := readGGUF(t, b)
		if h.Tensors[0].Name != "rope_freqs.weight" || h.Tensors[0].Type != gguf.TypeF32 || !slices.Equal(h.Tensors[0].Shape, []int64{8}) {
			t.Fatalf("layout %d: first tensor %+v", i, h.Tensors[0])
		}
		got, _ := tensorF32(t, b, h, "rope_freqs.weight")
		want := (&arch.Rope{Type: arch.RopeLlama3, Theta: 500000, Dims: 16, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 64}).Llama3Factors()
		if !slices.Equal(got, want) {
			t.Errorf("layout %d: rope_freqs %v, want %v (original context from the scaling block)", i, got, want)
		}
		if v, _ := h.Metadata.Float32("llama.rope.freq_base"); v != 500000 {
			t.Errorf("layout %d: freq_base %v", i, v)
		}
		for _, kv := range h.Metadata {
			if len(kv.Key) > 18 && kv.Key[:18] == "llama.rope.scaling" {
				t.Errorf("layout %d: %s written for llama3 scaling", i, kv.Key)
			}
		}
		if !hasWarning(p.Notes, "rope_freqs") {
			t.Errorf("notes %q", p.Notes)
		}
	}
}

// TestAdapter checks the adapter file: keys, names, orientation, B-only permutation.
func TestAdapter(t *testing.T) {
	tiny, lora := fx(t, "peft", "tiny"), fx(t, "peft", "lora")
	b, p := exportAdapter(t, lora, tiny, AdapterOptions{Type: gguf.TypeF32})
	h := readGGUF(t, b)
	for _, w := range []struct {
		key string
		val any
	}{
		{"general.architecture", "llama"}, {"general.type", "adapter"}, {"adapter.type", "lora"},
		{"adapter.lora.alpha", float32(16)}, {"general.name", "lora"},
	} {
		got, ok := h.Metadata.Get(w.key)
		if !ok || fmt.Sprintf("%T %v", got, got) != fmt.Sprintf("%T %v", w.val, w.val) {
			t.Errorf("%s = %T %v, want %T %v", w.key, got, got, w.val, w.val)
		}
	}
	if len(h.Tensors) != 28 || len(p.Tensors) != 28 {
		t.Fatalf("%d tensors, want 28", len(h.Tensors))
	}
	aw := loadWeights(t, filepath.Join(lora, "adapter_model.safetensors"))
	for _, ti := range h.Tensors {
		var hfA, hfB string
		base, half := ti.Name[:len(ti.Name)-7], ti.Name[len(ti.Name)-6:]
		for hf := range aw {
			if g := ggufName(t, hfBase(hf)); g == base {
				if bytes.Contains([]byte(hf), []byte("lora_A")) {
					hfA = hf
				} else {
					hfB = hf
				}
			}
		}
		if hfA == "" || hfB == "" {
			t.Fatalf("%s: no source tensors", ti.Name)
		}
		got, _ := tensorF32(t, b, h, ti.Name)
		switch half {
		case "lora_a":
			if ti.Shape[1] != 8 || !slices.Equal(got, aw[hfA]) {
				t.Errorf("%s: ne %v or data differ from %s", ti.Name, ti.Shape, hfA)
			}
		case "lora_b":
			if ti.Shape[0] != 8 {
				t.Errorf("%s: ne %v, want [8, out]", ti.Name, ti.Shape)
			}
			if heads := qkHeadsFor(base); heads > 0 {
				if slices.Equal(got, aw[hfB]) {
					t.Errorf("%s: B not permuted", ti.Name)
				}
				got = unpermuteRows(t, got, int(ti.Shape[1]), heads)
			}
			if !slices.Equal(got, aw[hfB]) {
				t.Errorf("%s: data differ from %s", ti.Name, hfB)
			}
		default:
			t.Errorf("tensor %s has neither suffix", ti.Name)
		}
	}
	path := writeFile(t, filepath.Join(t.TempDir(), "a.gguf"), b)
	r, err := inspect.GGUF(path, false)
	if err != nil || r.GGUF.Type != "adapter" || r.TrainableParams != 16384 {
		t.Errorf("lora-inspect: %v %+v", err, r)
	}
	// The base can also be a GGUF model or a config.json: same bytes.
	gm, _ := exportModel(t, tiny, ModelOptions{Type: gguf.TypeF16})
	ggufBase := writeFile(t, filepath.Join(t.TempDir(), "base.gguf"), gm)
	for _, base := range []string{ggufBase, filepath.Join(tiny, "config.json")} {
		if b2, _ := exportAdapter(t, lora, base, AdapterOptions{Type: gguf.TypeF32}); !bytes.Equal(b2, b) {
			t.Errorf("base %s: different output", base)
		}
	}
}

func hfBase(name string) string {
	for _, s := range []string{".lora_A.weight", ".lora_B.weight"} {
		if i := bytes.Index([]byte(name), []byte(s)); i >= 0 {
			return name[len("base_model.model."):i] + ".weight"
		}
	}
	return name
}

// TestAdapterScaling checks the rules of spec §4.5 on the fixture adapter.
func TestAdapterScaling(t *testing.T) {
	tiny, lora := fx(t, "peft", "tiny"), fx(t, "peft", "lora")
	aw := loadWeights(t, filepath.Join(lora, "adapter_model.safetensors"))
	for _, tc := range []struct {
		name  string
		set   map[string]any
		alpha float32
		scale func(module string) float32 // folded into B; nil: B unchanged
	}{
		{"uniform", nil, 16, nil},
		{"rank_pattern same rank", map[string]any{"rank_pattern": map[string]any{"q_proj": 8}}, 16, nil},
		{"rslora", map[string]any{"use_rslora": true}, float32(16 * math.Sqrt(8)), nil},
		{"alpha_pattern", map[string]any{"alpha_pattern": map[string]any{"q_proj": 4}}, 0, func(m string) float32 {
			if bytes.HasSuffix([]byte(m), []byte("q_proj")) {
				return 0.5
			}
			return 2
		}},
		{"alpha 0", map[string]any{"lora_alpha": 0}, 0, func(string) float32 { return 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, lora, t.TempDir(), map[string][]byte{
				"adapter_config.json": modifiedJSON(t, filepath.Join(lora, "adapter_config.json"), tc.set)})
			b, p := exportAdapter(t, dir, tiny, AdapterOptions{Type: gguf.TypeF32})
			h := readGGUF(t, b)
			if a, _ := h.Metadata.Float32("adapter.lora.alpha"); a != tc.alpha {
				t.Errorf("adapter.lora.alpha = %v, want %v (notes %q)", a, tc.alpha, p.Notes)
			}
			for hf, src := range aw {
				if !bytes.Contains([]byte(hf), []byte("lora_B")) {
					continue
				}
				g := ggufName(t, hfBase(hf))
				got, ti := tensorF32(t, b, h, g+".lora_b")
				if heads := qkHeadsFor(g); heads > 0 {
					got = unpermuteRows(t, got, int(ti.Shape[1]), heads)
				}
				s := float32(1)
				if tc.scale != nil {
					s = tc.scale(hfBase(hf)[:len(hfBase(hf))-7])
				}
				for i := range src {
					if got[i] != src[i]*s {
						t.Fatalf("%s[%d] = %v, want %v·%v", g, i, got[i], s, src[i])
					}
				}
			}
		})
	}
}

// TestAdapterRefusals: what GGUF adapters cannot hold is refused with exit-3 errors.
func TestAdapterRefusals(t *testing.T) {
	tiny, lora := fx(t, "peft", "tiny"), fx(t, "peft", "lora")
	plan := func(dir, base string, o AdapterOptions) error {
		src, err := checkpoint.Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		b, err := OpenBase(base)
		if err != nil {
			return err
		}
		_, err = PlanAdapter(src, b, o)
		return err
	}
	if err := plan(fx(t, "peft", "dora"), tiny, AdapterOptions{}); !errors.Is(err, ErrDoRA) {
		t.Errorf("DoRA: %v", err)
	}
	if err := plan(lora, tiny, AdapterOptions{Type: gguf.TypeQ8_0}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("q8_0 adapter: %v", err)
	}
	// A base whose shapes differ.
	other := copyDir(t, tiny, t.TempDir(), map[string][]byte{"config.json": modifiedJSON(t, filepath.Join(tiny, "config.json"),
		map[string]any{"intermediate_size": 96})})
	if err := plan(lora, other, AdapterOptions{}); !errors.Is(err, ErrBase) {
		t.Errorf("wrong base: %v", err)
	}
	// modules_to_save tensors.
	dir := t.TempDir()
	extra := writeAdapterWith(t, lora, dir, map[string]safetensors.Tensor{
		"base_model.model.lm_head.modules_to_save.default.weight": {DType: dtype.F32, Shape: []int64{256, 64}, Data: make([]byte, 256*64*4)},
	})
	if err := plan(extra, tiny, AdapterOptions{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("modules_to_save: %v", err)
	}
	// LoRA on lm_head with a tied base.
	lm := writeAdapterWith(t, lora, t.TempDir(), map[string]safetensors.Tensor{
		"base_model.model.lm_head.lora_A.weight": {DType: dtype.F32, Shape: []int64{8, 64}, Data: make([]byte, 8*64*4)},
		"base_model.model.lm_head.lora_B.weight": {DType: dtype.F32, Shape: []int64{256, 8}, Data: make([]byte, 256*8*4)},
	})
	tied := copyDir(t, tiny, t.TempDir(), map[string][]byte{"config.json": modifiedJSON(t, filepath.Join(tiny, "config.json"),
		map[string]any{"tie_word_embeddings": true})})
	if err := plan(lm, tied, AdapterOptions{}); !errors.Is(err, arch.ErrGGUF) {
		t.Errorf("lm_head on a tied base: %v", err)
	}
	if err := plan(lm, tiny, AdapterOptions{}); err != nil {
		t.Errorf("lm_head on an untied base: %v", err)
	}
	// Norm tensors are dropped with a warning.
	norm := writeAdapterWith(t, lora, t.TempDir(), map[string]safetensors.Tensor{
		"base_model.model.model.layers.0.input_layernorm.weight": {DType: dtype.F32, Shape: []int64{64}, Data: make([]byte, 64*4)},
	})
	_, p := exportAdapter(t, norm, tiny, AdapterOptions{})
	if !hasWarning(p.Warnings, "input_layernorm") || len(p.Tensors) != 28 {
		t.Errorf("norm tensor: %d tensors, warnings %q", len(p.Tensors), p.Warnings)
	}
	// An embedding LoRA: A transposed.
	emb := writeAdapterWith(t, lora, t.TempDir(), map[string]safetensors.Tensor{
		"base_model.model.model.embed_tokens.lora_embedding_A": f32Tensor([]int64{8, 256}),
		"base_model.model.model.embed_tokens.lora_embedding_B": f32Tensor([]int64{64, 8}),
	})
	b, _ := exportAdapter(t, emb, tiny, AdapterOptions{})
	h := readGGUF(t, b)
	a, ai := tensorF32(t, b, h, "token_embd.weight.lora_a")
	_, bi := tensorF32(t, b, h, "token_embd.weight.lora_b")
	src := f32Tensor([]int64{8, 256})
	sv := make([]float32, 8*256)
	dtype.ToF32(sv, src.Data, dtype.F32)
	if !slices.Equal(ai.Shape, []int64{8, 256}) || !slices.Equal(bi.Shape, []int64{8, 64}) || a[1] != sv[256] || a[8] != sv[1] {
		t.Errorf("embedding: lora_a ne %v, lora_b ne %v", ai.Shape, bi.Shape)
	}
}

func f32Tensor(shape []int64) safetensors.Tensor {
	v := make([]float32, num.Elements(shape))
	for i := range v {
		v[i] = float32(i%97) / 97
	}
	return safetensors.Tensor{DType: dtype.F32, Shape: shape, Data: append([]byte(nil), num.F32Bytes(v)...)}
}

// writeAdapterWith writes the adapter of dir plus extra tensors into out.
func writeAdapterWith(t testing.TB, dir, out string, extra map[string]safetensors.Tensor) string {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ts := map[string]safetensors.Tensor{}
	for _, ti := range f.Header.Tensors {
		d, _ := f.Data(ti.Name)
		ts[ti.Name] = safetensors.Tensor{DType: ti.DType, Shape: ti.Shape, Data: d}
	}
	for k, v := range extra {
		ts[k] = v
	}
	var buf bytes.Buffer
	if err := safetensors.Encode(&buf, map[string]string{"format": "pt"}, ts); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(out, "adapter_model.safetensors"), buf.Bytes())
	writeFile(t, filepath.Join(out, "adapter_config.json"), mustRead(t, filepath.Join(dir, "adapter_config.json")))
	return out
}

// TestModelRefusals: inputs llama.cpp could not load are refused before any output.
func TestModelRefusals(t *testing.T) {
	tiny := fx(t, "peft", "tiny")
	plan := func(dir string) error {
		src, err := checkpoint.Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		_, err = PlanModel(src, ModelOptions{Type: gguf.TypeF16})
		return err
	}
	for _, tc := range []struct {
		name string
		set  map[string]any
		want error
	}{
		{"gpt2", map[string]any{"model_type": "gpt2"}, arch.ErrUnsupported},
		{"qwen2 without its biases", map[string]any{"model_type": "qwen2"}, ErrInvalid},
		{"gemma2 untied", map[string]any{"model_type": "gemma2"}, arch.ErrGGUF},
		{"wrong heads", map[string]any{"intermediate_size": 64}, ErrInvalid},
		{"fewer layers", map[string]any{"num_hidden_layers": 1}, arch.ErrTensor},
		{"more layers", map[string]any{"num_hidden_layers": 3}, ErrInvalid},
	} {
		dir := copyDir(t, tiny, t.TempDir(), map[string][]byte{"config.json": modifiedJSON(t, filepath.Join(tiny, "config.json"), tc.set)})
		if err := plan(dir); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if err := plan(fx(t, "peft", "lora")); !errors.Is(err, model.ErrNotModel) {
		t.Errorf("adapter as model: %v", err)
	}
}

// TestWriteErrors: a failing conversion or writer stops the export with the tensor named.
func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	w, shapes := randomModel(1, 64, 64, 2, 2, 32, 256, false)
	w["model.layers.0.mlp.up_proj.weight"][100] = float32(math.NaN())
	writeModel(t, dir, []byte(`{"model_type": "llama", "hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 1,
		"num_attention_heads": 2, "vocab_size": 256, "max_position_embeddings": 64}`), w, shapes, dtype.F32)
	src, err := checkpoint.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p, err := PlanModel(src, ModelOptions{Type: gguf.TypeQ8_0})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Write(context.Background(), io_Discard{}, WriteOptions{})
	if !errors.Is(err, gguf.ErrNonFinite) || !bytes.Contains([]byte(err.Error()), []byte("blk.0.ffn_up.weight")) {
		t.Errorf("NaN into Q8_0: %v", err)
	}
	// A writer that fails half way.
	p, _ = PlanModel(src, ModelOptions{Type: gguf.TypeF16})
	fw := &failWriter{left: 40000}
	if _, err := p.Write(context.Background(), fw, WriteOptions{}); !errors.Is(err, errDiskFull) {
		t.Errorf("failing writer: %v", err)
	}
	// A cancelled context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p, _ = PlanModel(src, ModelOptions{Type: gguf.TypeQ4_0})
	if _, err := p.Write(ctx, io_Discard{}, WriteOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

type io_Discard struct{}

func (io_Discard) Write(b []byte) (int, error) { return len(b), nil }

var errDiskFull = errors.New("disk full")

type failWriter struct{ left int }

func (f *failWriter) Write(b []byte) (int, error) {
	if len(b) > f.left {
		n := f.left
		f.left = 0
		return n, errDiskFull
	}
	f.left -= len(b)
	return len(b), nil
}

// TestChunkedConversion: converting in chunks of rows on the streaming engine gives
// the bytes of a one-shot conversion for every worker count, and stops on errors.
func TestChunkedConversion(t *testing.T) {
	rows, cols := int64(1000), int64(4096)
	src := make([]float32, rows*cols)
	for i := range src {
		src[i] = float32(math.Sin(float64(i)))
	}
	want := make([]byte, rows*cols/32*34)
	if err := gguf.Quantize(want, src, gguf.TypeQ8_0); err != nil {
		t.Fatal(err)
	}
	rb, _ := gguf.TypeQ8_0.RowBytes(cols)
	per := max(1, chunkBytes/rb)
	run := func(workers int, fn rowFn) ([]byte, error) {
		j := &pipeline.Job{Name: "t", Chunks: int((rows + per - 1) / per),
			Size: func(c int) int { r0 := int64(c) * per; return int((min(rows, r0+per) - r0) * rb) },
			Run: func(c int, out []byte, w *pipeline.Worker) error {
				r0 := int64(c) * per
				return fn(out, r0, min(rows, r0+per), w.Local.(*[]float32))
			}}
		var got []byte
		err := pipeline.Run(context.Background(), pipeline.Options{Workers: workers, Local: func() any { return new([]float32) }},
			[]*pipeline.Job{j}, func(_ *pipeline.Job, _ int, out []byte) error { got = append(got, out...); return nil })
		return got, err
	}
	fn := encodeRows(num.F32Bytes(src), dtype.F32, cols, 0, 1, gguf.TypeQ8_0, nil)
	for _, workers := range []int{1, 2, 7} {
		got, err := run(workers, fn)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%d workers: output differs (%v)", workers, err)
		}
		boom := errors.New("boom")
		_, err = run(workers, func(dst []byte, r0, r1 int64, _ *[]float32) error {
			if r0 > 500 {
				return boom
			}
			return nil
		})
		if !errors.Is(err, boom) {
			t.Errorf("%d workers: error %v", workers, err)
		}
	}
}
