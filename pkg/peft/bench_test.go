package peft

import (
	"os"
	"path/filepath"
	"testing"
)

// llama8BAdapter is the tensor list of an all-linear r=16 adapter on
// Llama-3-8B with the standard prefix (448 tensors).
func llama8BAdapter() ([]Tensor, int64) {
	lin, _ := LlamaLinears(llama3_8B)
	var ts []Tensor
	var names int64
	for l := 0; l < llama3_8B.Layers; l++ {
		for _, x := range lin[:7] {
			part := "self_attn."
			if x.Type == "gate_proj" || x.Type == "up_proj" || x.Type == "down_proj" {
				part = "mlp."
			}
			p := Prefix + "model.layers." + itoa(l) + "." + part + x.Type
			ts = append(ts, Tensor{p + ".lora_A.weight", []int64{16, x.In}}, Tensor{p + ".lora_B.weight", []int64{x.Out, 16}})
			names += int64(2*len(p) + len(".lora_A.weight") + len(".lora_B.weight"))
		}
	}
	return ts, names
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func BenchmarkAnalyze8B(b *testing.B) {
	ts, n := llama8BAdapter()
	cfg := NewLoraConfig(16, 32, Names(LlamaProjections...))
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
