package peft

import (
	"bytes"
	"encoding/json"

	"github.com/lorakit/lorakit/internal/pyjson"
)

// configDumps is Python's json.dumps(v, indent=2, sort_keys=True), the
// format PEFT's save_pretrained writes adapter_config.json in.
var configDumps = pyjson.Options{Pretty: true, Indent: "  ", SortKeys: true, EnsureASCII: true}

// rawDumps is compact standard JSON with number literals kept as read,
// for json.RawMessage fields.
var rawDumps = pyjson.Options{EnsureASCII: true, ItemSep: ",", KeySep: ":", RawNumbers: true}

// jstrOrNull maps "" to null.
func jstrOrNull(s string) pyjson.Value {
	if s == "" {
		return pyjson.Null
	}
	return pyjson.String(s)
}

// jstrList maps nil to null.
func jstrList(l []string) pyjson.Value {
	if l == nil {
		return pyjson.Null
	}
	return pyjson.Strings(l)
}

// rawOf encodes v as compact standard JSON (object order and number
// literals preserved), for json.RawMessage fields.
func rawOf(v pyjson.Value) json.RawMessage { return rawDumps.Marshal(v) }

// fromRaw parses a json.RawMessage field; nil or empty means null.
func fromRaw(r json.RawMessage) (pyjson.Value, error) {
	if len(bytes.TrimSpace(r)) == 0 {
		return pyjson.Null, nil
	}
	return pyjson.Decode(r)
}

// rawTruthy is Python's bool() of a json.RawMessage field; unparsable
// input counts as set (so it is refused rather than ignored).
func rawTruthy(r json.RawMessage) bool {
	v, err := fromRaw(r)
	return err != nil || v.Truthy()
}
