package nf4

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/lorakit/lorakit/pkg/dtype"
)

// QuantizationConfig is the "quantization_config" block transformers writes
// into config.json for a bitsandbytes 4-bit model (spec 5.4).
type QuantizationConfig struct {
	QuantType    Type   // bnb_4bit_quant_type; must match the tensors
	DoubleQuant  bool   // bnb_4bit_use_double_quant; must match the tensors
	ComputeDType string // bnb_4bit_compute_dtype (torch name); "" means "bfloat16"
	QuantStorage string // bnb_4bit_quant_storage (torch name); "" means "uint8"
	// SkipModules is llm_int8_skip_modules: nil is written as null (the
	// default skip set); a non-nil list replaces the defaults, so it should
	// include "lm_head".
	SkipModules []string
}

// MarshalJSON writes all 13 keys in the order transformers'
// BitsAndBytesConfig.to_dict gives them (sorted), compactly; indent the
// enclosing document as needed (json.MarshalIndent re-indents it).
func (c QuantizationConfig) MarshalJSON() ([]byte, error) {
	compute, storage := c.ComputeDType, c.QuantStorage
	if compute == "" {
		compute = "bfloat16"
	}
	if storage == "" {
		storage = "uint8"
	}
	skip := []byte("null")
	if c.SkipModules != nil {
		var err error
		if skip, err = json.Marshal(c.SkipModules); err != nil {
			return nil, err
		}
	}
	str := func(s string) []byte { b, _ := json.Marshal(s); return b }
	var b bytes.Buffer
	b.WriteString(`{"_load_in_4bit":true,"_load_in_8bit":false,"bnb_4bit_compute_dtype":`)
	b.Write(str(compute))
	b.WriteString(`,"bnb_4bit_quant_storage":`)
	b.Write(str(storage))
	fmt.Fprintf(&b, `,"bnb_4bit_quant_type":"%s","bnb_4bit_use_double_quant":%t`, c.QuantType, c.DoubleQuant)
	b.WriteString(`,"llm_int8_enable_fp32_cpu_offload":false,"llm_int8_has_fp16_weight":false,"llm_int8_skip_modules":`)
	b.Write(skip)
	b.WriteString(`,"llm_int8_threshold":6.0,"load_in_4bit":true,"load_in_8bit":false,"quant_method":"bitsandbytes"}`)
	return b.Bytes(), nil
}

// maxConfigJSON bounds a quantization_config block.
const maxConfigJSON = 1 << 16

// ParseQuantizationConfig reads a quantization_config block and checks that
// it describes bitsandbytes 4-bit quantization (load_in_4bit true, or
// _load_in_4bit, and quant_method "bitsandbytes" when present). Missing keys
// take transformers' defaults: bnb_4bit_quant_type "fp4", no double
// quantization, compute dtype "float32", storage "uint8".
func ParseQuantizationConfig(raw []byte) (*QuantizationConfig, error) {
	if len(raw) > maxConfigJSON {
		return nil, fmt.Errorf("%w: %d bytes", ErrConfig, len(raw))
	}
	var v struct {
		QuantMethod  *string   `json:"quant_method"`
		Load4        *bool     `json:"load_in_4bit"`
		Load4Priv    *bool     `json:"_load_in_4bit"`
		QuantType    *string   `json:"bnb_4bit_quant_type"`
		DoubleQuant  *bool     `json:"bnb_4bit_use_double_quant"`
		ComputeDType *string   `json:"bnb_4bit_compute_dtype"`
		QuantStorage *string   `json:"bnb_4bit_quant_storage"`
		Skip         *[]string `json:"llm_int8_skip_modules"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if v.QuantMethod != nil && *v.QuantMethod != "bitsandbytes" {
		return nil, fmt.Errorf("%w: quant_method %q", ErrConfig, *v.QuantMethod)
	}
	if !(v.Load4 != nil && *v.Load4) && !(v.Load4Priv != nil && *v.Load4Priv) {
		return nil, fmt.Errorf("%w: not a 4-bit config (load_in_4bit is not true)", ErrConfig)
	}
	c := &QuantizationConfig{QuantType: FP4, ComputeDType: "float32", QuantStorage: "uint8"}
	if v.QuantType != nil {
		t, err := ParseType(*v.QuantType)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		c.QuantType = t
	}
	if v.DoubleQuant != nil {
		c.DoubleQuant = *v.DoubleQuant
	}
	if v.ComputeDType != nil {
		c.ComputeDType = *v.ComputeDType
	}
	if v.QuantStorage != nil {
		c.QuantStorage = *v.QuantStorage
	}
	if v.Skip != nil {
		c.SkipModules = append([]string{}, *v.Skip...)
	}
	return c, nil
}

// DefaultSkipModules is the skip set transformers uses for Llama-family
// models when llm_int8_skip_modules is null: the output embedding.
var DefaultSkipModules = []string{"lm_head"}

// Selector decides which tensors of an unquantized checkpoint become 4-bit
// (spec 5.5): the 2-D float weights ("<module>.weight") of Linear modules,
// except embeddings and skipped modules. Norm weights and biases are never
// 2-D Linear weights and so are never selected. GPT-2 Conv1D weights (which
// would need a transpose) are not handled.
type Selector struct {
	patterns []string
	res      []*regexp.Regexp
}

// Bounds on skip patterns.
const (
	maxSkipPatterns = 1024
	maxPatternLen   = 1024
)

// NewSelector returns a Selector for llm_int8_skip_modules-style patterns;
// nil means DefaultSkipModules. A module is skipped when a pattern p
// matches it as transformers' should_convert_module does: p (a regular
// expression, RE2 syntax) matches at the start of the module name, or the
// name ends with p literally.
func NewSelector(skip []string) (*Selector, error) {
	if skip == nil {
		skip = DefaultSkipModules
	}
	if len(skip) > maxSkipPatterns {
		return nil, fmt.Errorf("%w: %d skip patterns", ErrConfig, len(skip))
	}
	s := &Selector{patterns: append([]string(nil), skip...)}
	for _, p := range skip {
		if len(p) > maxPatternLen {
			return nil, fmt.Errorf("%w: skip pattern of %d bytes", ErrConfig, len(p))
		}
		re, err := regexp.Compile(`^(?:` + p + `)`)
		if err != nil {
			return nil, fmt.Errorf("%w: skip pattern %q: %v", ErrConfig, p, err)
		}
		s.res = append(s.res, re)
	}
	return s, nil
}

// Skipped reports whether module (a module name such as "lm_head" or
// "model.layers.0.mlp.down_proj") matches a skip pattern.
func (s *Selector) Skipped(module string) bool {
	for i, re := range s.res {
		if re.MatchString(module) || strings.HasSuffix(module, s.patterns[i]) {
			return true
		}
	}
	return false
}

// Quantize reports whether the tensor name with the given dtype and shape is
// quantized: name is "<module>.weight", the tensor is 2-D F32, BF16 or F16
// with at least one element, the module is not an embedding (its last name
// component contains "embed", or is "wte" or "wpe") and not skipped.
func (s *Selector) Quantize(name string, dt dtype.DType, shape []int64) bool {
	module, ok := strings.CutSuffix(name, ".weight")
	if !ok || module == "" || len(shape) != 2 || shape[0] <= 0 || shape[1] <= 0 {
		return false
	}
	if dt != dtype.F32 && dt != dtype.BF16 && dt != dtype.F16 {
		return false
	}
	last := module[strings.LastIndexByte(module, '.')+1:]
	if strings.Contains(last, "embed") || last == "wte" || last == "wpe" {
		return false
	}
	return !s.Skipped(module)
}
