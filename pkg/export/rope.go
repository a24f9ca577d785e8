package export

import (
	"math"

	"github.com/lorakit/lorakit/pkg/checkpoint"
)

// RopeFreqsName is the GGUF tensor holding Llama 3.1 rope scaling factors.
const RopeFreqsName = "rope_freqs.weight"

// Llama3RopeFactors returns the dim/2 factors of rope_freqs.weight for Llama 3.1-style
// rope scaling (spec §3.5, convert_hf_to_gguf.py LlamaModel.generate_extra_tensors),
// computed in float32: llama.cpp divides each rotation frequency by its factor.
// old_ctx is the scaling block's original_max_position_embeddings.
func Llama3RopeFactors(base float64, dim int, s *checkpoint.RopeScaling) []float32 {
	factor := float32(s.Factor)
	low, high := float32(s.LowFreqFactor), float32(s.HighFreqFactor)
	oldCtx := float32(s.OriginalMaxPositionEmbeddings)
	lowWL, highWL := oldCtx/low, oldCtx/high
	out := make([]float32, dim/2)
	for i := range out {
		// torch: 1.0 / (base ** (arange(0, dim, 2, float32) / dim)), all float32.
		e := float32(float32(2*i) / float32(dim))
		freq := float32(1 / float32(math.Pow(base, float64(e))))
		wavelen := float32(float32(2*math.Pi) / freq)
		switch {
		case wavelen < highWL:
			out[i] = 1
		case wavelen > lowWL:
			out[i] = factor
		default:
			smooth := float32(float32(oldCtx/wavelen)-low) / float32(high-low)
			out[i] = 1 / float32(float32((1-smooth)/factor)+smooth)
		}
	}
	return out
}
