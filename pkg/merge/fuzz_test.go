package merge

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/lorakit/lorakit/internal/pyjson"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tool"
)

// FuzzEditConfig: editing config.json never panics, keeps every other key
// and its value, and gives valid JSON with the edits applied.
func FuzzEditConfig(f *testing.F) {
	f.Add([]byte(`{"a": 1, "tie_word_embeddings": true, "quantization_config": {"x": [1, 2]}, "dtype": "float32"}`), true, true, true)
	f.Add([]byte(`{"torch_dtype": "bfloat16"}`), true, false, false)
	f.Add([]byte(`{}`), false, false, true)
	f.Add([]byte(`{"a": {"b": "\u00e9"}, "a": 2}`), true, true, true)
	f.Add([]byte(`[1]`), true, false, false)
	f.Add([]byte(`{"a": 1} x`), true, false, false)
	if fx, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "fixtures", "bnb", "tiny-nf4", "config.json")); err == nil {
		f.Add(fx, true, true, true)
	}
	f.Fuzz(func(t *testing.T, b []byte, untie, drop, setDType bool) {
		e := configEdit{untie: untie, dropQuant: drop}
		if setDType {
			e.dtype = "BF16"
		}
		out, err := editConfig(b, e)
		if err != nil {
			return
		}
		if !untie && !drop && !setDType {
			if !bytes.Equal(out, b) {
				t.Fatal("no edit changed the bytes")
			}
			return
		}
		in, err := pyjson.Decode(b)
		if err != nil || in.Kind != pyjson.KindObject {
			t.Fatalf("edited a config that does not parse: %v", err)
		}
		var got map[string]json.RawMessage
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("output is not a JSON object: %v\n%s", err, out)
		}
		for _, m := range in.Obj {
			g, ok := got[m.Key]
			switch {
			case m.Key == "quantization_config" && drop:
				if ok {
					t.Fatal("quantization_config kept")
				}
			case m.Key == "tie_word_embeddings" && untie:
				if string(g) != "false" {
					t.Fatalf("tie_word_embeddings = %s", g)
				}
			case (m.Key == "dtype" || m.Key == "torch_dtype") && setDType:
				if string(g) != `"bfloat16"` {
					t.Fatalf("%s = %s", m.Key, g)
				}
			default:
				raw := configDumps.Marshal(m.Value)
				var a, c any
				if !ok || json.Unmarshal(raw, &a) != nil || json.Unmarshal(g, &c) != nil || !jsonEqual(a, c) {
					t.Fatalf("key %q changed: %s -> %s", m.Key, raw, g)
				}
			}
		}
		if untie && string(got["tie_word_embeddings"]) != "false" {
			t.Fatal("tie_word_embeddings not set")
		}
	})
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// adapterStream is an adapter folder as one self-describing stream.
func adapterStream(t testing.TB, dir string) []byte {
	src, err := checkpoint.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var buf bytes.Buffer
	sw, err := safetensors.NewWriter(&buf, checkpoint.Metadata(src.Files), src.Tensors)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range sw.Order() {
		d, _ := src.Data(ti.Name)
		sw.WriteTensor(ti.Name, d)
	}
	sw.Close()
	return buf.Bytes()
}

// FuzzAdapter merges arbitrary adapter streams into the tiny fixture model:
// hostile shapes, keys, configs and values must give errors, never panics
// or hangs; a merge that succeeds writes a loadable checkpoint.
func FuzzAdapter(f *testing.F) {
	fx := fixtures(f)
	f.Add(adapterStream(f, filepath.Join(fx, "peft/lora")))
	f.Add(adapterStream(f, filepath.Join(fx, "peft/dora")))
	g := &rng32{11}
	small := map[string]safetensors.Tensor{}
	newLoRA(g, "model.layers.1.mlp.down_proj", 2, 128, 64).put(small)
	small[peft.Prefix+"lm_head.weight"] = tf32([]int64{256, 64}, g.vec(256*64, 1))
	dir := f.TempDir()
	f.Add(adapterStream(f, writeAdapter(f, filepath.Join(dir, "a"), map[string]any{"r": 2, "lora_alpha": 3, "use_rslora": true, "modules_to_save": []string{"lm_head"}}, small)))
	ia3 := map[string]safetensors.Tensor{peft.Prefix + "model.layers.0.mlp.up_proj.ia3_l": tf32([]int64{128, 1}, g.vec(128, 1))}
	f.Add(adapterStream(f, writeAdapter(f, filepath.Join(dir, "b"), map[string]any{"peft_type": "IA3", "target_modules": []string{"up_proj"}}, ia3)))
	base, err := checkpoint.Open(filepath.Join(fx, "peft/tiny"), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { base.Close() })
	out := filepath.Join(f.TempDir(), "out.safetensors")
	f.Fuzz(func(t *testing.T, data []byte) {
		src, err := checkpoint.Open("-", bytes.NewReader(data))
		if err != nil {
			return
		}
		defer src.Close()
		ad, err := newAdapter(src, 0.5, AdapterOptions{})
		if err != nil {
			return
		}
		p, err := Prepare(base, []*Adapter{ad}, Options{Safe: len(data)%2 == 0, Env: tool.Env{Threads: 2}})
		if err != nil {
			return
		}
		defer p.Close()
		if _, err := p.Run(context.Background(), out); err != nil {
			return
		}
		res, err := checkpoint.Open(out, nil)
		if err != nil {
			t.Fatalf("merged output does not open: %v", err)
		}
		res.Close()
	})
}
