// Package teststream turns checkpoints into the streams that '-' reads, for
// tests. It is apart from testbin, which the format packages' own tests
// import.
package teststream

import (
	"bytes"
	"testing"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// Stream returns the checkpoint or adapter at path as one self-describing
// safetensors stream (its files in __metadata__), what '-' reads.
func Stream(t testing.TB, path string) []byte {
	t.Helper()
	src, err := checkpoint.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ts := map[string]safetensors.Tensor{}
	for _, ti := range src.Tensors {
		d, err := src.Data(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		ts[ti.Name] = safetensors.Tensor{DType: ti.DType, Shape: ti.Shape, Data: d}
	}
	var b bytes.Buffer
	if err := safetensors.Encode(&b, checkpoint.Metadata(src.Files), ts); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
