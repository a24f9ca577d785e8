package arch

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/dtype"
)

func mustParse(t *testing.T, js string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return c
}

// slidingLayers lists the sliding layers' indices.
func slidingLayers(c *Config) []int {
	var out []int
	for l, a := range c.Attention {
		if a.Sliding {
			out = append(out, l)
		}
	}
	return out
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestDefaults checks that a config.json naming only its model_type gets
// each transformers config class's defaults.
func TestDefaults(t *testing.T) {
	for _, tc := range []struct {
		mt                                                     string
		hidden, inter, layers, heads, kv, hd, vocab, positions int
		eps, theta                                             float64
		tied                                                   bool
		act                                                    Activation
		sliding                                                []int
		window                                                 int
	}{
		{"llama", 4096, 11008, 32, 32, 32, 128, 32000, 2048, 1e-6, 10000, false, ActSiLU, nil, 0},
		{"mistral", 4096, 14336, 32, 32, 8, 128, 32000, 131072, 1e-6, 10000, false, ActSiLU, seq(0, 32), 4096},
		{"qwen2", 4096, 22016, 32, 32, 32, 128, 151936, 32768, 1e-6, 10000, false, ActSiLU, nil, 0},
		{"qwen3", 4096, 22016, 32, 32, 32, 128, 151936, 32768, 1e-6, 10000, false, ActSiLU, nil, 0},
		{"gemma", 3072, 24576, 28, 16, 16, 256, 256000, 8192, 1e-6, 10000, true, ActGELUTanh, nil, 0},
		{"gemma2", 2304, 9216, 26, 8, 4, 256, 256000, 8192, 1e-6, 10000, true, ActGELUTanh, evens(26), 4096},
		{"gemma3_text", 2304, 9216, 26, 8, 4, 256, 262208, 131072, 1e-6, 1e6, true, ActGELUTanh, except(26, 5, 11, 17, 23), 4096},
		{"phi3", 3072, 8192, 32, 32, 32, 96, 32064, 4096, 1e-5, 10000, false, ActSiLU, nil, 0},
	} {
		t.Run(tc.mt, func(t *testing.T) {
			c := mustParse(t, `{"model_type":"`+tc.mt+`"}`)
			got := []int{c.Hidden, c.Intermediate, c.Layers, c.Heads, c.KVHeads, c.HeadDim, c.Vocab, c.MaxPositions}
			want := []int{tc.hidden, tc.inter, tc.layers, tc.heads, tc.kv, tc.hd, tc.vocab, tc.positions}
			if !equalInts(got, want) {
				t.Errorf("sizes %v, want %v", got, want)
			}
			if c.NormEps != tc.eps || c.globalRope().Theta != tc.theta || c.TiedEmbeddings != tc.tied || c.Act != tc.act {
				t.Errorf("eps %g theta %g tied %v act %v", c.NormEps, c.globalRope().Theta, c.TiedEmbeddings, c.Act)
			}
			if s := slidingLayers(c); !equalInts(s, tc.sliding) || c.firstWindow() != tc.window {
				t.Errorf("sliding layers %v window %d, want %v %d", s, c.firstWindow(), tc.sliding, tc.window)
			}
		})
	}
}

func seq(lo, hi int) []int {
	var out []int
	for i := lo; i < hi; i++ {
		out = append(out, i)
	}
	return out
}

func evens(n int) []int {
	var out []int
	for i := 0; i < n; i += 2 {
		out = append(out, i)
	}
	return out
}

func except(n int, skip ...int) []int {
	var out []int
	for i := 0; i < n; i++ {
		keep := true
		for _, s := range skip {
			keep = keep && s != i
		}
		if keep {
			out = append(out, i)
		}
	}
	return out
}

// TestFeatures checks what each architecture's forward pass needs.
func TestFeatures(t *testing.T) {
	for _, tc := range []struct {
		js   string
		want Features
	}{
		{`{"model_type":"llama","attention_bias":true,"mlp_bias":true}`,
			Features{QKVBias: true, OBias: true, MLPBias: true, Norm: NormLlama, Act: ActSiLU}},
		{`{"model_type":"qwen2","attention_bias":false}`, // not read by Qwen2: q/k/v always biased
			Features{QKVBias: true, Norm: NormLlama, Act: ActSiLU}},
		{`{"model_type":"qwen3","attention_bias":true,"tie_word_embeddings":true}`,
			Features{QKVBias: true, OBias: true, QKNorm: true, Norm: NormLlama, Act: ActSiLU, TiedEmbeddings: true}},
		{`{"model_type":"gemma"}`,
			Features{Norm: NormGemma, Act: ActGELUTanh, EmbedScale: true, TiedEmbeddings: true}},
		{`{"model_type":"gemma","hidden_act":"gelu","hidden_activation":"gelu"}`,
			Features{Norm: NormGemma, Act: ActGELU, EmbedScale: true, TiedEmbeddings: true}},
		{`{"model_type":"gemma2","query_pre_attn_scalar":144,"attn_logit_softcapping":null}`,
			Features{Norm: NormGemma, Act: ActGELUTanh, EmbedScale: true, SandwichNorms: true, FinalSoftcap: 30,
				QueryPreAttnScalar: 144, TiedEmbeddings: true}},
		{`{"model_type":"gemma3_text","final_logit_softcapping":30.0}`,
			Features{Norm: NormGemma, Act: ActGELUTanh, EmbedScale: true, SandwichNorms: true, QKNorm: true, FinalSoftcap: 30,
				QueryPreAttnScalar: 256, TiedEmbeddings: true}},
		{`{"model_type":"phi3","tie_word_embeddings":true}`,
			Features{Norm: NormLlama, Act: ActSiLU, FusedQKV: true, FusedGateUp: true, TiedEmbeddings: true}},
	} {
		c := mustParse(t, tc.js)
		got := c.Features
		want := tc.want
		want.NormEps = got.NormEps
		if want.QueryPreAttnScalar != 0 {
			want.AttnScale = 1 / math.Sqrt(want.QueryPreAttnScalar)
		} else {
			want.AttnScale = 1 / math.Sqrt(float64(c.HeadDim))
		}
		if want.Act == ActGELUTanh && c.Arch.ModelType == "gemma2" {
			want.AttnSoftcap = 0
		}
		if got != want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.js, got, want)
		}
	}
}

func TestGemmaActivationNote(t *testing.T) {
	c := mustParse(t, `{"model_type":"gemma","hidden_act":"gelu"}`)
	if c.Act != ActGELUTanh || len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "gelu_pytorch_tanh") {
		t.Errorf("act %v notes %q", c.Act, c.Notes)
	}
	c = mustParse(t, `{"model_type":"gemma","hidden_act":"gelu","hidden_activation":"gelu_pytorch_tanh"}`)
	if c.Act != ActGELUTanh || len(c.Notes) != 0 {
		t.Errorf("hidden_activation set: act %v notes %q", c.Act, c.Notes)
	}
	// Gemma 2 and 3 read hidden_activation only.
	c = mustParse(t, `{"model_type":"gemma2","hidden_act":"gelu"}`)
	if c.Act != ActGELUTanh {
		t.Errorf("gemma2 with hidden_act gelu: %v", c.Act)
	}
}

// TestSlidingWindows covers every way a config places sliding windows.
func TestSlidingWindows(t *testing.T) {
	for _, tc := range []struct {
		js      string
		sliding []int
		window  int
	}{
		{`{"model_type":"mistral","num_hidden_layers":3,"sliding_window":null}`, nil, 0},
		{`{"model_type":"mistral","num_hidden_layers":3,"sliding_window":16}`, []int{0, 1, 2}, 16},
		// Qwen2: the window only counts with use_sliding_window, from max_window_layers on.
		{`{"model_type":"qwen2","num_hidden_layers":4,"sliding_window":16,"max_window_layers":2}`, nil, 0},
		{`{"model_type":"qwen2","num_hidden_layers":4,"use_sliding_window":true,"sliding_window":16,"max_window_layers":2}`, []int{2, 3}, 16},
		{`{"model_type":"qwen2","num_hidden_layers":4,"use_sliding_window":true,"max_window_layers":3}`, []int{3}, 4096},
		{`{"model_type":"qwen3","num_hidden_layers":3,"use_sliding_window":true,"sliding_window":8,
		  "layer_types":["sliding_attention","full_attention","sliding_attention"]}`, []int{0, 2}, 8},
		{`{"model_type":"qwen2","num_hidden_layers":2,"layer_types":["full_attention","full_attention"]}`, nil, 0},
		{`{"model_type":"gemma2","num_hidden_layers":4,"sliding_window":32}`, []int{0, 2}, 32},
		{`{"model_type":"gemma3_text","num_hidden_layers":8,"sliding_window":512,"sliding_window_pattern":4}`, []int{0, 1, 2, 4, 5, 6}, 512},
		{`{"model_type":"gemma3_text","num_hidden_layers":3,"layer_types":["full_attention","sliding_attention","full_attention"]}`, []int{1}, 4096},
		{`{"model_type":"gemma3_text","num_hidden_layers":3,"sliding_window_pattern":1}`, nil, 0},
		{`{"model_type":"phi3","num_hidden_layers":2,"sliding_window":2047}`, []int{0, 1}, 2047},
	} {
		c := mustParse(t, tc.js)
		if s := slidingLayers(c); !equalInts(s, tc.sliding) || c.firstWindow() != tc.window {
			t.Errorf("%s: sliding %v window %d, want %v %d", tc.js, s, c.firstWindow(), tc.sliding, tc.window)
		}
	}
}

// TestRopeLayouts checks transformers v4 and v5 rope configurations and
// their precedence.
func TestRopeLayouts(t *testing.T) {
	llama3 := `"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192`
	for _, tc := range []struct {
		name, js string
		want     Rope
	}{
		{"v4", `{"model_type":"llama","rope_theta":500000.0,"rope_scaling":{"rope_type":"llama3",` + llama3 + `}}`,
			Rope{Type: RopeLlama3, Theta: 500000, Dims: 128, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 8192, AttentionFactor: 1}},
		{"v4 legacy type", `{"model_type":"llama","rope_scaling":{"type":"linear","factor":2.0}}`,
			Rope{Type: RopeLinear, Theta: 10000, Dims: 128, Factor: 2, AttentionFactor: 1}},
		{"v5", `{"model_type":"llama","rope_parameters":{"rope_type":"llama3","rope_theta":500000.0,` + llama3 + `}}`,
			Rope{Type: RopeLlama3, Theta: 500000, Dims: 128, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 8192, AttentionFactor: 1}},
		{"v5 default", `{"model_type":"qwen2","rope_parameters":{"rope_theta":1000000.0,"rope_type":"default"}}`,
			Rope{Type: RopeDefault, Theta: 1e6, Dims: 128, AttentionFactor: 1}},
		{"theta in block wins", `{"model_type":"llama","rope_theta":1.0,"rope_parameters":{"rope_theta":20.0}}`,
			Rope{Type: RopeDefault, Theta: 20, Dims: 128, AttentionFactor: 1}},
		{"rope_scaling wins over rope_parameters", `{"model_type":"llama","rope_scaling":{"type":"linear","factor":4},"rope_parameters":{"rope_type":"default"}}`,
			Rope{Type: RopeLinear, Theta: 10000, Dims: 128, Factor: 4, AttentionFactor: 1}},
		{"llama3 original defaults to max_position_embeddings (v5)",
			`{"model_type":"llama","max_position_embeddings":4096,"rope_parameters":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0}}`,
			Rope{Type: RopeLlama3, Theta: 10000, Dims: 128, Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositions: 4096, AttentionFactor: 1}},
		{"phi3 su", `{"model_type":"phi3","max_position_embeddings":8192,"rope_scaling":{"type":"su","short_factor":` + ones(48) + `,"long_factor":` + ones(48) + `}}`,
			Rope{Type: RopeLongRoPE, Theta: 10000, Dims: 96, Factor: 2, OriginalMaxPositions: 4096, AttentionFactor: math.Sqrt(1 + math.Log(2)/math.Log(4096))}},
		{"phi3 attention_factor", `{"model_type":"phi3","max_position_embeddings":8192,"rope_scaling":{"type":"longrope","attention_factor":1.5,"short_factor":` + ones(48) + `,"long_factor":` + ones(48) + `}}`,
			Rope{Type: RopeLongRoPE, Theta: 10000, Dims: 96, Factor: 2, OriginalMaxPositions: 4096, AttentionFactor: 1.5}},
		{"phi4-mini partial", `{"model_type":"phi3","hidden_size":3072,"num_attention_heads":24,"num_key_value_heads":8,"partial_rotary_factor":0.75,
			"max_position_embeddings":131072,"original_max_position_embeddings":4096,"rope_scaling":{"type":"longrope","short_factor":` + ones(48) + `,"long_factor":` + ones(48) + `}}`,
			Rope{Type: RopeLongRoPE, Theta: 10000, Dims: 96, Factor: 32, OriginalMaxPositions: 4096, AttentionFactor: math.Sqrt(1 + math.Log(32)/math.Log(4096))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := *mustParse(t, tc.js).Attention[0].Rope
			if len(r.ShortFactor) != len(r.LongFactor) || len(r.ShortFactor) != r.Dims/2 && r.Type == RopeLongRoPE {
				t.Errorf("factors %d and %d for %d dims", len(r.ShortFactor), len(r.LongFactor), r.Dims)
			}
			if !sameRope(&r, &tc.want) {
				t.Errorf("got  %+v\nwant %+v", r, tc.want)
			}
		})
	}
}

// sameRope compares ropes, factor lists aside.
func sameRope(a, b *Rope) bool {
	x, y := *a, *b
	x.ShortFactor, x.LongFactor, y.ShortFactor, y.LongFactor = nil, nil, nil, nil
	return x.Type == y.Type && x.Theta == y.Theta && x.Dims == y.Dims && x.Factor == y.Factor &&
		x.LowFreqFactor == y.LowFreqFactor && x.HighFreqFactor == y.HighFreqFactor &&
		x.OriginalMaxPositions == y.OriginalMaxPositions && x.AttentionFactor == y.AttentionFactor
}

func ones(n int) string {
	return "[" + strings.TrimSuffix(strings.Repeat("1.0,", n), ",") + "]"
}

// TestGemma3Ropes checks the local and global rotary embeddings of Gemma 3
// in the v4 and v5 layouts.
func TestGemma3Ropes(t *testing.T) {
	for _, tc := range []struct {
		name, js      string
		global, local Rope
	}{
		{"v4", `{"model_type":"gemma3_text","rope_theta":1000000.0,"rope_local_base_freq":10000.0,"rope_scaling":{"factor":8.0,"rope_type":"linear"}}`,
			Rope{Type: RopeLinear, Theta: 1e6, Dims: 256, Factor: 8, AttentionFactor: 1}, Rope{Type: RopeDefault, Theta: 1e4, Dims: 256, AttentionFactor: 1}},
		{"v5", `{"model_type":"gemma3_text","rope_parameters":{"full_attention":{"rope_type":"linear","factor":8.0,"rope_theta":1000000.0},
			"sliding_attention":{"rope_type":"default","rope_theta":10000.0}}}`,
			Rope{Type: RopeLinear, Theta: 1e6, Dims: 256, Factor: 8, AttentionFactor: 1}, Rope{Type: RopeDefault, Theta: 1e4, Dims: 256, AttentionFactor: 1}},
		{"defaults", `{"model_type":"gemma3_text"}`,
			Rope{Type: RopeDefault, Theta: 1e6, Dims: 256, AttentionFactor: 1}, Rope{Type: RopeDefault, Theta: 1e4, Dims: 256, AttentionFactor: 1}},
	} {
		c := mustParse(t, tc.js)
		if g, l := c.Attention[5].Rope, c.Attention[0].Rope; !sameRope(g, &tc.global) || !sameRope(l, &tc.local) {
			t.Errorf("%s: global %+v local %+v", tc.name, *g, *l)
		}
		if len(c.Ropes()) != 2 {
			t.Errorf("%s: %d distinct ropes", tc.name, len(c.Ropes()))
		}
	}
}

func TestMultimodalGemma3(t *testing.T) {
	c, err := Shape("gemma3-4b")
	if err != nil {
		t.Fatal(err)
	}
	if c.Multimodal == nil || c.Multimodal.Class != "Gemma3ForConditionalGeneration" || c.Arch.ModelType != "gemma3_text" || c.ModelType != "gemma3" {
		t.Fatalf("multimodal %+v arch %s type %s", c.Multimodal, c.Arch.ModelType, c.ModelType)
	}
	if !equalInts(c.EOS, []int{1, 106}) || c.DType != dtype.BF16 || !c.TiedEmbeddings || len(c.Notes) == 0 {
		t.Errorf("eos %v dtype %q tied %v notes %q", c.EOS, c.DType, c.TiedEmbeddings, c.Notes)
	}
	for _, tc := range []struct{ in, out string }{
		{"language_model.model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.weight"},
		{"model.language_model.layers.3.mlp.down_proj.weight", "model.layers.3.mlp.down_proj.weight"},
		{"language_model.model.embed_tokens.weight", "model.embed_tokens.weight"},
		{"language_model.lm_head.weight", "lm_head.weight"},
		{"lm_head.weight", "lm_head.weight"},
		{"vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight", ""},
		{"multi_modal_projector.mm_input_projection_weight", ""},
		{"model.vision_tower.vision_model.post_layernorm.weight", ""},
	} {
		got, ok := c.TextName(tc.in)
		if got != tc.out || ok != (tc.out != "") {
			t.Errorf("TextName(%q) = %q, %v; want %q", tc.in, got, ok, tc.out)
		}
	}
	// Without text_config, Gemma3Config builds a default Gemma3TextConfig.
	d := mustParse(t, `{"model_type":"gemma3"}`)
	if d.Hidden != 2304 || d.Layers != 26 || d.Multimodal == nil {
		t.Errorf("default text config: %+v", d)
	}
}

// TestRefusals checks that every option lorakit does not compute, and every
// malformed value, is refused with the right sentinel and names the field.
func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		js   string
		err  error
		want string
	}{
		{`{"model_type":"falcon"}`, ErrUnsupported, `model_type "falcon" is not supported (supported: llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3_text, gemma3, phi3)`},
		{`{"hidden_size":8}`, ErrUnsupported, "no model_type"},
		{`{"model_type":"llama","hidden_act":"relu"}`, ErrUnsupported, `hidden_act "relu"`},
		{`{"model_type":"gemma2","hidden_activation":"gelu_new"}`, ErrUnsupported, "hidden_activation"},
		{`{"model_type":"qwen2","rope_scaling":{"type":"yarn","factor":4.0,"original_max_position_embeddings":32768}}`, ErrUnsupported, `rope_scaling.rope_type "yarn"`},
		{`{"model_type":"llama","rope_scaling":{"rope_type":"dynamic","factor":2.0}}`, ErrUnsupported, `"dynamic"`},
		{`{"model_type":"llama","rope_parameters":{"rope_type":"longrope"}}`, ErrUnsupported, `rope_parameters.rope_type "longrope"`},
		{`{"model_type":"phi3","rope_scaling":{"type":"linear","factor":2.0}}`, ErrUnsupported, `"linear" (supported: default, longrope)`},
		{`{"model_type":"llama","partial_rotary_factor":0.5}`, ErrUnsupported, "partial_rotary_factor"},
		{`{"model_type":"llama","attention_dropout":0.1}`, ErrUnsupported, "attention_dropout = 0.1"},
		{`{"model_type":"phi3","resid_pdrop":0.1}`, ErrUnsupported, "resid_pdrop"},
		{`{"model_type":"phi3","embd_pdrop":0.2}`, ErrUnsupported, "embd_pdrop"},
		{`{"model_type":"gemma3_text","use_bidirectional_attention":true}`, ErrUnsupported, "use_bidirectional_attention"},
		{`{"model_type":"gemma3_text","rope_parameters":{"rope_type":"default","rope_theta":10000.0}}`, ErrUnsupported, "keyed by layer type"},
		{`{"model_type":"qwen2","rope_parameters":{"full_attention":{"rope_type":"default"}}}`, ErrUnsupported, "per-layer-type"},
		{`{"model_type":"qwen2","num_hidden_layers":2,"layer_types":["chunked_attention","full_attention"]}`, ErrUnsupported, "layer_types[0]"},
		{`{"model_type":"gemma3","text_config":{"model_type":"gemma3n_text"}}`, ErrUnsupported, "text_config.model_type"},
		{`{"model_type":"phi3","max_position_embeddings":8192,"rope_scaling":{"type":"longrope","factor":4.0,"short_factor":` + ones(48) + `,"long_factor":` + ones(48) + `}}`, ErrUnsupported, "rope_scaling.factor"},
		{`{"model_type":"llama","num_key_value_heads":3}`, ErrConfig, "num_key_value_heads: 3 does not divide"},
		{`{"model_type":"llama","hidden_size":"4096"}`, ErrConfig, "hidden_size: want a number"},
		{`{"model_type":"llama","hidden_size":-1}`, ErrConfig, "hidden_size"},
		{`{"model_type":"llama","num_hidden_layers":1.5}`, ErrConfig, "num_hidden_layers"},
		{`{"model_type":"llama","vocab_size":1e9}`, ErrConfig, "vocab_size"},
		{`{"model_type":"llama","rms_norm_eps":0}`, ErrConfig, "rms_norm_eps"},
		{`{"model_type":"llama","rope_theta":0}`, ErrConfig, "rope_theta"},
		{`{"model_type":"llama","head_dim":7}`, ErrConfig, "must be even"},
		{`{"model_type":"llama","rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0}}`, ErrConfig, "rope_scaling.high_freq_factor: missing"},
		{`{"model_type":"llama","rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":4.0,"high_freq_factor":1.0}}`, ErrConfig, "must exceed low_freq_factor"},
		{`{"model_type":"phi3","rope_scaling":{"type":"longrope","short_factor":[1.0],"long_factor":[1.0]}}`, ErrConfig, "short_factor: has 1 values; want rotary dims / 2 = 48"},
		{`{"model_type":"phi3","rope_scaling":{"type":"longrope","short_factor":` + ones(47) + `,"long_factor":` + ones(48) + `}}`, ErrConfig, "short_factor"},
		{`{"model_type":"qwen2","num_hidden_layers":2,"layer_types":["sliding_attention","full_attention"]}`, ErrConfig, "use_sliding_window is false"},
		{`{"model_type":"qwen2","num_hidden_layers":2,"layer_types":["full_attention"]}`, ErrConfig, "layer_types: has 1 entries for 2 layers"},
		{`{"model_type":"gemma2","sliding_window":null}`, ErrConfig, "sliding_window is null"},
		{`{"model_type":"gemma2","attn_logit_softcapping":0}`, ErrConfig, "divide by zero"},
		{`{"model_type":"gemma3_text","sliding_window_pattern":0}`, ErrConfig, "sliding_window_pattern"},
		{`{"model_type":"llama","eos_token_id":"x"}`, ErrConfig, "eos_token_id"},
		{`{"model_type":"qwen2","architectures":["Qwen2ForSequenceClassification"]}`, ErrUnsupported, "only causal language models"},
		{`[1,2]`, ErrConfig, "config.json"},
		{`{"model_type":"llama"`, ErrConfig, "config.json"},
	} {
		_, err := ParseConfig([]byte(tc.js))
		if !errors.Is(err, tc.err) || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %v containing %q", tc.js, err, tc.err, tc.want)
		}
	}
	if _, err := ParseConfig(make([]byte, MaxConfigSize+1)); !errors.Is(err, ErrConfig) {
		t.Errorf("oversized config: %v", err)
	}
}

func TestUnsupported(t *testing.T) {
	err := Unsupported("mixtral")
	if !errors.Is(err, ErrUnsupported) || err.Error() != `arch: unsupported: model_type "mixtral" is not supported (supported: llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3_text, gemma3, phi3)` {
		t.Errorf("%v", err)
	}
	for _, mt := range Supported() {
		if _, err := Lookup(mt); err != nil {
			t.Errorf("Lookup(%s): %v", mt, err)
		}
	}
	if got := strings.Join(registry["phi3"].Targets(), " "); got != "o_proj qkv_proj gate_up_proj down_proj lm_head embed_tokens all-linear" {
		t.Errorf("phi3 targets %s", got)
	}
	table := Table()
	for _, a := range All() {
		if !strings.Contains(table, a.ModelType) || !strings.Contains(table, a.Name) || !strings.Contains(table, a.GGUFArch) {
			t.Errorf("table lacks %s:\n%s", a.ModelType, table)
		}
	}
}

func TestUnfamiliarClass(t *testing.T) {
	c := mustParse(t, `{"model_type":"llama","architectures":["LlamaForCausalLMEagle"]}`)
	if len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "LlamaForCausalLM's layout") {
		t.Errorf("notes %q", c.Notes)
	}
}

// TestIntegralFloats: Python writes some integers as floats (4096.0).
func TestIntegralFloats(t *testing.T) {
	c := mustParse(t, `{"model_type":"llama","hidden_size":64.0,"num_attention_heads":4,"intermediate_size":128,"num_hidden_layers":2.0,"vocab_size":256}`)
	if c.Hidden != 64 || c.Layers != 2 || c.HeadDim != 16 {
		t.Errorf("%+v", c)
	}
}
