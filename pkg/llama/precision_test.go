package llama_test

import (
	"math"
	"testing"

	"github.com/lorakit/lorakit/internal/plaintrain"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
	"github.com/lorakit/lorakit/pkg/llama"
)

// TestPrecisionBF16 states how close bf16 mixed precision stays to the f32
// reference over the training fixture (peft/train/plain: six AdamW steps
// at lr 5e-3 on peft/tiny): every step's loss and gradient norm and the
// final loss within 1e-2 relative of the f32 run's, and of PEFT's own f32
// losses. The run is deterministic: thread count, gradient checkpointing
// and the loss chunk change no bit.
func TestPrecisionBF16(t *testing.T) {
	g, _ := plaintrain.Load(t)
	mixed := llama.Options{Precision: llama.PrecisionBF16}
	ref := plaintrain.Train(t, cpu.New(0), llama.Options{})
	got := plaintrain.Train(t, cpu.New(1), mixed)
	steps, adapter := plaintrain.Compare(got, ref)
	var peft float64
	for s := range g.Loss {
		peft = math.Max(peft, plaintrain.RelDiff(got.Loss[s], g.Loss[s]))
		if e := plaintrain.RelDiff(got.Loss[s], g.Loss[s]); e > 1e-2 {
			t.Errorf("step %d: loss %.6g, PEFT %.6g", s, got.Loss[s], g.Loss[s])
		}
	}
	if steps > 1e-2 {
		t.Errorf("bf16 vs f32: worst relative difference %.3g over the steps (losses %v, f32 %v)", steps, got.Loss, ref.Loss)
	}
	if steps == 0 {
		t.Error("bf16 computes what f32 computes")
	}
	var loss, norm float64
	for s := range ref.Loss {
		loss = math.Max(loss, plaintrain.RelDiff(got.Loss[s], ref.Loss[s]))
		norm = math.Max(norm, plaintrain.RelDiff(got.Norm[s], ref.Norm[s]))
	}
	t.Logf("bf16 mixed vs f32 over %d steps: loss within %.3g relative, gradient norm %.3g, final loss %.3g, final adapter %.3g; losses vs PEFT's within %.3g",
		len(ref.Loss), loss, norm, plaintrain.RelDiff(got.Final, ref.Final), adapter, peft)
	for _, o := range []llama.Options{{Precision: llama.PrecisionBF16, GradCheckpoint: true},
		{Precision: llama.PrecisionBF16, LossChunk: 7}} {
		again := plaintrain.Train(t, cpu.New(3), o)
		if s, a := plaintrain.Compare(again, got); s != 0 || a != 0 {
			t.Errorf("%+v: differs from the first bf16 run (%.3g, %.3g)", o, s, a)
		}
	}
}
