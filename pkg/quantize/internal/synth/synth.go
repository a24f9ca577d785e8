// Package synth writes synthetic Llama-shaped checkpoints (random weights,
// deterministic for a seed) for the tests and speed measurements of package
// quantize.
package synth

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// Config describes the model. HeadDim 0 means Hidden/Heads.
type Config struct {
	Hidden, Intermediate, Layers, Heads, KVHeads, HeadDim, Vocab int
	DType                                                        dtype.DType // F32, BF16 or F16
	Shards                                                       int         // 0 or 1: one file
	Seed                                                         uint64
	Std                                                          float64 // weight standard deviation; 0 means 0.02
	// ZeroRows zeroes the first rows of every projection (all-zero blocks).
	ZeroRows int
}

// Llama1B is a Llama-shaped model of about 0.84 B parameters (1.67 GB in
// bf16): Llama 3.2 1B's widths with 12 layers and a 32k vocabulary.
var Llama1B = Config{Hidden: 2048, Intermediate: 8192, Layers: 12, Heads: 32, KVHeads: 8, Vocab: 32000, DType: dtype.BF16, Seed: 1}

// Tensor is one tensor of the model.
type Tensor struct {
	Name  string
	Shape []int64
	Kind  int // 0 embedding/head, 1 norm, 2 projection
}

// Tensors lists the model's tensors in state-dict order.
func (c Config) Tensors() []Tensor {
	hd := c.HeadDim
	if hd == 0 {
		hd = c.Hidden / c.Heads
	}
	h, q, kv := int64(c.Hidden), int64(c.Heads*hd), int64(c.KVHeads*hd)
	ts := []Tensor{{"model.embed_tokens.weight", []int64{int64(c.Vocab), h}, 0}}
	for l := range c.Layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		ts = append(ts,
			Tensor{p + "self_attn.q_proj.weight", []int64{q, h}, 2},
			Tensor{p + "self_attn.k_proj.weight", []int64{kv, h}, 2},
			Tensor{p + "self_attn.v_proj.weight", []int64{kv, h}, 2},
			Tensor{p + "self_attn.o_proj.weight", []int64{h, q}, 2},
			Tensor{p + "mlp.gate_proj.weight", []int64{int64(c.Intermediate), h}, 2},
			Tensor{p + "mlp.up_proj.weight", []int64{int64(c.Intermediate), h}, 2},
			Tensor{p + "mlp.down_proj.weight", []int64{h, int64(c.Intermediate)}, 2},
			Tensor{p + "input_layernorm.weight", []int64{h}, 1},
			Tensor{p + "post_attention_layernorm.weight", []int64{h}, 1})
	}
	return append(ts, Tensor{"model.norm.weight", []int64{h}, 1}, Tensor{"lm_head.weight", []int64{int64(c.Vocab), h}, 0})
}

// ConfigJSON is the model's config.json, as transformers 5 writes it.
func (c Config) ConfigJSON() []byte {
	hd := c.HeadDim
	if hd == 0 {
		hd = c.Hidden / c.Heads
	}
	names := map[dtype.DType]string{dtype.F32: "float32", dtype.BF16: "bfloat16", dtype.F16: "float16"}
	m := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "attention_bias": false, "attention_dropout": 0.0,
		"bos_token_id": 1, "dtype": names[c.DType], "eos_token_id": 2, "head_dim": hd, "hidden_act": "silu",
		"hidden_size": c.Hidden, "initializer_range": 0.02, "intermediate_size": c.Intermediate,
		"max_position_embeddings": 2048, "mlp_bias": false, "model_type": "llama",
		"num_attention_heads": c.Heads, "num_hidden_layers": c.Layers, "num_key_value_heads": c.KVHeads,
		"rms_norm_eps": 1e-05, "rope_parameters": map[string]any{"rope_theta": 10000.0, "rope_type": "default"},
		"tie_word_embeddings": false, "use_cache": true, "vocab_size": c.Vocab,
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}

// Bytes is the size of the tensor data.
func (c Config) Bytes() int64 {
	var n int64
	for _, t := range c.Tensors() {
		n += numel(t.Shape) * int64(c.DType.Size())
	}
	return n
}

func numel(s []int64) int64 {
	n := int64(1)
	for _, d := range s {
		n *= d
	}
	return n
}

// Write writes the model to out (a folder, a .safetensors file or "-").
func (c Config) Write(out string) error {
	ts := c.Tensors()
	nsh := max(c.Shards, 1)
	per := c.Bytes()/int64(nsh) + 1
	shards := make([]checkpoint.Shard, nsh)
	var acc int64
	for _, t := range ts {
		i := int(acc / per)
		acc += numel(t.Shape) * int64(c.DType.Size())
		shards[i].Tensors = append(shards[i].Tensors, safetensors.TensorInfo{Name: t.Name, DType: c.DType, Shape: t.Shape})
	}
	for i := range shards {
		shards[i].Name = fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, nsh)
	}
	if nsh == 1 {
		shards[0].Name = "model.safetensors"
	}
	w, err := checkpoint.Create(out, map[string][]byte{"config.json": c.ConfigJSON()}, shards)
	if err != nil {
		return err
	}
	kinds := map[string]Tensor{}
	idx := map[string]int{}
	for i, t := range ts {
		kinds[t.Name], idx[t.Name] = t, i
	}
	for _, info := range w.Order() {
		t := kinds[info.Name]
		data := c.fill(t, uint64(idx[t.Name]))
		if err := w.WriteTensor(t.Name, data); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Commit()
}

// fill generates one tensor: approximately normal values (a sum of four
// uniforms), 1 + noise for norms, zero rows where asked.
func (c Config) fill(t Tensor, index uint64) []byte {
	n := numel(t.Shape)
	std := c.Std
	if std == 0 {
		std = 0.02
	}
	f := make([]float32, n)
	const chunk = 1 << 16
	nchunks := (n + chunk - 1) / chunk
	var wg sync.WaitGroup
	work := make(chan int64, nchunks)
	for k := range nchunks {
		work <- k
	}
	close(work)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for k := range work {
				s := splitmix(c.Seed*0x9e3779b97f4a7c15 ^ index<<32 ^ uint64(k))
				for i := k * chunk; i < min((k+1)*chunk, n); i++ {
					var u float64
					for range 4 {
						u += float64(s.next()>>11) / (1 << 53)
					}
					v := (u - 2) * math.Sqrt(3) * std
					if t.Kind == 1 {
						v = 1 + v
					}
					f[i] = float32(v)
				}
			}
		})
	}
	wg.Wait()
	if t.Kind == 2 && c.ZeroRows > 0 && len(t.Shape) == 2 {
		clear(f[:min(int64(c.ZeroRows)*t.Shape[1], n)])
	}
	out := make([]byte, n*int64(c.DType.Size()))
	if c.DType == dtype.F32 {
		for i, v := range f {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
		}
		return out
	}
	if err := dtype.FromF32(out, f, c.DType); err != nil {
		panic(err)
	}
	return out
}

type splitmix uint64

func (s *splitmix) next() uint64 {
	*s += 0x9e3779b97f4a7c15
	z := uint64(*s)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
