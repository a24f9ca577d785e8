package peft

import (
	"os"
	"path/filepath"
	"testing"
)

// llama8BAdapter is the tensor list of an all-linear r=16 adapter on
// Llama-3-8B with the standard prefix (448 tensors).
func llama8BAdapter(b *testing.B) ([]Tensor, int64) {
	cfg := shape(b, "llama3-8b")
	var ts []Tensor
	var names int64
	for l := 0; l < cfg.Layers; l++ {
		for _, x := range cfg.Linears()[:7] {
			p := Prefix + cfg.ModulePath(l, x.Module)
			ts = append(ts, Tensor{p + ".lora_A.weight", []int64{16, x.In}}, Tensor{p + ".lora_B.weight", []int64{x.Out, 16}})
			names += int64(2*len(p) + len(".lora_A.weight") + len(".lora_B.weight"))
		}
	}
	return ts, names
}

func BenchmarkAnalyze8B(b *testing.B) {
	ts, n := llama8BAdapter(b)
	cfg := NewLoraConfig(16, 32, Names(llamaProjections...))
	b.SetBytes(n)
	b.ReportAllocs()
	for b.Loop() {
		a, err := Analyze(ts, cfg)
		if err != nil || len(a.Modules) != 224 || a.Trainable != 41943040 {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseKey(b *testing.B) {
	const name = Prefix + "model.layers.31.self_attn.q_proj.lora_A.weight"
	b.SetBytes(int64(len(name)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseKey(name); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseMarshalConfig(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(fixtures(b), "lora", "adapter_config.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		c, err := Parse(data)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Marshal(c); err != nil {
			b.Fatal(err)
		}
	}
}
