package llama

import (
	"testing"

	"github.com/lorakit/lorakit/pkg/compute"
)

// TestPrecisionBF16QLoRA runs bf16 mixed precision over the NF4 fixture:
// 4-bit weights decode to bf16 and the result equals the dense dequantized
// model's in bf16, bit for bit.
func TestPrecisionBF16QLoRA(t *testing.T) {
	_, b := loadGolden(t, fixtures(t)+"/peft/train/plain")
	q, dense := qloraPair(t, "tiny-nf4", Options{Precision: PrecisionBF16}, newCPU)
	for _, m := range []*Model{q, dense} {
		if err := m.AddAdapters(gradSpecs("mixed"), randomAdapters(2)); err != nil {
			t.Fatal(err)
		}
		m.ZeroGrad()
	}
	sameStep(t, q, dense, b, Step{Seed: 4})
}

func TestPrecisionOptions(t *testing.T) {
	if _, err := New(newCPU(), tinyConfig(), nil, Options{Precision: PrecisionBF16, WeightDType: compute.F32,
		Synthetic: &Synthetic{Scale: 0.02}}); err == nil {
		t.Error("bf16 precision with f32 weights accepted")
	}
	if _, err := New(newCPU(), tinyConfig(), nil, Options{Precision: "fp8", Synthetic: &Synthetic{Scale: 0.02}}); err == nil {
		t.Error("precision fp8 accepted")
	}
	if _, err := New(newCPU(), tinyConfig(), nil, Options{}); err == nil {
		t.Error("no loader and no synthetic weights accepted")
	}
	for s, want := range map[string]Precision{"": PrecisionF32, "f32": PrecisionF32, "bf16": PrecisionBF16} {
		if p, err := ParsePrecision(s); err != nil || p != want {
			t.Errorf("ParsePrecision(%q) = %v, %v", s, p, err)
		}
	}
	m, err := New(newCPU(), tinyConfig(), nil, Options{Precision: PrecisionBF16, Synthetic: &Synthetic{Scale: 0.02}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.embed.DType() != compute.BF16 || m.Options().Precision != PrecisionBF16 {
		t.Errorf("bf16 precision: embedding %v, options %+v", m.embed.DType(), m.Options())
	}
}
