package merge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/pipeline"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tool"
)

// synthModel writes a small Llama-shaped model with bf16 weights and f32
// norms, sharded in two files with an index, plus the same model as one
// self-describing file; it returns both paths and an all-linear rank-16
// LoRA adapter and a q/v DoRA adapter for it.
func synthModel(t testing.TB, dir string) (folder, single, lora, dora string) {
	t.Helper()
	g := &rng32{42}
	const hidden, inter, vocab, layers = 96, 200, 300, 2
	bf := func(shape []int64) safetensors.Tensor {
		v := g.vec(int(num.Elements(shape)), 0.5)
		b := make([]byte, 2*len(v))
		dtype.FromF32(b, v, dtype.BF16)
		return safetensors.Tensor{DType: dtype.BF16, Shape: shape, Data: b}
	}
	shapes := map[string][2]int64{"q_proj": {hidden, hidden}, "k_proj": {32, hidden}, "v_proj": {32, hidden}, "o_proj": {hidden, hidden},
		"gate_proj": {inter, hidden}, "up_proj": {inter, hidden}, "down_proj": {hidden, inter}}
	shard := []map[string]safetensors.Tensor{{}, {}}
	all := map[string]safetensors.Tensor{}
	loraT, doraT := map[string]safetensors.Tensor{}, map[string]safetensors.Tensor{}
	for l := 0; l < layers; l++ {
		for typ, sh := range shapes {
			part := "self_attn"
			if typ == "gate_proj" || typ == "up_proj" || typ == "down_proj" {
				part = "mlp"
			}
			name := fmt.Sprintf("model.layers.%d.%s.%s", l, part, typ)
			shard[l][name+".weight"] = bf(sh[:])
			newLoRA(g, name, 16, int(sh[1]), int(sh[0])).put(loraT)
			if typ == "q_proj" || typ == "v_proj" {
				m := newLoRA(g, name, 4, int(sh[1]), int(sh[0]))
				m.mag = g.vec(int(sh[0]), 1)
				for i := range m.mag {
					m.mag[i] += 8
				}
				m.put(doraT)
			}
		}
		shard[l][fmt.Sprintf("model.layers.%d.input_layernorm.weight", l)] = tf32([]int64{hidden}, g.vec(hidden, 1))
	}
	shard[0]["model.embed_tokens.weight"] = bf([]int64{vocab, hidden})
	shard[1]["lm_head.weight"] = bf([]int64{vocab, hidden})
	shard[1]["model.norm.weight"] = tf32([]int64{hidden}, g.vec(hidden, 1))
	cfg := llamaConfig(map[string]any{"dtype": "bfloat16"})
	cb, _ := json.MarshalIndent(cfg, "", "  ")
	folder = filepath.Join(dir, "base")
	os.MkdirAll(folder, 0o755)
	os.WriteFile(filepath.Join(folder, "config.json"), cb, 0o644)
	wm := map[string]string{}
	for i, ts := range shard {
		name := fmt.Sprintf("model-%05d-of-00002.safetensors", i+1)
		var buf bytes.Buffer
		if err := safetensors.Encode(&buf, map[string]string{"format": "pt"}, ts); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(folder, name), buf.Bytes(), 0o644)
		for n, tt := range ts {
			wm[n] = name
			all[n] = tt
		}
	}
	ix, _ := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": wm})
	os.WriteFile(filepath.Join(folder, safetensors.IndexFile), ix, 0o644)
	var buf bytes.Buffer
	if err := safetensors.Encode(&buf, checkpoint.Metadata(map[string][]byte{"config.json": cb}), all); err != nil {
		t.Fatal(err)
	}
	single = filepath.Join(dir, "base.safetensors")
	os.WriteFile(single, buf.Bytes(), 0o644)
	lora = writeAdapter(t, filepath.Join(dir, "lora"), map[string]any{"r": 16, "lora_alpha": 32, "target_modules": "all-linear"}, loraT)
	dora = writeAdapter(t, filepath.Join(dir, "dora"), map[string]any{"r": 4, "lora_alpha": 8, "use_dora": true, "target_modules": []string{"q_proj", "v_proj"}}, doraT)
	return
}

// folderBytes reads every file of a folder.
func folderBytes(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		out[e.Name()] = b
	}
	return out
}

// TestDeterminism: byte-identical output for any worker count and
// GOMAXPROCS, on re-runs, and sharded like the input.
func TestDeterminism(t *testing.T) {
	dir := t.TempDir()
	folder, _, lora, dora := synthModel(t, dir)
	ads := []adapterIn{{lora, 1}, {dora, 0.5}}
	var ref map[string][]byte
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for i, c := range []struct{ procs, workers int }{{1, 1}, {2, 2}, {2, 4}, {1, 3}, {2, 1}, {2, 2}} {
		runtime.GOMAXPROCS(c.procs)
		out := filepath.Join(dir, fmt.Sprintf("out%d", i))
		mergeTo(t, folder, ads, out, Options{Env: tool.Env{Threads: c.workers}})
		got := folderBytes(t, out)
		if ref == nil {
			ref = got
			if _, ok := ref[safetensors.IndexFile]; !ok || len(ref) != 4 {
				t.Fatalf("output files %d, want config.json, index and 2 shards", len(ref))
			}
			continue
		}
		for name, b := range ref {
			if !bytes.Equal(got[name], b) {
				t.Fatalf("GOMAXPROCS %d, %d workers: %s differs", c.procs, c.workers, name)
			}
		}
	}
}

// TestOutputsAndStreams: a single file, a .zst file and a stream base give
// the same tensors as the folder; a stream read in another order than the
// output's is reordered through the spill file.
func TestOutputsAndStreams(t *testing.T) {
	dir := t.TempDir()
	folder, single, lora, dora := synthModel(t, dir)
	ads := []adapterIn{{lora, 1}, {dora, 1}}
	refOut := filepath.Join(dir, "ref")
	mergeTo(t, folder, ads, refOut, Options{})
	ref, _ := tensorsOf(t, refOut)
	same := func(path string) {
		t.Helper()
		got, infos := tensorsOf(t, path)
		if len(infos) != len(ref) {
			t.Fatalf("%s: %d tensors, want %d", path, len(infos), len(ref))
		}
		for name, v := range ref {
			if !equalF32(got[name], v) {
				t.Fatalf("%s: %s differs", path, name)
			}
		}
	}
	fileOut := filepath.Join(dir, "one.safetensors")
	mergeTo(t, folder, ads, fileOut, Options{})
	same(fileOut)
	zst := filepath.Join(dir, "one.safetensors.zst")
	mergeTo(t, single, ads, zst, Options{})
	same(zst)

	raw, _ := os.ReadFile(single)
	streamOut := filepath.Join(dir, "stream.safetensors")
	if _, err := tryMerge("-", ads, streamOut, Options{}, raw); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(fileOut)
	b, _ := os.ReadFile(streamOut)
	if !bytes.Equal(a, b) {
		t.Fatal("stream base: output differs from the file base's")
	}

	// --dtype f16 changes the output order (norms were f32, before the bf16
	// weights); spill every out-of-order tensor.
	want := filepath.Join(dir, "f16-file.safetensors")
	mergeTo(t, single, ads, want, Options{DType: dtype.F16, Env: tool.Env{Threads: 3}})
	got := filepath.Join(dir, "f16-stream.safetensors")
	sum, err := tryMerge("-", ads, got, Options{DType: dtype.F16, StreamMemory: 1, Env: tool.Env{Threads: 3}}, raw)
	if err != nil {
		t.Fatal(err)
	}
	a, _ = os.ReadFile(want)
	b, _ = os.ReadFile(got)
	if !bytes.Equal(a, b) {
		t.Fatal("reordered stream: output differs")
	}
	if sum.Spilled == 0 {
		t.Fatal("nothing was spilled: the stream was not out of order")
	} else {
		t.Logf("%d bytes went through the spill file", sum.Spilled)
	}
}

// TestNF4Stream: a 4-bit stream base is spooled and merged like the file.
func TestNF4Stream(t *testing.T) {
	fx := fixtures(t)
	dir := t.TempDir()
	base := filepath.Join(fx, "bnb/tiny-nf4")
	lora := filepath.Join(fx, "peft/lora")
	// A self-describing single file of the 4-bit base, read from stdin.
	src, err := checkpoint.Open(base, nil)
	if err != nil {
		t.Fatal(err)
	}
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
	src.Close()
	want := filepath.Join(dir, "file.safetensors")
	mergeTo(t, base, one(lora), want, Options{})
	got := filepath.Join(dir, "stream.safetensors")
	if _, err := tryMerge("-", one(lora), got, Options{}, buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(want)
	b, _ := os.ReadFile(got)
	if !bytes.Equal(a, b) {
		t.Fatal("4-bit stream base: output differs from the file base's")
	}
}

// BenchmarkMergeTensor measures one bf16 4096×4096 projection merged with
// a rank-16 LoRA as lora-merge runs it: the tensor's job on the streaming
// engine (pread of the base, decode, rank-r update, encode), its output
// copied out by the consumer as the writer copies it into the page cache
// (MB/s of bf16 weight). Every iteration is one job of a single run, so
// the engine's buffers are reused as in a whole model's merge.
func BenchmarkMergeTensor(b *testing.B) {
	const rows, cols, r = 4096, 4096, 16
	const name = "model.layers.0.self_attn.q_proj"
	g := &rng32{7}
	dir := b.TempDir()
	w := make([]byte, rows*cols*2)
	dtype.FromF32(w, g.vec(rows*cols, 1), dtype.BF16)
	base := writeModel(b, filepath.Join(dir, "base"), llamaConfig(nil), map[string]safetensors.Tensor{
		name + ".weight": {DType: dtype.BF16, Shape: []int64{rows, cols}, Data: w}})
	ts := map[string]safetensors.Tensor{}
	newLoRA(g, name, r, cols, rows).put(ts)
	ad := writeAdapter(b, filepath.Join(dir, "ad"), map[string]any{"r": r, "lora_alpha": 2 * r}, ts)
	src, err := checkpoint.Open(base, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	a, err := OpenAdapter(ad, nil, 1, AdapterOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	p, err := Prepare(src, []*Adapter{a}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	j := p.byName[name+".weight"]
	dst := make([]byte, len(w))
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			jobs := make([]*pipeline.Job, b.N)
			for i := range jobs {
				jobs[i] = p.computeJob(j)
			}
			o := p.engine()
			o.Workers = workers
			off := 0
			b.SetBytes(int64(len(w)))
			b.ResetTimer()
			err := pipeline.Run(context.Background(), o, jobs, func(_ *pipeline.Job, _ int, out []byte) error {
				off += copy(dst[off%len(dst):], out)
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		})
	}
}
