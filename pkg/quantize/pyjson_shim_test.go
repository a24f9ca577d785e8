package quantize

import "github.com/lorakit/lorakit/internal/pyjson"

// Names pyjson_test.go checks the shared pyjson code through, as quantize
// uses it for config.json.

func parseJSONOrdered(b []byte) (pyjson.Value, error) { return pyjson.Decode(b) }

func pythonIndent(v pyjson.Value) []byte { return pyjson.Indent2.Marshal(v) }
