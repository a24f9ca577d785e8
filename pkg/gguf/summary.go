package gguf

import (
	"fmt"
	"strconv"
	"strings"
)

// Well-known metadata keys read by Summary.
const (
	KeyArchitecture        = "general.architecture"
	KeyType                = "general.type"
	KeyName                = "general.name"
	KeyFileType            = "general.file_type"
	KeyQuantizationVersion = "general.quantization_version"
	KeyAdapterType         = "adapter.type"
	KeyAdapterLoRAAlpha    = "adapter.lora.alpha"
	KeyTokenizerModel      = "tokenizer.ggml.model"
	KeyTokenizerTokens     = "tokenizer.ggml.tokens"
)

// Summary is an overview of a GGUF file for reports (lora-inspect). Fields that the file
// does not have are zero (pointers nil); JSON field names are stable.
type Summary struct {
	Version      uint32 `json:"version"`
	Architecture string `json:"architecture,omitempty"` // general.architecture
	Type         string `json:"type,omitempty"`         // general.type: "model", "adapter", …
	Name         string `json:"name,omitempty"`         // general.name
	AdapterType  string `json:"adapter_type,omitempty"` // adapter.type ("lora")
	// LoRAAlpha is adapter.lora.alpha when present and a number (llama.cpp treats
	// absent as 0: scale = user scale).
	LoRAAlpha *float32 `json:"lora_alpha,omitempty"`
	// FileType is general.file_type when present and an integer.
	FileType       *FileType `json:"file_type,omitempty"`
	Alignment      int64     `json:"alignment"`
	KVCount        int       `json:"kv_count"`
	TensorCount    int       `json:"tensor_count"`
	Parameters     int64     `json:"parameters"`   // total elements of all tensors
	TensorBytes    int64     `json:"tensor_bytes"` // total data bytes, without padding
	BlockCount     int64     `json:"block_count,omitempty"`
	ContextLength  int64     `json:"context_length,omitempty"`
	EmbeddingLen   int64     `json:"embedding_length,omitempty"`
	TokenizerModel string    `json:"tokenizer_model,omitempty"` // tokenizer.ggml.model
	// VocabSize is <arch>.vocab_size, else the length of tokenizer.ggml.tokens, else
	// ne[1] of token_embd.weight; 0 if none of these exists.
	VocabSize int64 `json:"vocab_size,omitempty"`
	// TensorTypes counts tensors per ggml type name.
	TensorTypes map[string]int  `json:"tensor_types"`
	Tensors     []TensorSummary `json:"tensors"`
}

// TensorSummary describes one tensor in a Summary.
type TensorSummary struct {
	Name     string  `json:"name"`
	Type     Type    `json:"type"`
	Shape    []int64 `json:"shape"` // ggml ne order (innermost first)
	Elements int64   `json:"elements"`
	Bytes    int64   `json:"bytes"`
}

// Summary summarizes the header (tensors in file order).
func (h *Header) Summary() Summary {
	m := h.Metadata
	s := Summary{
		Version:     h.Version,
		Alignment:   h.Alignment,
		KVCount:     len(m),
		TensorCount: len(h.Tensors),
		TensorTypes: map[string]int{},
		Tensors:     make([]TensorSummary, 0, len(h.Tensors)),
	}
	s.Architecture, _ = m.String(KeyArchitecture)
	s.Type, _ = m.String(KeyType)
	s.Name, _ = m.String(KeyName)
	s.AdapterType, _ = m.String(KeyAdapterType)
	s.TokenizerModel, _ = m.String(KeyTokenizerModel)
	if a, ok := m.Float(KeyAdapterLoRAAlpha); ok {
		f := float32(a)
		s.LoRAAlpha = &f
	}
	if ft, ok := m.Uint(KeyFileType); ok && ft <= 1<<32-1 {
		f := FileType(ft)
		s.FileType = &f
	}
	if s.Architecture != "" {
		arch := s.Architecture + "."
		s.BlockCount = uintOr0(m, arch+"block_count")
		s.ContextLength = uintOr0(m, arch+"context_length")
		s.EmbeddingLen = uintOr0(m, arch+"embedding_length")
		s.VocabSize = uintOr0(m, arch+"vocab_size")
	}
	if s.VocabSize == 0 {
		if n, ok := m.Len(KeyTokenizerTokens); ok {
			s.VocabSize = int64(n)
		}
	}
	for _, t := range h.Tensors {
		n := t.NumElements()
		b := t.NumBytes()
		s.Parameters += n
		s.TensorBytes += b
		s.TensorTypes[t.Type.String()]++
		s.Tensors = append(s.Tensors, TensorSummary{Name: t.Name, Type: t.Type, Shape: t.Shape, Elements: n, Bytes: b})
		if s.VocabSize == 0 && t.Name == "token_embd.weight" && len(t.Shape) >= 2 {
			s.VocabSize = t.Shape[1]
		}
	}
	return s
}

func uintOr0(m Metadata, key string) int64 {
	if v, ok := m.Uint(key); ok && v <= 1<<63-1 {
		return int64(v)
	}
	return 0
}

// FormatValue renders a metadata value for humans: strings quoted, arrays as their
// element type and length followed by at most maxElems elements.
func FormatValue(v any, maxElems int) string {
	typ, elem, ok := TypeOf(v)
	if !ok {
		return fmt.Sprintf("%v", v)
	}
	switch typ {
	case ValueString:
		return strconv.Quote(v.(string))
	case ValueArray:
	default:
		return fmt.Sprint(v)
	}
	n := arrayLen(v)
	var b strings.Builder
	fmt.Fprintf(&b, "[%s × %d]", elem, n)
	if maxElems <= 0 || n == 0 {
		return b.String()
	}
	b.WriteString(" [")
	for i := 0; i < min(n, maxElems); i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(FormatValue(arrayElem(v, i), maxElems))
	}
	if n > maxElems {
		b.WriteString(" …")
	}
	b.WriteByte(']')
	return b.String()
}

func arrayElem(v any, i int) any {
	switch a := v.(type) {
	case []uint8:
		return a[i]
	case []int8:
		return a[i]
	case []uint16:
		return a[i]
	case []int16:
		return a[i]
	case []uint32:
		return a[i]
	case []int32:
		return a[i]
	case []float32:
		return a[i]
	case []bool:
		return a[i]
	case []string:
		return a[i]
	case []uint64:
		return a[i]
	case []int64:
		return a[i]
	case []float64:
		return a[i]
	case []any:
		return a[i]
	}
	return nil
}
