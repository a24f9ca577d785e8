package arch

import (
	"errors"
	"math"
	"testing"
)

// FuzzParseConfig feeds arbitrary bytes to ParseConfig: it must return a
// sentinel error or a Config whose layout, counts, rope tables and GGUF
// mapping hold together, without panicking.
func FuzzParseConfig(f *testing.F) {
	for _, s := range Shapes() {
		b, _ := ShapeJSON(s)
		f.Add(b)
	}
	for _, js := range []string{
		`{"model_type":"llama","hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":10,"attention_bias":true,"mlp_bias":true}`,
		`{"model_type":"qwen2","num_hidden_layers":4,"use_sliding_window":true,"sliding_window":16,"max_window_layers":2}`,
		`{"model_type":"qwen3","layer_types":["full_attention","sliding_attention"],"num_hidden_layers":2,"use_sliding_window":true}`,
		`{"model_type":"gemma2","query_pre_attn_scalar":64,"attn_logit_softcapping":null}`,
		`{"model_type":"gemma3_text","rope_parameters":{"full_attention":{"rope_type":"linear","factor":8.0,"rope_theta":1e6},"sliding_attention":{"rope_theta":1e4}}}`,
		`{"model_type":"gemma3","text_config":{"num_hidden_layers":3,"sliding_window_pattern":2}}`,
		`{"model_type":"phi3","partial_rotary_factor":0.5,"max_position_embeddings":8192,"rope_scaling":{"type":"su","short_factor":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"long_factor":[2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2]}}`,
		`{"model_type":"mistral","sliding_window":null,"num_key_value_heads":null,"head_dim":null}`,
		`{"model_type":"llama","rope_parameters":{"rope_type":"llama3","factor":8,"low_freq_factor":1,"high_freq_factor":4}}`,
		`{}`, `null`, `[]`, `{"model_type":7}`,
	} {
		f.Add([]byte(js))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			if !errors.Is(err, ErrConfig) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		_ = c.Describe()
		p := c.Params()
		if p.Total() <= 0 || c.Quantizable() <= 0 || c.Quantizable() >= p.Total() {
			t.Fatalf("counts %+v quantizable %d", p, c.Quantizable())
		}
		if c.Layers <= 64 {
			var sum int64
			for _, x := range c.Tensors() {
				sum += x.Params()
			}
			if sum != p.Total() {
				t.Fatalf("Σ tensors %d != %d", sum, p.Total())
			}
		}
		if _, err := c.LoRAParams(8, []string{"all-linear"}); err != nil {
			t.Fatal(err)
		}
		for _, r := range c.Ropes() {
			for _, seq := range []int{1, c.MaxPositions + 1} {
				inv := r.InvFreq(seq)
				if len(inv) != r.Dims/2 {
					t.Fatalf("%d frequencies for %d dims", len(inv), r.Dims)
				}
				for _, v := range inv {
					if !(v >= 0) || math.IsInf(float64(v), 0) {
						t.Fatalf("inverse frequency %v (%v)", v, r)
					}
				}
			}
			if cos, sin := r.CosSin([]int{0, c.MaxPositions - 1}, c.MaxPositions); len(cos) != 2*r.Dims || len(sin) != 2*r.Dims {
				t.Fatal("cos/sin size")
			}
			if r.Type == RopeLlama3 && len(r.Llama3Factors()) != r.Dims/2 {
				t.Fatal("llama3 factors")
			}
		}
		g, err := c.GGUF()
		if err != nil && !errors.Is(err, ErrGGUF) {
			t.Fatalf("GGUF error without ErrGGUF: %v", err)
		}
		embed, tail := c.globalTensors()
		for _, x := range append([]Tensor{embed}, tail...) {
			if _, _, err := g.TensorName(x.Name); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range c.layerSlots() {
			if _, _, err := g.TensorName(LayerPrefix(c.Layers-1) + s.path); err != nil {
				t.Fatal(err)
			}
		}
	})
}
