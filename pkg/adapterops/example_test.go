package adapterops_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log"
	"math"
	"os"
	"path/filepath"

	"github.com/lorakit/lorakit/pkg/adapterops"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tool"
)

// exampleAdapter writes a small PEFT adapter (q_proj and v_proj of two
// layers, hidden size 32) whose values follow seed.
func exampleAdapter(dir string, r int, alpha float64, seed uint32) string {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Fatal(err)
	}
	cfg := peft.NewLoraConfig(r, alpha, peft.Names("q_proj", "v_proj"))
	js, err := peft.MarshalCompat(cfg)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), js, 0o644); err != nil {
		log.Fatal(err)
	}
	x := seed
	values := func(n int) []byte { // a small deterministic generator in [-0.5, 0.5)
		b := make([]byte, 4*n)
		for i := 0; i < n; i++ {
			x = x*1664525 + 1013904223
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(x>>8)/(1<<24)-0.5))
		}
		return b
	}
	ts := map[string]safetensors.Tensor{}
	for layer := 0; layer < 2; layer++ {
		for _, p := range []string{"q_proj", "v_proj"} {
			m := fmt.Sprintf("base_model.model.model.layers.%d.self_attn.%s", layer, p)
			ts[m+".lora_A.weight"] = safetensors.Tensor{DType: dtype.F32, Shape: []int64{int64(r), 32}, Data: values(r * 32)}
			ts[m+".lora_B.weight"] = safetensors.Tensor{DType: dtype.F32, Shape: []int64{32, int64(r)}, Data: values(32 * r)}
		}
	}
	var buf bytes.Buffer
	if err := safetensors.Encode(&buf, map[string]string{"format": "pt"}, ts); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), buf.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	return dir
}

func exampleDir() string {
	dir, err := os.MkdirTemp("", "adapterops-example")
	if err != nil {
		log.Fatal(err)
	}
	return dir
}

// Combine two adapters of different ranks into one by concatenation: the
// new adapter's ΔW is exactly 0.7·ΔW₁ + 0.3·ΔW₂.
func ExampleCombine() {
	dir := exampleDir()
	defer os.RemoveAll(dir)
	a := exampleAdapter(filepath.Join(dir, "math"), 8, 16, 1)
	b := exampleAdapter(filepath.Join(dir, "code"), 4, 8, 2)
	rep, err := adapterops.Combine(context.Background(), adapterops.CombineOptions{
		Adapters: []adapterops.Input{{Path: a, Weight: 0.7}, {Path: b, Weight: 0.3}},
		Method:   adapterops.Cat,
		Output:   filepath.Join(dir, "combined"),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: r = lora_alpha = %d, %d modules\n", rep.Method, rep.Rank, len(rep.Modules))
	// Output: cat: r = lora_alpha = 12, 4 modules
}

// Combine with TIES: keep the 50% largest entries of each adapter's A and
// B, elect signs, average what agrees (PEFT's "ties").
func ExampleCombine_ties() {
	dir := exampleDir()
	defer os.RemoveAll(dir)
	a := exampleAdapter(filepath.Join(dir, "a"), 8, 16, 3)
	b := exampleAdapter(filepath.Join(dir, "b"), 8, 16, 4)
	rep, err := adapterops.Combine(context.Background(), adapterops.CombineOptions{
		Adapters:     []adapterops.Input{{Path: a, Weight: 1}, {Path: b, Weight: 1}},
		Method:       adapterops.TIES,
		Density:      0.5,
		MajoritySign: adapterops.SignFrequency,
		Output:       filepath.Join(dir, "ties.safetensors"),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s, density %g, %s sign: r = %d\n", rep.Method, rep.Density, rep.Sign, rep.Rank)
	// Output: ties, density 0.5, frequency sign: r = 8
}

// Resize an adapter to rank 2: the best rank-2 approximation of each
// module's ΔW, with the fraction of ‖ΔW‖_F kept.
func ExampleResize() {
	dir := exampleDir()
	defer os.RemoveAll(dir)
	a := exampleAdapter(filepath.Join(dir, "a"), 8, 16, 5)
	rep, err := adapterops.Resize(context.Background(), adapterops.ResizeOptions{
		Adapter: a,
		Rule:    adapterops.RankRule{Method: adapterops.RankFixed, Rank: 2},
		Output:  filepath.Join(dir, "small"),
	})
	if err != nil {
		log.Fatal(err)
	}
	m := rep.Modules[0]
	fmt.Printf("%s: rank %d -> %d, parameters %d -> %d, kept %.2f\n", m.Module, m.Rank, m.NewRank, rep.ParamsBefore, rep.ParamsAfter, m.Kept)
	// Output: model.layers.0.self_attn.q_proj: rank 8 -> 2, parameters 2048 -> 512, kept 0.72
}

// Diff an adapter against the same adapter with twice the alpha: every
// module's ΔW doubled, cosine 1.
func ExampleDiff() {
	dir := exampleDir()
	defer os.RemoveAll(dir)
	a := exampleAdapter(filepath.Join(dir, "a"), 4, 4, 6)
	b := exampleAdapter(filepath.Join(dir, "b"), 4, 8, 6)
	rep, err := adapterops.Diff(context.Background(), adapterops.DiffOptions{A: a, B: b})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d modules, relative difference %.3f, cosine %.3f\n", rep.Summary.Compared, *rep.Summary.Relative, *rep.Summary.Cosine)
	// Output: 4 modules, relative difference 1.000, cosine 1.000
}

// Resize to a stream, as `lora-merge resize ... -o -` does: the run's
// tool.Env says where "-" goes (and, in a command, which cleanup registry
// removes an unfinished output on an interrupt). The stream is a
// self-describing safetensors file that any input opener reads back.
func ExampleResize_stream() {
	dir := exampleDir()
	defer os.RemoveAll(dir)
	a := exampleAdapter(filepath.Join(dir, "a"), 8, 16, 7)
	var stream bytes.Buffer
	_, err := adapterops.Resize(context.Background(), adapterops.ResizeOptions{
		Env:     tool.Env{Stdout: &stream, Threads: 1},
		Adapter: a,
		Rule:    adapterops.RankRule{Method: adapterops.RankEnergy, Param: 0.9},
		Output:  "-",
	})
	if err != nil {
		log.Fatal(err)
	}
	back, err := model.OpenAdapter("-", &stream, model.AdapterOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer back.Close()
	fmt.Printf("%d modules, r = %d, lora_alpha = %g\n", len(back.Analysis.Modules), back.Config.R, back.Config.LoraAlpha)
	// Output: 4 modules, r = 6, lora_alpha = 6
}
