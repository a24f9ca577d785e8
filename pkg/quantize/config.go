package quantize

import (
	"fmt"

	"github.com/lorakit/lorakit/internal/pyjson"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
)

const quantKey = "quantization_config"

// quantizedConfig returns config.json with the quantization_config block
// appended, formatted as the reference tooling writes it (Python's
// json.dump(config, f, indent=2): the input's key order, the block last, no
// trailing newline). The rest of the config keeps its keys and values.
func quantizedConfig(raw []byte, qc nf4.QuantizationConfig) ([]byte, error) {
	v, err := parseConfigObject(raw)
	if err != nil {
		return nil, err
	}
	if p, ok := v.Get(quantKey); ok && p.Kind != pyjson.KindNull {
		return nil, fmt.Errorf("config.json: %w: it already has a %s block", ErrQuantized, quantKey)
	}
	block, err := qc.MarshalJSON()
	if err != nil {
		return nil, err
	}
	bv, err := pyjson.Decode(block)
	if err != nil {
		return nil, err
	}
	v.Set(quantKey, bv)
	return pyjson.Indent2.Marshal(v), nil
}

// dequantizedConfig returns config.json without its quantization_config
// block; when to is set, the top-level "dtype" (transformers v5) and
// "torch_dtype" (v4) keys that exist are set to its torch name.
func dequantizedConfig(raw []byte, to dtype.DType) ([]byte, error) {
	v, err := parseConfigObject(raw)
	if err != nil {
		return nil, err
	}
	v.Remove(quantKey)
	if to != "" {
		name := to.TorchName()
		for _, k := range []string{"dtype", "torch_dtype"} {
			if p, ok := v.Get(k); ok {
				*p = pyjson.String(name)
			}
		}
	}
	return pyjson.Indent2.Marshal(v), nil
}

func parseConfigObject(raw []byte) (pyjson.Value, error) {
	v, err := pyjson.Decode(raw)
	if err != nil {
		return pyjson.Value{}, fmt.Errorf("config.json: %w: %v", checkpoint.ErrConfig, err)
	}
	if v.Kind != pyjson.KindObject {
		return pyjson.Value{}, fmt.Errorf("config.json: %w: not a JSON object", checkpoint.ErrConfig)
	}
	return v, nil
}

// hasQuantizationConfig reports whether raw (a config.json) has a
// quantization_config block; unparsable configs report false.
func hasQuantizationConfig(raw []byte) bool {
	v, err := pyjson.Decode(raw)
	if err != nil || v.Kind != pyjson.KindObject {
		return false
	}
	p, ok := v.Get(quantKey)
	return ok && p.Kind != pyjson.KindNull
}

// ParseFloatDType parses a command-line dtype for dequantized or compute
// values: bf16, f16 or f32 in any spelling dtype.ParseName accepts
// ("bfloat16", "torch.float16", "F32").
func ParseFloatDType(s string) (dtype.DType, error) {
	d, err := dtype.ParseName(s)
	if err != nil {
		return "", err
	}
	switch d {
	case dtype.F32, dtype.BF16, dtype.F16:
		return d, nil
	}
	return "", fmt.Errorf("%w: %q (want bf16, f16 or f32)", nf4.ErrDType, s)
}
