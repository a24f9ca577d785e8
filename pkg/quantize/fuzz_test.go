package quantize

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tool"
)

// FuzzCheckpoint feeds hostile safetensors streams to Quantize and (for
// 4-bit ones) Dequantize: they must fail cleanly or write a readable output,
// never panic or hang. The seeds are small plain and quantized models.
func FuzzCheckpoint(f *testing.F) {
	dir := f.TempDir()
	plain := writeModel(f, filepath.Join(dir, "plain"), dtype.BF16, llamaConfig("bfloat16"), []testTensor{
		{name: "model.layers.0.self_attn.q_proj.weight", shape: []int64{4, 24}, vals: randn(1, 96, 0.1)},
		{name: "model.layers.0.mlp.up_proj.weight", shape: []int64{3, 11}, vals: randn(2, 33, 0.1)},
		{name: "model.norm.weight", shape: []int64{4}, vals: randn(3, 4, 1)},
	})
	f.Add(readFile(f, filepath.Join(plain, "model.safetensors")))
	for i, o := range []Options{{Type: nf4.NF4, Blocksize: 32, DoubleQuant: true}, {Type: nf4.FP4, Blocksize: 64}} {
		out := filepath.Join(dir, "q"+string(rune('0'+i))+".safetensors")
		if _, err := Quantize(context.Background(), open(f, plain), out, o); err != nil {
			f.Fatal(err)
		}
		f.Add(readFile(f, out))
	}
	// The input is a file (checkpoint.Open's stream path costs a 4 MiB
	// buffer per call; streams are spooled into the same random-access path
	// anyway), in memory where possible, and the output goes to memory:
	// rewriting, fsyncing and deleting files on a busy disk costs up to
	// seconds per input.
	tmp := dir
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "fuzzquantize"); err == nil {
			tmp = d
			f.Cleanup(func() { os.RemoveAll(d) })
		}
	}
	in := filepath.Join(tmp, "in.safetensors")
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(in, b, 0o644); err != nil {
			t.Fatal(err)
		}
		src, err := checkpoint.Open(in, nil)
		if err != nil {
			return
		}
		defer src.Close()
		mem := &memSink{}
		if src.IsQuantized() {
			_, err = dequantize(context.Background(), src, "mem", Options{Env: tool.Env{Threads: 2}}, mem.create)
		} else {
			_, err = quantize(context.Background(), src, "mem", Options{Type: nf4.NF4, Blocksize: 32, DoubleQuant: true, Env: tool.Env{Threads: 2}}, mem.create)
		}
		if err != nil {
			return
		}
		if _, _, err := safetensors.ReadHeader(bytes.NewReader(mem.buf.Bytes()), int64(mem.buf.Len())); err != nil {
			t.Fatalf("output unreadable: %v", err)
		}
	})
}

// memSink collects the output as one safetensors file in memory.
type memSink struct {
	buf bytes.Buffer
	*safetensors.Writer
}

func (m *memSink) create(files map[string][]byte, shards []checkpoint.Shard) (sink, error) {
	var all []safetensors.TensorInfo
	for _, s := range shards {
		all = append(all, s.Tensors...)
	}
	w, err := safetensors.NewWriter(&m.buf, checkpoint.Metadata(files), all)
	m.Writer = w
	return m, err
}

func (m *memSink) Commit() error { return m.Writer.Close() }
func (m *memSink) Abort()        {}
