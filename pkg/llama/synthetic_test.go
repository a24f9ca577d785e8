package llama

import (
	"math"
	"testing"
)

// TestSynthetic builds peft/tiny's shape from random weights made on the
// backend, dense or NF4, in f32 and bf16: the seed decides every weight,
// an NF4 weight decodes within ±1.25·Scale, and the untrained model's loss
// is about ln(vocab).
func TestSynthetic(t *testing.T) {
	_, b := loadGolden(t, fixtures(t)+"/peft/train/plain")
	logits := func(m *Model) []float32 {
		out := make([]float32, b.Rows*b.Seq*m.cfg.Vocab)
		if err := m.Logits(b, out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, opt := range []Options{
		{Synthetic: &Synthetic{Seed: 1, Scale: 0.02}},
		{Synthetic: &Synthetic{Seed: 1, Scale: 0.02, NF4: true}},
		{Synthetic: &Synthetic{Seed: 1, Scale: 0.02}, Precision: PrecisionBF16},
		{Synthetic: &Synthetic{Seed: 1, Scale: 0.02, NF4: true}, Precision: PrecisionBF16},
	} {
		m, err := New(newCPU(), tinyConfig(), nil, opt)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		if err := m.AddAdapters(gradSpecs("lora"), randomAdapters(1)); err != nil {
			t.Fatal(err)
		}
		sum, n, err := m.ForwardBackward(b, Step{})
		if err != nil {
			t.Fatal(err)
		}
		if l := sum / float64(n); math.Abs(l-math.Log(256)) > 0.1 {
			t.Errorf("%+v: loss %v, want about ln 256", opt.Synthetic, l)
		}
		if opt.Synthetic.NF4 {
			lin := &m.layers[1].mods[m.pl.module(Down)]
			if lin.q == nil {
				t.Fatal("NF4 synthetic weights are dense")
			}
			w := download(t, m.be, m.weight(lin))
			var mx float64
			for _, v := range w {
				mx = math.Max(mx, math.Abs(float64(v)))
			}
			if mx == 0 || mx > 1.25*0.02*1.001 {
				t.Errorf("NF4 weights up to %v, want within (0, 0.025]", mx)
			}
		}
		other := *opt.Synthetic
		other.Seed = 2
		o2 := opt
		o2.Synthetic = &other
		var ls [3][]float32
		for i, o := range []Options{opt, opt, o2} {
			x, err := New(newCPU(), tinyConfig(), nil, o)
			if err != nil {
				t.Fatal(err)
			}
			ls[i] = logits(x)
			x.Close()
		}
		sameBits(t, "logits", ls[0], ls[1])
		if d, _ := maxAbs(ls[0], ls[2]); d == 0 {
			t.Error("seeds 1 and 2 give the same model")
		}
	}
}
