// Command genmodel writes a random bf16 Llama-shaped checkpoint (sharded,
// with config.json) and a rank-r all-linear LoRA adapter for it, to
// benchmark lora-merge against cp:
//
//	go run ./pkg/merge/internal/genmodel -o /tmp/bench          # ≈1.66 GB model
//	lora-merge --base /tmp/bench/model --adapter /tmp/bench/adapter -o /tmp/bench/merged
//
// Values are small normal-ish numbers from a fixed-seed generator, so runs
// are reproducible. Tensors are written one at a time (bounded memory).
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

type rng struct{ s uint64 }

// next returns a value with a roughly normal spread (sum of 4 uniforms).
func (r *rng) next() float32 {
	var s float32
	for i := 0; i < 4; i++ {
		r.s ^= r.s << 13
		r.s ^= r.s >> 7
		r.s ^= r.s << 17
		s += float32(r.s>>40)/(1<<24) - 0.5
	}
	return s
}

func main() {
	out := flag.String("o", "", "output folder (model/ and adapter/ are created in it)")
	hidden := flag.Int("hidden", 2048, "hidden size")
	inter := flag.Int("inter", 5632, "intermediate size")
	layers := flag.Int("layers", 16, "decoder layers")
	vocab := flag.Int("vocab", 32000, "vocabulary size")
	heads := flag.Int("heads", 32, "attention heads")
	kvHeads := flag.Int("kv-heads", 4, "key/value heads")
	shards := flag.Int("shards", 4, "model shards")
	rank := flag.Int("rank", 16, "adapter rank")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "genmodel: -o is required")
		os.Exit(2)
	}
	if err := run(*out, *hidden, *inter, *layers, *vocab, *heads, *kvHeads, *shards, *rank); err != nil {
		fmt.Fprintln(os.Stderr, "genmodel:", err)
		os.Exit(1)
	}
}

func run(out string, hidden, inter, layers, vocab, heads, kvHeads, nShards, rank int) error {
	headDim := hidden / heads
	kv := kvHeads * headDim
	type lin struct {
		name    string
		in, out int
	}
	var tensors []safetensors.TensorInfo
	var linears []lin
	add := func(name string, shape ...int64) {
		tensors = append(tensors, safetensors.TensorInfo{Name: name, DType: dtype.BF16, Shape: shape})
	}
	add("model.embed_tokens.weight", int64(vocab), int64(hidden))
	for l := 0; l < layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		for _, x := range []lin{{"self_attn.q_proj", hidden, hidden}, {"self_attn.k_proj", hidden, kv}, {"self_attn.v_proj", hidden, kv},
			{"self_attn.o_proj", hidden, hidden}, {"mlp.gate_proj", hidden, inter}, {"mlp.up_proj", hidden, inter}, {"mlp.down_proj", inter, hidden}} {
			add(p+x.name+".weight", int64(x.out), int64(x.in))
			linears = append(linears, lin{p + x.name, x.in, x.out})
		}
		add(p+"input_layernorm.weight", int64(hidden))
		add(p+"post_attention_layernorm.weight", int64(hidden))
	}
	add("model.norm.weight", int64(hidden))
	add("lm_head.weight", int64(vocab), int64(hidden))

	// Shards of about equal size, in tensor order.
	var total int64
	for _, t := range tensors {
		total += t.NumElements() * 2
	}
	shards := make([]checkpoint.Shard, nShards)
	var acc int64
	for _, t := range tensors {
		i := min(nShards-1, int(acc*int64(nShards)/total))
		shards[i].Tensors = append(shards[i].Tensors, t)
		acc += t.NumElements() * 2
	}
	var kept []checkpoint.Shard
	for i := range shards {
		if len(shards[i].Tensors) > 0 {
			kept = append(kept, shards[i])
		}
	}
	for i := range kept {
		kept[i].Name = fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(kept))
	}
	cfg := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama", "hidden_size": hidden, "intermediate_size": inter,
		"num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kvHeads, "head_dim": headDim,
		"vocab_size": vocab, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
		"tie_word_embeddings": false, "torch_dtype": "bfloat16", "hidden_act": "silu",
	}
	cb, _ := json.MarshalIndent(cfg, "", "  ")
	w, err := checkpoint.Create(filepath.Join(out, "model"), map[string][]byte{"config.json": append(cb, '\n')}, kept)
	if err != nil {
		return err
	}
	g := &rng{s: 0x9e3779b97f4a7c15}
	var buf []byte
	var f32 []float32
	for _, t := range w.Order() {
		n := int(t.NumElements())
		f32 = grow(f32, n)
		scale := float32(0.02)
		if len(t.Shape) == 1 {
			scale = 0.1
		}
		for i := range f32 {
			f32[i] = g.next() * scale
			if len(t.Shape) == 1 {
				f32[i] += 1
			}
		}
		buf = growB(buf, 2*n)
		if err := dtype.FromF32(buf, f32, dtype.BF16); err != nil {
			w.Abort()
			return err
		}
		if err := w.WriteTensor(t.Name, buf); err != nil {
			w.Abort()
			return err
		}
	}
	if err := w.Commit(); err != nil {
		return err
	}

	// The adapter: PEFT keys, F32, B non-zero so that merging changes weights.
	var ats []safetensors.TensorInfo
	for _, l := range linears {
		ats = append(ats,
			safetensors.TensorInfo{Name: "base_model.model." + l.name + ".lora_A.weight", DType: dtype.F32, Shape: []int64{int64(rank), int64(l.in)}},
			safetensors.TensorInfo{Name: "base_model.model." + l.name + ".lora_B.weight", DType: dtype.F32, Shape: []int64{int64(l.out), int64(rank)}})
	}
	acfg := fmt.Sprintf(`{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": %d, "lora_alpha": %d, "lora_dropout": 0.0, "bias": "none", "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], "init_lora_weights": false}`, rank, 2*rank)
	aw, err := checkpoint.Create(filepath.Join(out, "adapter"), map[string][]byte{"adapter_config.json": []byte(acfg)},
		[]checkpoint.Shard{{Name: "adapter_model.safetensors", Tensors: ats}})
	if err != nil {
		return err
	}
	for _, t := range aw.Order() {
		n := int(t.NumElements())
		buf = growB(buf, 4*n)
		for i := 0; i < n; i++ {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(g.next()*0.05))
		}
		if err := aw.WriteTensor(t.Name, buf); err != nil {
			aw.Abort()
			return err
		}
	}
	if err := aw.Commit(); err != nil {
		return err
	}
	fmt.Printf("model: %d tensors, %.2f GB in %d shards; adapter: rank %d on %d modules\n", len(tensors), float64(total)/1e9, len(kept), rank, len(linears))
	return nil
}

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

func growB(s []byte, n int) []byte {
	if cap(s) < n {
		return make([]byte, n)
	}
	return s[:n]
}
