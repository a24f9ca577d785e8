package quantize

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/nf4"
)

var goldenCases = []struct {
	dir string
	dq  bool
}{{"tiny-nf4", true}, {"tiny-nf4-nodq", false}}

// TestGoldenQuantize: quantizing peft/tiny reproduces bnb/tiny-nf4 and
// tiny-nf4-nodq file for file — model.safetensors and config.json byte for
// byte, generation_config.json carried unchanged.
func TestGoldenQuantize(t *testing.T) {
	fx := fixtures(t)
	in := filepath.Join(fx, "peft", "tiny")
	for _, tc := range goldenCases {
		t.Run(tc.dir, func(t *testing.T) {
			opts := DefaultOptions()
			opts.DoubleQuant = tc.dq
			out, rep := quantizeDir(t, in, opts)
			golden := filepath.Join(fx, "bnb", tc.dir)
			for _, f := range []string{"model.safetensors", "config.json"} {
				if !sameFile(t, filepath.Join(out, f), filepath.Join(golden, f)) {
					t.Errorf("%s differs from %s", f, filepath.Join(golden, f))
				}
			}
			if !sameFile(t, filepath.Join(out, "generation_config.json"), filepath.Join(in, "generation_config.json")) {
				t.Errorf("generation_config.json not carried")
			}
			entries, _ := os.ReadDir(out)
			if len(entries) != 3 {
				t.Errorf("output holds %d files, want 3", len(entries))
			}
			if rep.Quantized.Tensors != 14 || rep.Other.Tensors != 7 || rep.Quantized.Params != 73728 {
				t.Errorf("report counts %+v / %+v", rep.Quantized, rep.Other)
			}
		})
	}
}

// TestGoldenOffsets: the double-quantization offset is the one value torch
// does not compute reproducibly in general (spec 3.1). With the fixture's
// offsets injected every byte matches too, and without them (our own
// MeanOffset) the only bytes that may differ are the ones the offset
// explains — on these fixtures none do.
func TestGoldenOffsets(t *testing.T) {
	fx := fixtures(t)
	golden := readST(t, filepath.Join(fx, "bnb", "tiny-nf4", "model.safetensors"))
	offsets := map[string]float32{}
	for _, n := range golden.names() {
		if w, ok := strings.CutSuffix(n, nf4.SuffixQuantStateNF4); ok {
			qs, _, err := nf4.ParseModule(w, golden.get)
			if err != nil {
				t.Fatal(err)
			}
			offsets[w] = qs.Nested.Offset
		}
	}
	if len(offsets) != 14 {
		t.Fatalf("%d offsets", len(offsets))
	}
	opts := DefaultOptions()
	opts.Offsets = offsets
	out, _ := quantizeDir(t, filepath.Join(fx, "peft", "tiny"), opts)
	if !sameFile(t, filepath.Join(out, "model.safetensors"), filepath.Join(fx, "bnb", "tiny-nf4", "model.safetensors")) {
		t.Fatal("with the fixture's offsets, model.safetensors differs")
	}

	// A shifted offset changes only what it explains: the JSON, the absmax
	// codes and the nested absmax of the weights it applies to.
	w := "model.layers.0.self_attn.q_proj.weight"
	opts.Offsets = map[string]float32{}
	for k, v := range offsets {
		opts.Offsets[k] = v
	}
	opts.Offsets[w] = math.Nextafter32(offsets[w], 1)
	out, _ = quantizeDir(t, filepath.Join(fx, "peft", "tiny"), opts)
	got := readST(t, filepath.Join(out, "model.safetensors"))
	var differ []string
	for _, n := range golden.names() {
		if !bytes.Equal(got.data(t, n), golden.data(t, n)) {
			differ = append(differ, n)
		}
	}
	for _, n := range differ {
		if wn, suffix, ok := nf4.SplitStateKey(n); !ok || wn != w || suffix == nf4.SuffixQuantMap || suffix == nf4.SuffixNestedQuantMap {
			t.Errorf("%s differs, not explained by the offset of %s", n, w)
		}
	}
	if !slices.Contains(differ, w+nf4.SuffixQuantStateNF4) {
		t.Errorf("the shifted offset did not reach the JSON (differing: %v)", differ)
	}
}

// TestGoldenDequantize: --dequantize of the fixtures (and of our own
// output) reproduces their dequantized.safetensors bit for bit, carries the
// other tensors unchanged and drops quantization_config.
func TestGoldenDequantize(t *testing.T) {
	fx := fixtures(t)
	tiny := readST(t, filepath.Join(fx, "peft", "tiny", "model.safetensors"))
	for _, tc := range goldenCases {
		t.Run(tc.dir, func(t *testing.T) {
			opts := DefaultOptions()
			opts.DoubleQuant = tc.dq
			ours, _ := quantizeDir(t, filepath.Join(fx, "peft", "tiny"), opts)
			deq := readST(t, filepath.Join(fx, "bnb", tc.dir, "dequantized.safetensors"))
			for _, in := range []string{filepath.Join(fx, "bnb", tc.dir), ours} {
				out, rep := dequantizeDir(t, in, Options{})
				got := readST(t, filepath.Join(out, "model.safetensors"))
				if !slices.Equal(sorted(got.names()), sorted(tiny.names())) {
					t.Fatalf("%s: tensors %v", in, got.names())
				}
				for _, n := range tiny.names() {
					want := tiny
					if _, ok := deq.info(n); ok {
						want = deq
					}
					gi, _ := got.info(n)
					wi, _ := want.info(n)
					if gi.DType != wi.DType || !slices.Equal(gi.Shape, wi.Shape) || !bytes.Equal(got.data(t, n), want.data(t, n)) {
						t.Errorf("%s: %s differs (%s %v vs %s %v)", in, n, gi.DType, gi.Shape, wi.DType, wi.Shape)
					}
				}
				var cfg, want map[string]any
				json.Unmarshal(readFile(t, filepath.Join(out, "config.json")), &cfg)
				json.Unmarshal(readFile(t, filepath.Join(fx, "peft", "tiny", "config.json")), &want)
				if !reflect.DeepEqual(cfg, want) {
					t.Errorf("%s: config.json %v, want %v", in, cfg, want)
				}
				if rep.Quantized.Tensors != 14 || rep.QuantType != "nf4" || rep.DoubleQuant != tc.dq || rep.Blocksize != 64 {
					t.Errorf("%s: report %+v", in, rep)
				}
			}
		})
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestGoldenOutputs: a streamed input (stdin, or a single self-describing
// file) and a single-file output give the same tensors as the folder.
func TestGoldenOutputs(t *testing.T) {
	fx := fixtures(t)
	golden := filepath.Join(fx, "bnb", "tiny-nf4", "model.safetensors")
	raw := readFile(t, filepath.Join(fx, "peft", "tiny", "model.safetensors"))

	// stdin: the bare model file carries no config.json.
	src, err := checkpoint.Open("-", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dir := t.TempDir()
	out := filepath.Join(dir, "fromstream")
	rep, err := Quantize(context.Background(), src, out, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if !sameFile(t, filepath.Join(out, "model.safetensors"), golden) {
		t.Error("stream input: model.safetensors differs")
	}
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "config.json") {
		t.Errorf("warnings %q", rep.Warnings)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("spool left behind: %v", entries)
	}

	// A single file carries config.json in its metadata; quantizing it
	// back into a folder gives the golden files.
	one := filepath.Join(dir, "one.safetensors")
	if _, err := Quantize(context.Background(), open(t, filepath.Join(fx, "peft", "tiny")), one, DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	f := readST(t, one)
	g := readST(t, golden)
	for _, n := range g.names() {
		if !bytes.Equal(f.data(t, n), g.data(t, n)) {
			t.Errorf("single file: %s differs", n)
		}
	}
	md := f.set.Files[0].Header.Metadata
	if md["format"] != "pt" || md[checkpoint.FileMetadataPrefix+"config.json"] != string(readFile(t, filepath.Join(fx, "bnb", "tiny-nf4", "config.json"))) {
		t.Errorf("single file metadata %v", md)
	}
	// Dequantize from the single file, then from a stream of it.
	back, _ := dequantizeDir(t, one, Options{})
	src2, err := checkpoint.Open("-", bytes.NewReader(readFile(t, one)))
	if err != nil {
		t.Fatal(err)
	}
	defer src2.Close()
	back2 := filepath.Join(t.TempDir(), "back")
	if _, err := Dequantize(context.Background(), src2, back2, Options{}); err != nil {
		t.Fatal(err)
	}
	if !sameFile(t, filepath.Join(back, "model.safetensors"), filepath.Join(back2, "model.safetensors")) ||
		!sameFile(t, filepath.Join(back, "config.json"), filepath.Join(back2, "config.json")) {
		t.Error("dequantizing a stream differs from dequantizing the file")
	}
}
