package train

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// TestRunStreamedBase: Run trains on a base read from stdin (a
// self-describing stream, read through pipeline.Input, not whole into
// memory) exactly as on the folder, and writes the adapter to the given
// stdout; OnStep sees every update.
func TestRunStreamedBase(t *testing.T) {
	dir := t.TempDir()
	tiny := fx(t, "peft", "tiny")
	data := write(t, filepath.Join(dir, "ids.jsonl"), goldenJSONL(loadGolden(t)))
	opts := func() Options {
		o := DefaultOptions()
		o.Data, o.MaxSteps, o.Batch, o.Seq, o.Device, o.Rank, o.Dropout = data, 3, 2, 64, "cpu", 4, 0
		return o
	}

	o := opts()
	o.Base, o.Output = tiny, filepath.Join(dir, "a.safetensors")
	steps := 0
	o.OnStep = func(r StepResult, total int) {
		if steps++; r.Step != steps || total != 3 {
			t.Errorf("OnStep(step %d of %d) call %d", r.Step, total, steps)
		}
	}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if steps != 3 || res.FirstStep != 1 || res.LastStep != 3 || res.Last.Loss == 0 {
		t.Fatalf("result %+v after %d steps", res, steps)
	}

	src, err := checkpoint.Open(tiny, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := map[string]safetensors.Tensor{}
	for _, ti := range src.Tensors {
		d, _ := src.Data(ti.Name)
		ts[ti.Name] = safetensors.Tensor{DType: ti.DType, Shape: ti.Shape, Data: d}
	}
	var stream bytes.Buffer
	if err := safetensors.Encode(&stream, checkpoint.Metadata(src.Files), ts); err != nil {
		t.Fatal(err)
	}
	src.Close()

	o = opts()
	var stdout bytes.Buffer
	o.Base, o.Output, o.Stdin, o.Stdout = "-", "-", &stream, &stdout
	o.TempDir = dir
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(dir, "a.safetensors"))
	// The folder run names its base in adapter_config.json; a stream cannot.
	got, err := checkpoint.Open("-", &stdout)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	wsrc, _ := checkpoint.Open(filepath.Join(dir, "a.safetensors"), nil)
	defer wsrc.Close()
	gt, _ := got.LoadAll()
	for _, ti := range wsrc.Tensors {
		w, _ := wsrc.Data(ti.Name)
		if !bytes.Equal(gt[ti.Name], w) {
			t.Errorf("tensor %s differs between the stream and the folder base", ti.Name)
		}
	}
	if len(want) == 0 || len(gt) != len(wsrc.Tensors) {
		t.Fatalf("%d tensors from the stream, %d from the folder", len(gt), len(wsrc.Tensors))
	}
}
