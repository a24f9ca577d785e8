package gguf

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestSummaryModel(t *testing.T) {
	kvs := []KV{
		{KeyArchitecture, "llama"},
		{KeyType, "model"},
		{KeyName, "tiny"},
		{KeyFileType, uint32(FileTypeMostlyQ8_0)},
		{KeyQuantizationVersion, uint32(QuantizationVersion)},
		{"llama.block_count", uint32(2)},
		{"llama.context_length", uint32(2048)},
		{"llama.embedding_length", uint32(64)},
		{KeyTokenizerModel, "llama"},
		{KeyTokenizerTokens, []string{"a", "b", "c"}},
	}
	q8 := make([]byte, 64*3/32*34)
	tensors := []testTensor{
		{TensorInfo{Name: "token_embd.weight", Type: TypeQ8_0, Shape: []int64{64, 3}}, q8},
		{TensorInfo{Name: "output_norm.weight", Type: TypeF32, Shape: []int64{64}}, make([]byte, 256)},
	}
	file := encodeFile(t, kvs, tensors)
	h, err := ReadHeader(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	s := h.Summary()
	if s.Architecture != "llama" || s.Type != "model" || s.Name != "tiny" || s.TokenizerModel != "llama" {
		t.Errorf("strings: %+v", s)
	}
	if s.FileType == nil || *s.FileType != FileTypeMostlyQ8_0 || s.LoRAAlpha != nil {
		t.Errorf("file type %v alpha %v", s.FileType, s.LoRAAlpha)
	}
	if s.TensorCount != 2 || s.KVCount != len(kvs) || s.Parameters != 64*3+64 || s.TensorBytes != int64(len(q8))+256 {
		t.Errorf("counts: %+v", s)
	}
	if s.VocabSize != 3 || s.BlockCount != 2 || s.ContextLength != 2048 || s.EmbeddingLen != 64 || s.Alignment != 32 {
		t.Errorf("hparams: %+v", s)
	}
	if s.TensorTypes["Q8_0"] != 1 || s.TensorTypes["F32"] != 1 {
		t.Errorf("types %v", s.TensorTypes)
	}
	if ts := s.Tensors[0]; ts.Name != "token_embd.weight" || ts.Type != TypeQ8_0 || ts.Elements != 192 || ts.Bytes != 204 {
		t.Errorf("tensor: %+v", ts)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"file_type":"MOSTLY_Q8_0"`, `"type":"Q8_0"`, `"shape":[64,3]`, `"vocab_size":3`, `"parameters":256`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("json lacks %s: %s", want, b)
		}
	}
}

func TestSummaryAdapter(t *testing.T) {
	kvs := []KV{
		{KeyArchitecture, "llama"},
		{KeyType, "adapter"},
		{KeyAdapterType, "lora"},
		{KeyAdapterLoRAAlpha, float32(16)},
	}
	tensors := []testTensor{
		{TensorInfo{Name: "blk.0.attn_q.weight.lora_a", Type: TypeF32, Shape: []int64{64, 8}}, make([]byte, 64*8*4)},
		{TensorInfo{Name: "blk.0.attn_q.weight.lora_b", Type: TypeF32, Shape: []int64{8, 64}}, make([]byte, 64*8*4)},
	}
	file := encodeFile(t, kvs, tensors)
	h, err := ReadHeader(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	s := h.Summary()
	if s.Type != "adapter" || s.AdapterType != "lora" || s.LoRAAlpha == nil || *s.LoRAAlpha != 16 {
		t.Errorf("%+v", s)
	}
	if s.Parameters != 2*64*8 || s.VocabSize != 0 || s.FileType != nil {
		t.Errorf("%+v", s)
	}
}

func TestSummaryVocabFromEmbedding(t *testing.T) {
	h := &Header{Alignment: 32, Metadata: Metadata{{KeyArchitecture, "llama"}},
		Tensors: []TensorInfo{{Name: "token_embd.weight", Type: TypeF16, Shape: []int64{64, 50257}}}}
	if s := h.Summary(); s.VocabSize != 50257 {
		t.Errorf("vocab %d", s.VocabSize)
	}
	h.Metadata = append(h.Metadata, KV{"llama.vocab_size", uint32(50000)})
	if s := h.Summary(); s.VocabSize != 50000 {
		t.Errorf("vocab %d, want llama.vocab_size", s.VocabSize)
	}
}

func TestFormatValue(t *testing.T) {
	cases := []struct {
		v    any
		max  int
		want string
	}{
		{uint32(7), 3, "7"},
		{"a\"b", 3, `"a\"b"`},
		{[]string{"x", "y", "z", "w"}, 2, `[str × 4] ["x" "y" …]`},
		{[]int32{1, 2}, 5, "[i32 × 2] [1 2]"},
		{[]float32{1.5}, 0, "[f32 × 1]"},
		{[]any{[]uint8{1}}, 3, "[arr × 1] [[u8 × 1] [1]]"},
	}
	for _, c := range cases {
		if got := FormatValue(c.v, c.max); got != c.want {
			t.Errorf("FormatValue(%#v) = %q, want %q", c.v, got, c.want)
		}
	}
}
