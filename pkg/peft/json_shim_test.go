package peft

import (
	"bytes"

	"github.com/lorakit/lorakit/internal/pyjson"
)

// Names json_test.go checks the shared pyjson code through, as peft uses it.

func decodeJSON(data []byte) (pyjson.Value, error) { return pyjson.Decode(data) }

func writePython(b *bytes.Buffer, v pyjson.Value, level int) {
	b.Write(configDumps.AppendAt(b.AvailableBuffer(), v, level))
}

func pyFloat(f float64) string { return pyjson.FormatFloat(f) }

func pyNumber(lit string) string { return pyjson.FormatNumber(lit) }

func writePyString(b *bytes.Buffer, s string) {
	b.Write(pyjson.AppendString(b.AvailableBuffer(), s, true))
}
