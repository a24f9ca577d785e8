package merge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/lorakit/lorakit/internal/pyjson"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
)

// MaxConfig bounds the config.json this package edits.
const MaxConfig = 16 << 20

// configDumps writes config.json as transformers does (json.dumps with
// indent 2, ASCII only) keeping the number literals and key order as they
// were.
var configDumps = pyjson.Options{Pretty: true, Indent: "  ", EnsureASCII: true, RawNumbers: true}

// configEdit lists the changes a merge makes to config.json.
type configEdit struct {
	untie     bool        // set tie_word_embeddings to false (added when absent)
	dropQuant bool        // remove quantization_config (dequantized output)
	dtype     dtype.DType // set torch_dtype/dtype, when not ""
}

// editConfig applies e to config.json b. It returns b unchanged when there
// is nothing to change, so that an unchanged config keeps its bytes.
func editConfig(b []byte, e configEdit) ([]byte, error) {
	if !e.untie && !e.dropQuant && e.dtype == "" {
		return b, nil
	}
	if len(b) > MaxConfig {
		return nil, fmt.Errorf("%w: config.json is %d bytes (limit %d)", checkpoint.ErrConfig, len(b), MaxConfig)
	}
	v, err := pyjson.Decode(b)
	if err == nil && v.Kind != pyjson.KindObject {
		err = errors.New("not a JSON object")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", checkpoint.ErrConfig, err)
	}
	before := configDumps.Marshal(v)
	if e.dropQuant {
		v.Remove("quantization_config")
	}
	if e.untie {
		v.Set("tie_word_embeddings", pyjson.Bool(false))
	}
	if name := e.dtype.TorchName(); e.dtype != "" && name != "" {
		for _, k := range []string{"torch_dtype", "dtype"} {
			if p, ok := v.Get(k); ok {
				*p = pyjson.String(name)
			}
		}
	}
	after := configDumps.Marshal(v)
	if bytes.Equal(before, after) {
		return b, nil
	}
	return append(after, '\n'), nil
}

// configTie reads tie_word_embeddings: its value and whether it is present.
func configTie(b []byte) (tie, present bool) {
	if b == nil {
		return false, false
	}
	var v struct {
		Tie *bool `json:"tie_word_embeddings"`
	}
	if json.Unmarshal(b, &v) != nil || v.Tie == nil {
		return false, false
	}
	return *v.Tie, true
}
