package inspect

import (
	"github.com/lorakit/lorakit/pkg/gguf"
)

// GGUF reports a GGUF model or adapter from its header.
func GGUF(path string, withTensors bool) (*Report, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := f.Header.Summary()
	r := &Report{Schema: Schema, Kind: "gguf", Path: path, Source: "file", TotalParams: s.Parameters, Bytes: f.Size()}
	if s.Type == "adapter" {
		r.TrainableParams = s.Parameters
	}
	if withTensors {
		for _, t := range s.Tensors {
			r.Tensors = append(r.Tensors, TensorRow{Name: t.Name, DType: t.Type.String(), Shape: t.Shape, Bytes: t.Bytes, Params: t.Elements})
		}
	}
	s.Tensors = nil
	r.GGUF = &s
	return r, nil
}
