package quantize

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/randmodel"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tool"
)

// specModel is a small model with what the spec singles out: odd element
// counts and partial last blocks, all-zero blocks (full, and a partial last
// block that is all zero), a bias, a norm, an embedding and lm_head (which
// stay), and a tensor of another dtype.
func specModel() []testTensor {
	down := randn(3, 40*100, 0.02)
	clear(down[:40*100/4]) // all-zero rows: all-zero blocks at every block size up to 1000
	up := randn(4, 7*9, 0.5)
	clear(up[32:]) // the partial last block (63 = 32+31) is all zero at block 32
	k := randn(2, 33*41, 0.03)
	k[5] = 1e-40 // a subnormal, and one large value
	k[700] = 3
	return []testTensor{
		{name: "model.embed_tokens.weight", shape: []int64{32, 40}, vals: randn(1, 32*40, 1)},
		{name: "model.layers.0.self_attn.q_proj.weight", shape: []int64{40, 40}, vals: randn(5, 40*40, 0.02)},
		{name: "model.layers.0.self_attn.q_proj.bias", shape: []int64{40}, vals: randn(6, 40, 0.1)},
		{name: "model.layers.0.self_attn.k_proj.weight", shape: []int64{33, 41}, vals: k},
		{name: "model.layers.0.mlp.down_proj.weight", shape: []int64{40, 100}, vals: down},
		{name: "model.layers.0.mlp.up_proj.weight", shape: []int64{7, 9}, vals: up},
		{name: "model.layers.0.input_layernorm.weight", shape: []int64{40}, vals: randn(7, 40, 1)},
		{name: "model.rotary.inv_freq", shape: []int64{8}, vals: randn(8, 8, 1), dt: dtype.F32},
		{name: "lm_head.weight", shape: []int64{32, 40}, vals: randn(9, 32*40, 0.02)},
	}
}

// expectedFile builds, independently of the pipeline, the bytes of the
// quantized file: nf4.QuantizeRaw of every selected weight, its tensors, the
// others as they are, in the reference layout with {"format": "pt"}.
func expectedFile(t *testing.T, src *stFile, sel func(string) bool, opts Options) ([]byte, map[string]*nf4.Quantized) {
	t.Helper()
	ts := map[string]safetensors.Tensor{}
	qs := map[string]*nf4.Quantized{}
	for _, n := range src.names() {
		ti, _ := src.info(n)
		data := src.data(t, n)
		if !sel(n) {
			ts[n] = safetensors.Tensor{DType: ti.DType, Shape: ti.Shape, Data: data}
			continue
		}
		q, err := nf4.QuantizeRaw(data, ti.DType, ti.Shape, nf4.Options{Type: opts.Type, Blocksize: opts.Blocksize, DoubleQuant: opts.DoubleQuant})
		if err != nil {
			t.Fatal(err)
		}
		qs[n] = q
		for _, nt := range q.Tensors(n) {
			ts[nt.Name] = safetensors.Tensor{DType: nt.DType, Shape: nt.Shape, Data: nt.Data}
		}
	}
	var buf bytes.Buffer
	if err := safetensors.Encode(&buf, map[string]string{"format": "pt"}, ts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), qs
}

// TestSpecMatrix quantizes the spec model for every input dtype, code type,
// block size and double-quantization setting, and checks the whole file
// against the independently built one; then dequantizes it and checks the
// values against nf4's reference decoder, and the report against a direct
// computation of the errors.
func TestSpecMatrix(t *testing.T) {
	quantized := []string{"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
		"model.layers.0.mlp.down_proj.weight", "model.layers.0.mlp.up_proj.weight"}
	sel := func(n string) bool { return slices.Contains(quantized, n) }
	for _, dt := range []dtype.DType{dtype.F32, dtype.BF16, dtype.F16} {
		in := writeModel(t, filepath.Join(t.TempDir(), "m"), dt, llamaConfig(dt.TorchName()), specModel())
		src := readST(t, filepath.Join(in, "model.safetensors"))
		for _, typ := range []nf4.Type{nf4.NF4, nf4.FP4} {
			for _, bs := range []int{32, 64, 128, 4096} {
				for _, dq := range []bool{true, false} {
					name := fmt.Sprintf("%s/%s/b%d/dq=%v", dt, typ, bs, dq)
					t.Run(name, func(t *testing.T) {
						opts := Options{Type: typ, Blocksize: bs, DoubleQuant: dq, ComputeDType: "float16"}
						out, rep := quantizeDir(t, in, opts)
						want, qs := expectedFile(t, src, sel, opts)
						if got := readFile(t, filepath.Join(out, "model.safetensors")); !bytes.Equal(got, want) {
							t.Fatalf("model.safetensors differs from the nf4 reference (%d vs %d bytes)", len(got), len(want))
						}
						checkConfig(t, filepath.Join(out, "config.json"), typ, dq, "float16")
						checkReport(t, rep, src, qs)
						checkZeroBlocks(t, qs, bs)

						back, drep := dequantizeDir(t, out, Options{})
						got := readST(t, filepath.Join(back, "model.safetensors"))
						for _, n := range src.names() {
							ti, _ := got.info(n)
							si, _ := src.info(n)
							wantData := src.data(t, n)
							if q := qs[n]; q != nil {
								wantData = make([]byte, si.NumElements()*int64(dt.Size()))
								if err := q.State.DequantizeTo(wantData, q.Packed); err != nil {
									t.Fatal(err)
								}
							}
							if ti.DType != si.DType || !slices.Equal(ti.Shape, si.Shape) || !bytes.Equal(got.data(t, n), wantData) {
								t.Errorf("dequantized %s differs", n)
							}
						}
						if len(got.names()) != len(src.names()) || drep.Quantized.Tensors != 4 {
							t.Errorf("dequantized tensors %v", got.names())
						}
						if b := readFile(t, filepath.Join(back, "config.json")); bytes.Contains(b, []byte(quantKey)) {
							t.Errorf("config.json keeps %s", quantKey)
						}
					})
				}
			}
		}
	}
}

func checkConfig(t *testing.T, path string, typ nf4.Type, dq bool, compute string) {
	t.Helper()
	var cfg struct {
		Q json.RawMessage `json:"quantization_config"`
	}
	if err := json.Unmarshal(readFile(t, path), &cfg); err != nil {
		t.Fatal(err)
	}
	qc, err := nf4.ParseQuantizationConfig(cfg.Q)
	if err != nil {
		t.Fatal(err)
	}
	if qc.QuantType != typ || qc.DoubleQuant != dq || qc.ComputeDType != compute || qc.QuantStorage != "uint8" {
		t.Errorf("quantization_config %+v", qc)
	}
}

// checkReport compares the report with a direct computation.
func checkReport(t *testing.T, rep *Report, src *stFile, qs map[string]*nf4.Quantized) {
	t.Helper()
	if len(rep.Tensors) != len(qs) {
		t.Fatalf("report lists %d tensors, want %d", len(rep.Tensors), len(qs))
	}
	var allSum float64
	var allN int64
	for _, tr := range rep.Tensors {
		q := qs[tr.Name]
		ti, _ := src.info(tr.Name)
		x := make([]float32, ti.NumElements())
		dtype.ToF32(x, src.data(t, tr.Name), ti.DType)
		y := make([]byte, len(x)*ti.DType.Size())
		if err := q.State.DequantizeTo(y, q.Packed); err != nil {
			t.Fatal(err)
		}
		yf := make([]float32, len(x))
		dtype.ToF32(yf, y, ti.DType)
		var sum, mx float64
		for i := range x {
			d := float64(x[i]) - float64(yf[i])
			sum += d * d
			mx = max(mx, math.Abs(d))
		}
		allSum += sum
		allN += int64(len(x))
		rmse := math.Sqrt(sum / float64(len(x)))
		if tr.RMSE == nil || math.Abs(float64(*tr.RMSE)-rmse) > 1e-6*rmse+1e-30 || float64(*tr.MaxAbsError) != mx {
			t.Errorf("%s: rmse %v max %v, want %v %v", tr.Name, tr.RMSE, tr.MaxAbsError, rmse, mx)
		}
		after := int64(0)
		for _, nt := range q.Tensors(tr.Name) {
			after += int64(len(nt.Data))
		}
		if tr.Params != ti.NumElements() || tr.BytesBefore != ti.NumBytes() || tr.BytesAfter != after ||
			math.Abs(tr.BitsAfter-8*float64(after)/float64(tr.Params)) > 1e-12 {
			t.Errorf("%s: report %+v, want after %d", tr.Name, tr, after)
		}
	}
	if r := math.Sqrt(allSum / float64(allN)); math.Abs(float64(*rep.Quantized.RMSE)-r) > 1e-6*r {
		t.Errorf("total rmse %v, want %v", *rep.Quantized.RMSE, r)
	}
	var total int64
	for _, n := range src.names() {
		ti, _ := src.info(n)
		total += ti.NumBytes()
	}
	if rep.Total.BytesBefore != total || rep.Total.Tensors != len(src.names()) {
		t.Errorf("total %+v, want %d bytes before", rep.Total, total)
	}
}

// checkZeroBlocks checks the all-zero blocks of the spec model (spec 2.5):
// codes 0x77 (NF4) or 0x00 (FP4), absmax 0 for full blocks and f32(1e-38)
// for an all-zero partial last block.
func checkZeroBlocks(t *testing.T, qs map[string]*nf4.Quantized, bs int) {
	t.Helper()
	down := qs["model.layers.0.mlp.down_proj.weight"]
	zeroCode := byte(0x77)
	if down.State.Type == nf4.FP4 {
		zeroCode = 0
	}
	am := down.State.BlockAbsmax()
	if nb := 1000 / bs; nb > 0 {
		for b := range nb {
			if down.State.Nested == nil && am[b] != 0 {
				t.Errorf("zero block %d: absmax %g", b, am[b])
			}
			for _, c := range down.Packed[b*bs/2 : (b+1)*bs/2] {
				if c != zeroCode {
					t.Fatalf("zero block %d: code %#x", b, c)
				}
			}
		}
	}
	if bs == 32 && down.State.Nested == nil {
		up := qs["model.layers.0.mlp.up_proj.weight"]
		if got := math.Float32bits(up.State.Absmax[1]); got != minDivisorBits {
			t.Errorf("all-zero partial last block: absmax %08x, want %08x", got, minDivisorBits)
		}
	}
}

// TestShardedAndSkip: a sharded input gives a sharded output with the same
// shard names and an index, every quant-state tensor beside its weight;
// --skip leaves more modules alone and is written to the config.
func TestShardedAndSkip(t *testing.T) {
	dir := t.TempDir()
	c := randmodel.Config{Hidden: 64, Intermediate: 96, Layers: 3, Heads: 4, KVHeads: 2, Vocab: 50, DType: dtype.BF16, Shards: 3, Seed: 5, ZeroRows: 2, Std: 0.02}
	in := filepath.Join(dir, "in")
	if err := c.Write(in); err != nil {
		t.Fatal(err)
	}
	opts := DefaultOptions()
	opts.Skip = []string{`model\.layers\.1\.mlp`, "v_proj"}
	out, rep := quantizeDir(t, in, opts)
	ix, err := safetensors.ReadIndex(filepath.Join(out, safetensors.IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	inIx, err := safetensors.ReadIndex(filepath.Join(in, safetensors.IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ix.Shards(), inIx.Shards()) {
		t.Errorf("shards %v, input %v", ix.Shards(), inIx.Shards())
	}
	nq := 0
	for name, shard := range ix.WeightMap {
		if w, _, ok := nf4.SplitStateKey(name); ok {
			if ix.WeightMap[w] != shard || inIx.WeightMap[w] != shard {
				t.Errorf("%s in %s, its weight in %s (input %s)", name, shard, ix.WeightMap[w], inIx.WeightMap[w])
			}
			if strings.HasSuffix(name, nf4.SuffixQuantStateNF4) {
				nq++
				if strings.Contains(name, "v_proj") || strings.Contains(name, "layers.1.mlp") {
					t.Errorf("%s quantized despite --skip", name)
				}
			}
		}
	}
	if want := 3*7 - 3 - 3; nq != want || rep.Quantized.Tensors != want {
		t.Errorf("%d quantized weights (report %d), want %d", nq, rep.Quantized.Tensors, want)
	}
	var cfg struct {
		Q struct {
			Skip []string `json:"llm_int8_skip_modules"`
		} `json:"quantization_config"`
	}
	json.Unmarshal(readFile(t, filepath.Join(out, "config.json")), &cfg)
	if want := []string{"lm_head", `model\.layers\.1\.mlp`, "v_proj"}; !slices.Equal(cfg.Q.Skip, want) {
		t.Errorf("llm_int8_skip_modules %q, want %q", cfg.Q.Skip, want)
	}
	if !slices.Equal(rep.SkipModules, cfg.Q.Skip) {
		t.Errorf("report skip modules %q", rep.SkipModules)
	}

	// The same model in one file quantizes to the same tensors.
	one := filepath.Join(dir, "one.safetensors")
	if err := c.Write(one); err != nil {
		t.Fatal(err)
	}
	out1, _ := quantizeDir(t, one, opts)
	a := readST(t, filepath.Join(out1, "model.safetensors"))
	src := open(t, out)
	if len(src.Tensors) != len(a.names()) {
		t.Fatalf("%d tensors sharded, %d single", len(src.Tensors), len(a.names()))
	}
	for _, ti := range src.Tensors {
		b, err := src.Data(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, a.data(t, ti.Name)) {
			t.Errorf("%s differs between sharded and single-file input", ti.Name)
		}
	}

	// Dequantize to f32: every float tensor converted, config dtype too.
	back, _ := dequantizeDir(t, out, Options{DType: dtype.F32})
	bs := open(t, back)
	for _, ti := range bs.Tensors {
		if ti.DType != dtype.F32 {
			t.Errorf("%s: %s after --dtype f32", ti.Name, ti.DType)
		}
	}
	var bc map[string]any
	json.Unmarshal(readFile(t, filepath.Join(back, "config.json")), &bc)
	if bc["dtype"] != "float32" || bc[quantKey] != nil {
		t.Errorf("dequantized config dtype %v, %s %v", bc["dtype"], quantKey, bc[quantKey])
	}
	if _, err := os.Stat(filepath.Join(back, safetensors.IndexFile)); err != nil {
		t.Errorf("dequantized output is not sharded: %v", err)
	}
	// The unquantized tensors convert exactly (bf16 → f32).
	norm := "model.layers.2.input_layernorm.weight"
	orig, _ := open(t, in).Data(norm)
	got, _ := bs.Data(norm)
	want := make([]byte, len(orig)*2)
	dtype.Convert(want, dtype.F32, orig, dtype.BF16)
	if !bytes.Equal(got, want) {
		t.Errorf("%s not converted exactly", norm)
	}
}

// TestMultiChunk: weights spanning several chunks (odd element counts, a
// chunk boundary inside no block) match the nf4 reference whole, from a
// file and from a stream.
func TestMultiChunk(t *testing.T) {
	big := randn(11, 333*617, 0.02)
	clear(big[70000:140000])
	ts := []testTensor{
		{name: "model.layers.0.mlp.down_proj.weight", shape: []int64{333, 617}, vals: big},
		{name: "model.layers.0.mlp.up_proj.weight", shape: []int64{617, 333}, vals: randn(12, 333*617, 0.5)},
		{name: "model.norm.weight", shape: []int64{333}, vals: randn(13, 333, 1)},
	}
	in := writeModel(t, filepath.Join(t.TempDir(), "m"), dtype.BF16, llamaConfig("bfloat16"), ts)
	src := readST(t, filepath.Join(in, "model.safetensors"))
	sel := func(n string) bool { return strings.Contains(n, "proj") }
	for _, bs := range []int{64, 4096} {
		for _, dq := range []bool{true, false} {
			opts := Options{Type: nf4.NF4, Blocksize: bs, DoubleQuant: dq, Env: tool.Env{Threads: 3}}
			want, _ := expectedFile(t, src, sel, opts)
			out, _ := quantizeDir(t, in, opts)
			if got := readFile(t, filepath.Join(out, "model.safetensors")); !bytes.Equal(got, want) {
				t.Errorf("b%d dq=%v: file input differs from the nf4 reference", bs, dq)
			}
			stream, err := checkpoint.Open("-", bytes.NewReader(readFile(t, filepath.Join(in, "model.safetensors"))))
			if err != nil {
				t.Fatal(err)
			}
			out2 := filepath.Join(t.TempDir(), "s")
			if _, err := Quantize(context.Background(), stream, out2, opts); err != nil {
				t.Fatal(err)
			}
			stream.Close()
			if got := readFile(t, filepath.Join(out2, "model.safetensors")); !bytes.Equal(got, want) {
				t.Errorf("b%d dq=%v: stream input differs from the nf4 reference", bs, dq)
			}
		}
	}
}
