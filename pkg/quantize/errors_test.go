package quantize

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// mutated returns a copy of the tiny-nf4 fixture (one file, config in the
// metadata) with fn applied to its tensors.
func mutated(t *testing.T, fn func(ts map[string]safetensors.Tensor)) []byte {
	t.Helper()
	fx := fixtures(t)
	f := readST(t, filepath.Join(fx, "bnb", "tiny-nf4", "model.safetensors"))
	ts := map[string]safetensors.Tensor{}
	for _, n := range f.names() {
		ti, _ := f.info(n)
		ts[n] = safetensors.Tensor{DType: ti.DType, Shape: ti.Shape, Data: bytes.Clone(f.data(t, n))}
	}
	fn(ts)
	var buf bytes.Buffer
	md := checkpoint.Metadata(map[string][]byte{"config.json": readFile(t, filepath.Join(fx, "bnb", "tiny-nf4", "config.json"))})
	if err := safetensors.Encode(&buf, md, ts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestBadInput: every refusal names the problem, is classified, and leaves
// nothing behind — no output, no temporary file or folder, no spool.
func TestBadInput(t *testing.T) {
	fx := fixtures(t)
	tiny := filepath.Join(fx, "peft", "tiny")
	base := t.TempDir()
	f64 := writeModel(t, filepath.Join(base, "f64"), dtype.F32, llamaConfig("float32"), []testTensor{
		{name: "model.layers.0.self_attn.q_proj.weight", shape: []int64{8, 8}, vals: randn(1, 64, 1), dt: dtype.F64}})
	i8 := writeModel(t, filepath.Join(base, "i8"), dtype.F32, nil, []testTensor{
		{name: "model.layers.0.mlp.up_proj.weight", shape: []int64{8, 8}, vals: make([]float32, 64), dt: dtype.I8}})
	embOnly := writeModel(t, filepath.Join(base, "emb"), dtype.BF16, nil, []testTensor{
		{name: "model.embed_tokens.weight", shape: []int64{8, 8}, vals: randn(1, 64, 1)},
		{name: "lm_head.weight", shape: []int64{8, 8}, vals: randn(2, 64, 1)}})
	cfgQuant := writeModel(t, filepath.Join(base, "cfgq"), dtype.BF16,
		[]byte(`{"model_type": "llama", "quantization_config": {"load_in_4bit": true}}`), []testTensor{
			{name: "model.layers.0.mlp.up_proj.weight", shape: []int64{8, 8}, vals: randn(1, 64, 1)}})
	badCfg := writeModel(t, filepath.Join(base, "badcfg"), dtype.BF16, []byte(`{"model_type": `), []testTensor{
		{name: "model.layers.0.mlp.up_proj.weight", shape: []int64{8, 8}, vals: randn(1, 64, 1)}})

	w := "model.layers.0.self_attn.q_proj.weight"
	extraField := mutated(t, func(ts map[string]safetensors.Tensor) {
		js := []byte(strings.Replace(string(ts[w+nf4.SuffixQuantStateNF4].Data), "}", `, "extra": 1}`, 1))
		ts[w+nf4.SuffixQuantStateNF4] = safetensors.Tensor{DType: dtype.U8, Shape: []int64{int64(len(js))}, Data: js}
	})
	orphan := mutated(t, func(ts map[string]safetensors.Tensor) { delete(ts, w+nf4.SuffixQuantStateNF4) })
	shortPacked := mutated(t, func(ts map[string]safetensors.Tensor) {
		ts[w] = safetensors.Tensor{DType: dtype.U8, Shape: []int64{100, 1}, Data: make([]byte, 100)}
	})
	noMap := mutated(t, func(ts map[string]safetensors.Tensor) { delete(ts, w+nf4.SuffixNestedQuantMap) })
	noPacked := mutated(t, func(ts map[string]safetensors.Tensor) { delete(ts, w) }) // found by fuzzing: a nil state
	intact := mutated(t, func(map[string]safetensors.Tensor) {})
	raw := readFile(t, filepath.Join(tiny, "model.safetensors"))

	cases := []struct {
		name  string
		in    string
		stdin []byte
		deq   bool
		opts  func(*Options)
		want  error
		msg   string
	}{
		{"already quantized", filepath.Join(fx, "bnb", "tiny-nf4"), nil, false, nil, ErrQuantized, "already quantized"},
		{"config says quantized", cfgQuant, nil, false, nil, ErrQuantized, "quantization_config"},
		{"adapter", filepath.Join(fx, "peft", "lora"), nil, false, nil, model.ErrNotModel, "adapter"},
		{"f64 weight", f64, nil, false, nil, nf4.ErrDType, `"model.layers.0.self_attn.q_proj.weight"`},
		{"int8 weight", i8, nil, false, nil, nf4.ErrDType, "I8"},
		{"nothing to quantize", embOnly, nil, false, nil, ErrNothing, ""},
		{"block size 48", tiny, nil, false, func(o *Options) { o.Blocksize = 48 }, nf4.ErrBlocksize, "48"},
		{"block size 8192", tiny, nil, false, func(o *Options) { o.Blocksize = 8192 }, nf4.ErrBlocksize, "8192"},
		{"bad skip", tiny, nil, false, func(o *Options) { o.Skip = []string{"("} }, nf4.ErrConfig, "("},
		{"bad config.json", badCfg, nil, false, nil, checkpoint.ErrConfig, "config.json"},
		{"truncated stream", "-", raw[:len(raw)-1000], false, nil, safetensors.ErrTruncated, ""},
		{"dequantize a plain model", tiny, nil, true, nil, ErrNotQuantized, ""},
		{"dequantize: extra JSON field", "-", extraField, true, nil, nf4.ErrState, "extra"},
		{"dequantize: orphan state", "-", orphan, true, nil, nf4.ErrMissing, w},
		{"dequantize: short packed weight", "-", shortPacked, true, nil, nf4.ErrState, w},
		{"dequantize: no nested map", "-", noMap, true, nil, nf4.ErrMissing, "nested_quant_map"},
		{"dequantize: no packed weight", "-", noPacked, true, nil, nf4.ErrMissing, w},
		{"dequantize: truncated stream", "-", intact[:len(intact)-10], true, nil, safetensors.ErrTruncated, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			var stdin *bytes.Reader
			if c.stdin != nil {
				stdin = bytes.NewReader(c.stdin)
			}
			src, err := checkpoint.Open(c.in, stdin)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			for _, out := range []string{filepath.Join(dir, "out"), filepath.Join(dir, "out.safetensors")} {
				if c.stdin != nil && out != filepath.Join(dir, "out") {
					continue // a stream is read once
				}
				if c.deq {
					_, err = Dequantize(context.Background(), src, out, Options{})
				} else {
					opts := DefaultOptions()
					if c.opts != nil {
						c.opts(&opts)
					}
					_, err = Quantize(context.Background(), src, out, opts)
				}
				if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
					t.Fatalf("error %v, want %v containing %q", err, c.want, c.msg)
				}
				if entries, _ := os.ReadDir(dir); len(entries) != 0 {
					t.Fatalf("left behind: %v", entries)
				}
			}
		})
	}
}

// TestCancel: a cancelled run stops, returns the context's error and
// leaves nothing behind.
func TestCancel(t *testing.T) {
	fx := fixtures(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Quantize(ctx, open(t, filepath.Join(fx, "peft", "tiny")), filepath.Join(dir, "out"), DefaultOptions())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
	_, err = Dequantize(ctx, open(t, filepath.Join(fx, "bnb", "tiny-nf4")), filepath.Join(dir, "out"), Options{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("left behind: %v", entries)
	}
}
