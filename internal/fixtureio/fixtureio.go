// Package fixtureio reads the shared fixtures for tests: the golden record
// of a training fixture and the tensors of a safetensors file in the shape
// of llama.Loader. (It is apart from testbin, which the safetensors and
// dtype tests import.)
package fixtureio

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/lorakit/lorakit/pkg/safetensors"
)

// TrainGolden is golden.json of a peft/train fixture: PEFT's run.
type TrainGolden struct {
	LR          float64    `json:"lr"`
	Steps       int        `json:"steps"`
	Betas       [2]float64 `json:"betas"`
	Eps         float64    `json:"eps"`
	WeightDecay float64    `json:"weight_decay"`
	InputIDs    [][]int32  `json:"input_ids"`
	Labels      [][]int32  `json:"labels"`
	Loss        []float64  `json:"loss"`
	GradNorm    []float64  `json:"grad_norm"`
	LRUsed      []float64  `json:"lr_used"`
	FinalLoss   float64    `json:"final_loss"`
}

// LoadTrainGolden reads dir/golden.json.
func LoadTrainGolden(t testing.TB, dir string) TrainGolden {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g TrainGolden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// Tensors returns a loader of the float tensors of f (as llama.Loader):
// tensor prefix+name as float32 values and its shape, or an error wrapping
// notFound when f has none.
func Tensors(f *safetensors.File, prefix string, notFound error) func(name string) ([]float32, []int, error) {
	return func(name string) ([]float32, []int, error) {
		info, ok := f.Info(prefix + name)
		if !ok {
			return nil, nil, fmt.Errorf("%s: %w", prefix+name, notFound)
		}
		data, err := f.Float32(prefix + name)
		if err != nil {
			return nil, nil, err
		}
		shape := make([]int, len(info.Shape))
		for i, d := range info.Shape {
			shape[i] = int(d)
		}
		return data, shape, nil
	}
}
