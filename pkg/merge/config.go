package merge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
)

// MaxConfig bounds the config.json this package edits.
const MaxConfig = 16 << 20

// member is one key of a JSON object with its raw value.
type member struct {
	key string
	raw json.RawMessage
}

// parseObject decodes a JSON object keeping its key order and raw values.
func parseObject(b []byte) ([]member, error) {
	if len(b) > MaxConfig {
		return nil, fmt.Errorf("%w: config.json is %d bytes (limit %d)", checkpoint.ErrConfig, len(b), MaxConfig)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", checkpoint.ErrConfig, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%w: config.json is not a JSON object", checkpoint.ErrConfig)
	}
	var out []member
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", checkpoint.ErrConfig, err)
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%w: key %q: %v", checkpoint.ErrConfig, key, err)
		}
		if seen[key] {
			return nil, fmt.Errorf("%w: duplicate key %q", checkpoint.ErrConfig, key)
		}
		seen[key] = true
		out = append(out, member{key, raw})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: %v", checkpoint.ErrConfig, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the top-level object", checkpoint.ErrConfig)
	}
	return out, nil
}

// marshalObject writes members as transformers writes config.json: two-space
// indent, keys in the given order, values as they were, a final newline.
func marshalObject(ms []member) ([]byte, error) {
	var compact bytes.Buffer
	compact.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			compact.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		compact.Write(k)
		compact.WriteByte(':')
		compact.Write(m.raw)
	}
	compact.WriteByte('}')
	var out bytes.Buffer
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("%w: %v", checkpoint.ErrConfig, err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// configEdit lists the changes a merge makes to config.json.
type configEdit struct {
	untie     bool        // set tie_word_embeddings to false (added when absent)
	dropQuant bool        // remove quantization_config (dequantized output)
	dtype     dtype.DType // set torch_dtype/dtype, when not ""
}

// editConfig applies e to config.json b. It returns b unchanged when there
// is nothing to do, so that an unchanged config keeps its bytes.
func editConfig(b []byte, e configEdit) ([]byte, error) {
	if !e.untie && !e.dropQuant && e.dtype == "" {
		return b, nil
	}
	ms, err := parseObject(b)
	if err != nil {
		return nil, err
	}
	changed := false
	out := ms[:0:0]
	hasTie := false
	for _, m := range ms {
		switch {
		case m.key == "quantization_config" && e.dropQuant:
			changed = true
			continue
		case m.key == "tie_word_embeddings":
			hasTie = true
			if e.untie && string(m.raw) != "false" {
				m.raw, changed = json.RawMessage("false"), true
			}
		case (m.key == "torch_dtype" || m.key == "dtype") && e.dtype != "":
			if name := e.dtype.TorchName(); name != "" {
				raw, _ := json.Marshal(name)
				if !bytes.Equal(raw, m.raw) {
					m.raw, changed = raw, true
				}
			}
		}
		out = append(out, m)
	}
	if e.untie && !hasTie {
		out = append(out, member{"tie_word_embeddings", json.RawMessage("false")})
		changed = true
	}
	if !changed {
		return b, nil
	}
	return marshalObject(out)
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
