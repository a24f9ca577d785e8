// Package randmodel makes random Llama-shaped checkpoints and LoRA adapters
// from a seed: the one generator behind the tests, the benchmarks (e.g.
// `go run ./tools/genmodel -o DIR` for the ~1 GB model of the speed
// figures) and `make demo`'s model. The values are a pure function of the
// seed, the shape and the tensor's name, so the same Config gives the same
// bytes in any order and on any number of cores.
//
// Weights are normal. With Std set every matrix has that standard
// deviation (0.02 is the usual initializer range); with Std 0 the model is
// initialised to be trained: embeddings N(0, 1) and every projection
// N(0, 1/fan_in). Norm weights are ones.
package randmodel

import (
	"cmp"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/output"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// Config describes the model. HeadDim 0 means Hidden/Heads; KVHeads 0 means
// Heads.
type Config struct {
	Hidden, Intermediate, Layers, Heads, KVHeads, HeadDim, Vocab int
	// DType stores the weights: F32, BF16 or F16 ("" is F32).
	DType dtype.DType
	// Shards splits the model into that many files of about equal size (0
	// or 1: one file).
	Shards int
	Seed   uint64
	// Std is the standard deviation of every matrix; 0 initialises for
	// training (see the package documentation).
	Std float64
	// ZeroRows zeroes the first rows of every projection (all-zero blocks).
	ZeroRows int
	// Tied ties lm_head to the embedding (no lm_head.weight).
	Tied bool
	// MaxPositions is max_position_embeddings (0: 2048); RopeTheta 0 is
	// 10000; RMSEps 0 is 1e-5.
	MaxPositions int
	RopeTheta    float64
	RMSEps       float64
	// BOS, EOS and Pad are the special token ids written to config.json
	// (nil: none).
	BOS, EOS, Pad *int
	// Files are carried beside config.json (tokenizer files, ...).
	Files map[string][]byte
}

// Tensor is one tensor of the model: its name, its shape and the standard
// deviation of its values (0: ones).
type Tensor struct {
	Name  string
	Shape []int64
	Std   float64
}

func (c Config) headDim() int {
	if c.HeadDim > 0 {
		return c.HeadDim
	}
	return c.Hidden / c.Heads
}

func (c Config) kvHeads() int       { return cmp.Or(c.KVHeads, c.Heads) }
func (c Config) dtype() dtype.DType { return cmp.Or(c.DType, dtype.F32) }

// Tensors lists the model's tensors in state-dict order.
func (c Config) Tensors() []Tensor {
	h, im := int64(c.Hidden), int64(c.Intermediate)
	q, kv := int64(c.Heads*c.headDim()), int64(c.kvHeads()*c.headDim())
	std := func(in int64) float64 {
		if c.Std > 0 {
			return c.Std
		}
		return 1 / math.Sqrt(float64(in))
	}
	embStd := c.Std
	if embStd == 0 {
		embStd = 1
	}
	ts := []Tensor{{"model.embed_tokens.weight", []int64{int64(c.Vocab), h}, embStd}}
	for l := range c.Layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		ts = append(ts,
			Tensor{p + "input_layernorm.weight", []int64{h}, 0},
			Tensor{p + "self_attn.q_proj.weight", []int64{q, h}, std(h)},
			Tensor{p + "self_attn.k_proj.weight", []int64{kv, h}, std(h)},
			Tensor{p + "self_attn.v_proj.weight", []int64{kv, h}, std(h)},
			Tensor{p + "self_attn.o_proj.weight", []int64{h, q}, std(q)},
			Tensor{p + "post_attention_layernorm.weight", []int64{h}, 0},
			Tensor{p + "mlp.gate_proj.weight", []int64{im, h}, std(h)},
			Tensor{p + "mlp.up_proj.weight", []int64{im, h}, std(h)},
			Tensor{p + "mlp.down_proj.weight", []int64{h, im}, std(im)},
		)
	}
	ts = append(ts, Tensor{"model.norm.weight", []int64{h}, 0})
	if !c.Tied {
		ts = append(ts, Tensor{"lm_head.weight", []int64{int64(c.Vocab), h}, std(h)})
	}
	return ts
}

// ConfigJSON is the model's config.json, in transformers v5's layout.
func (c Config) ConfigJSON() []byte {
	names := map[dtype.DType]string{dtype.F32: "float32", dtype.BF16: "bfloat16", dtype.F16: "float16"}
	m := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "attention_bias": false, "attention_dropout": 0.0,
		"dtype": names[c.dtype()], "head_dim": c.headDim(), "hidden_act": "silu", "hidden_size": c.Hidden,
		"initializer_range": 0.02, "intermediate_size": c.Intermediate,
		"max_position_embeddings": cmp.Or(c.MaxPositions, 2048), "mlp_bias": false, "model_type": "llama",
		"num_attention_heads": c.Heads, "num_hidden_layers": c.Layers, "num_key_value_heads": c.kvHeads(),
		"pretraining_tp": 1, "rms_norm_eps": cmp.Or(c.RMSEps, 1e-5),
		"rope_parameters":     map[string]any{"rope_theta": cmp.Or(c.RopeTheta, 10000.0), "rope_type": "default"},
		"tie_word_embeddings": c.Tied, "transformers_version": "5.17.0", "use_cache": true, "vocab_size": c.Vocab,
	}
	for key, id := range map[string]*int{"bos_token_id": c.BOS, "eos_token_id": c.EOS, "pad_token_id": c.Pad} {
		if id != nil {
			m[key] = *id
		}
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}

// Bytes is the size of the tensor data.
func (c Config) Bytes() int64 {
	var n int64
	for _, t := range c.Tensors() {
		n += num.Elements(t.Shape) * int64(c.dtype().Size())
	}
	return n
}

// chunk is the number of values drawn from one random stream: tensors up
// to this size use one stream, larger ones one per chunk, drawn in parallel.
const chunk = 1 << 20

// Values returns tensor i of Tensors() as float32: normal values with the
// tensor's standard deviation (ones when it is 0), from PCG streams keyed by
// the seed, i and the chunk.
func (c Config) Values(i int) []float32 {
	t := c.Tensors()[i]
	n := num.Elements(t.Shape)
	f := make([]float32, n)
	if t.Std == 0 {
		for k := range f {
			f[k] = 1
		}
		return f
	}
	chunks := int((n + chunk - 1) / chunk)
	var wg sync.WaitGroup
	next := make(chan int, chunks)
	for k := range chunks {
		next <- k
	}
	close(next)
	for range min(chunks, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for k := range next {
				r := rand.New(rand.NewPCG(c.Seed, uint64(i)+1+uint64(k)<<32))
				for j := int64(k) * chunk; j < min(n, int64(k+1)*chunk); j++ {
					f[j] = float32(r.NormFloat64() * t.Std)
				}
			}
		})
	}
	wg.Wait()
	if c.ZeroRows > 0 && len(t.Shape) == 2 && t.Name != "model.embed_tokens.weight" && t.Name != "lm_head.weight" {
		clear(f[:min(int64(c.ZeroRows)*t.Shape[1], n)])
	}
	return f
}

// Write writes the model to out: a folder (sharded when Shards > 1, with
// config.json and Files), a .safetensors file (.gz/.zst) or "-" (stdout).
func (c Config) Write(out string) error {
	ts := c.Tensors()
	dt := c.dtype()
	nsh := max(c.Shards, 1)
	per := c.Bytes()/int64(nsh) + 1
	shards := make([]checkpoint.Shard, nsh)
	var acc int64
	index := map[string]int{}
	for i, t := range ts {
		s := int(acc / per)
		acc += num.Elements(t.Shape) * int64(dt.Size())
		shards[s].Tensors = append(shards[s].Tensors, safetensors.TensorInfo{Name: t.Name, DType: dt, Shape: t.Shape})
		index[t.Name] = i
	}
	for i := range shards {
		shards[i].Name = fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, nsh)
	}
	if nsh == 1 {
		shards[0].Name = "model.safetensors"
	}
	files := map[string][]byte{"config.json": c.ConfigJSON()}
	for name, b := range c.Files {
		files[name] = b
	}
	w, err := checkpoint.CreateWith(out, files, shards, output.Options{})
	if err != nil {
		return err
	}
	for _, info := range w.Order() {
		b, err := encode(c.Values(index[info.Name]), dt)
		if err == nil {
			err = w.WriteTensor(info.Name, b)
		}
		if err != nil {
			w.Abort()
			return err
		}
	}
	return w.Commit()
}

// Loader serves the model's tensors by name as float32 with their shapes,
// rounded through DType: the llama.Loader of a model that exists only in
// memory.
func (c Config) Loader() func(name string) ([]float32, []int, error) {
	index := map[string]int{}
	ts := c.Tensors()
	for i, t := range ts {
		index[t.Name] = i
	}
	return func(name string) ([]float32, []int, error) {
		i, ok := index[name]
		if !ok {
			return nil, nil, fmt.Errorf("randmodel: no tensor %q", name)
		}
		f := c.Values(i)
		if dt := c.dtype(); dt != dtype.F32 {
			b, err := encode(f, dt)
			if err != nil {
				return nil, nil, err
			}
			if err := dtype.ToF32(f, b, dt); err != nil {
				return nil, nil, err
			}
		}
		shape := make([]int, len(ts[i].Shape))
		for k, d := range ts[i].Shape {
			shape[k] = int(d)
		}
		return f, shape, nil
	}
}

func encode(f []float32, dt dtype.DType) ([]byte, error) {
	if dt == dtype.F32 {
		return append([]byte(nil), num.F32Bytes(f)...), nil
	}
	b := make([]byte, len(f)*dt.Size())
	return b, dtype.FromF32(b, f, dt)
}

// Adapter writes a PEFT LoRA adapter of rank r for the model to out (a
// folder, a .safetensors file or "-"): F32 A and B on targets (projection
// names such as "q_proj"; none: all seven), alpha 2r, with B non-zero so
// that merging changes the weights. Values come from seed.
func (c Config) Adapter(out string, r int, seed uint64, targets ...string) error {
	if len(targets) == 0 {
		targets = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
	}
	want := map[string]bool{}
	for _, t := range targets {
		want[t] = true
	}
	var infos []safetensors.TensorInfo
	for _, t := range c.Tensors() {
		if len(t.Shape) != 2 || t.Name == "model.embed_tokens.weight" || t.Name == "lm_head.weight" {
			continue
		}
		module := t.Name[:len(t.Name)-len(".weight")]
		if !want[module[strings.LastIndexByte(module, '.')+1:]] {
			continue
		}
		infos = append(infos,
			safetensors.TensorInfo{Name: "base_model.model." + module + ".lora_A.weight", DType: dtype.F32, Shape: []int64{int64(r), t.Shape[1]}},
			safetensors.TensorInfo{Name: "base_model.model." + module + ".lora_B.weight", DType: dtype.F32, Shape: []int64{t.Shape[0], int64(r)}})
	}
	tm, _ := json.Marshal(targets)
	cfg := fmt.Sprintf(`{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": %d, "lora_alpha": %d, "lora_dropout": 0.0, "bias": "none", "target_modules": %s, "init_lora_weights": false}`, r, 2*r, tm)
	w, err := checkpoint.CreateWith(out, map[string][]byte{"adapter_config.json": []byte(cfg)},
		[]checkpoint.Shard{{Name: "adapter_model.safetensors", Tensors: infos}}, output.Options{})
	if err != nil {
		return err
	}
	for _, t := range w.Order() {
		h := fnv.New64a()
		h.Write([]byte(t.Name))
		rng := rand.New(rand.NewPCG(seed, h.Sum64()))
		f := make([]float32, t.NumElements())
		for i := range f {
			f[i] = float32(rng.NormFloat64() * 0.05)
		}
		if err := w.WriteTensor(t.Name, num.F32Bytes(f)); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Commit()
}
