package nf4

import (
	"bytes"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/dtype"
)

// quantizedWeights returns the names of the packed weights in a bnb fixture.
func quantizedWeights(f *stFile) []string {
	var ws []string
	for _, n := range f.names {
		if w, s, ok := SplitStateKey(n); ok && strings.HasPrefix(s, ".quant_state.") {
			ws = append(ws, w)
		}
	}
	slices.Sort(ws)
	return ws
}

// moduleKeys returns every key of the fixture belonging to weight w.
func moduleKeys(f *stFile, w string) []string {
	var ks []string
	for _, n := range f.names {
		if n == w {
			ks = append(ks, n)
		} else if ww, _, ok := SplitStateKey(n); ok && ww == w {
			ks = append(ks, n)
		}
	}
	slices.Sort(ks)
	return ks
}

func TestGoldenFixtures(t *testing.T) {
	fx := fixtures(t)
	src := readST(t, filepath.Join(fx, "peft", "tiny", "model.safetensors"))
	for _, tc := range []struct {
		dir string
		dq  bool
	}{{"tiny-nf4", true}, {"tiny-nf4-nodq", false}} {
		t.Run(tc.dir, func(t *testing.T) {
			golden := readST(t, filepath.Join(fx, "bnb", tc.dir, "model.safetensors"))
			ws := quantizedWeights(golden)
			if len(ws) != 14 {
				t.Fatalf("fixture has %d quantized weights, want 14", len(ws))
			}
			// Selection (spec 5.5) agrees with the fixture: exactly these weights.
			sel, err := NewSelector(nil)
			if err != nil {
				t.Fatal(err)
			}
			var selected []string
			for _, n := range src.names {
				tt := src.tensors[n]
				if sel.Quantize(n, tt.DType, tt.Shape) {
					selected = append(selected, n)
				}
			}
			slices.Sort(selected)
			if !slices.Equal(selected, ws) {
				t.Errorf("selector picks %v, fixture quantized %v", selected, ws)
			}
			// Unquantized tensors pass through unchanged.
			for _, n := range src.names {
				if slices.Contains(ws, n) {
					continue
				}
				g, ok := golden.tensors[n]
				if !ok || !bytes.Equal(g.Data, src.tensors[n].Data) {
					t.Errorf("%s: not carried unchanged", n)
				}
			}

			var offDiffs, byteDiffs, ulps int
			for _, w := range ws {
				x := src.f32(t, w)
				shape := src.tensors[w].Shape
				opts := DefaultOptions()
				opts.DoubleQuant = tc.dq
				want := moduleKeys(golden, w)

				var goldenOff float32
				if tc.dq {
					qs, _, err := ParseModule(w, golden.get)
					if err != nil {
						t.Fatal(err)
					}
					goldenOff = qs.Nested.Offset
					opts.Offset = &goldenOff
				}
				// With the fixture's offset (or without double quantization)
				// every byte of every key matches.
				q, err := QuantizeTensor(x, shape, opts)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, nt := range q.Tensors(w) {
					got = append(got, nt.Name)
					g := golden.tensors[nt.Name]
					if g.DType != nt.DType || !slices.Equal(g.Shape, nt.Shape) || !bytes.Equal(g.Data, nt.Data) {
						t.Errorf("%s: got %s %v (%d bytes), golden %s %v (%d bytes); data equal %v",
							nt.Name, nt.DType, nt.Shape, len(nt.Data), g.DType, g.Shape, len(g.Data), bytes.Equal(g.Data, nt.Data))
						if strings.Contains(nt.Name, "quant_state") {
							t.Logf("got    %s\ngolden %s", nt.Data, g.Data)
						}
					}
				}
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("%s: keys %v, golden %v", w, got, want)
				}
				if !tc.dq {
					continue
				}
				// With our own offset (MeanOffset, torch's summation order) the
				// offset is bit-identical, so again every byte matches. Should it
				// ever differ, only offset-dependent bytes may: the JSON's
				// nested_offset, the absmax codes and the nested absmax.
				opts.Offset = nil
				q2, err := QuantizeTensor(x, shape, opts)
				if err != nil {
					t.Fatal(err)
				}
				off := q2.State.Nested.Offset
				if off != goldenOff {
					offDiffs++
					d := int(int32(math.Float32bits(off)) - int32(math.Float32bits(goldenOff)))
					ulps = max(ulps, max(d, -d))
				}
				for _, nt := range q2.Tensors(w) {
					g := golden.tensors[nt.Name]
					if bytes.Equal(g.Data, nt.Data) {
						continue
					}
					switch {
					case off != goldenOff && len(g.Data) == len(nt.Data) &&
						(strings.HasSuffix(nt.Name, SuffixAbsmax) || strings.HasSuffix(nt.Name, SuffixNestedAbsmax)):
						for i := range g.Data {
							if g.Data[i] != nt.Data[i] {
								byteDiffs++
							}
						}
					case off != goldenOff && strings.HasSuffix(nt.Name, SuffixQuantStateNF4):
					default:
						t.Errorf("%s: differs, not explained by the offset", nt.Name)
					}
				}
			}
			if tc.dq {
				t.Logf("own MeanOffset: %d of %d offsets differ from the fixture (max %d ulp); %d absmax/nested_absmax bytes differ",
					offDiffs, len(ws), ulps, byteDiffs)
				if offDiffs != 0 {
					t.Errorf("MeanOffset no longer reproduces torch's mean on the fixtures")
				}
			}
		})
	}
}

func TestGoldenDequantize(t *testing.T) {
	fx := fixtures(t)
	for _, dir := range []string{"tiny-nf4", "tiny-nf4-nodq"} {
		t.Run(dir, func(t *testing.T) {
			golden := readST(t, filepath.Join(fx, "bnb", dir, "model.safetensors"))
			deq := readST(t, filepath.Join(fx, "bnb", dir, "dequantized.safetensors"))
			ws := quantizedWeights(golden)
			if len(ws) != len(deq.names) {
				t.Fatalf("%d weights, %d dequantized tensors", len(ws), len(deq.names))
			}
			for _, w := range ws {
				qs, packed, err := ParseModule(w, golden.get)
				if err != nil {
					t.Fatal(err)
				}
				if qs.Type != NF4 || qs.Blocksize != 64 || qs.DType != dtype.F32 || (qs.Nested != nil) != (dir == "tiny-nf4") {
					t.Errorf("%s: state %+v", w, qs)
				}
				if !slices.Equal(qs.Shape, deq.tensors[w].Shape) {
					t.Errorf("%s: shape %v, want %v", w, qs.Shape, deq.tensors[w].Shape)
				}
				got := make([]float32, qs.NumElements())
				if err := qs.Dequantize(got, packed); err != nil {
					t.Fatal(err)
				}
				if want := deq.f32(t, w); !slices.Equal(f32bits(got), f32bits(want)) {
					t.Errorf("%s: dequantized values differ", w)
				}
				// Re-serializing the parsed state gives the file's bytes back.
				q := &Quantized{State: *qs, Packed: packed}
				for _, nt := range q.Tensors(w) {
					g := golden.tensors[nt.Name]
					if g.DType != nt.DType || !slices.Equal(g.Shape, nt.Shape) || !bytes.Equal(g.Data, nt.Data) {
						t.Errorf("%s: round trip differs", nt.Name)
					}
				}
			}
		})
	}
}

func TestGoldenConfig(t *testing.T) {
	fx := fixtures(t)
	for _, tc := range []struct {
		dir string
		dq  bool
	}{{"tiny-nf4", true}, {"tiny-nf4-nodq", false}} {
		raw := readFile(t, filepath.Join(fx, "bnb", tc.dir, "config.json"))
		c := QuantizationConfig{QuantType: NF4, DoubleQuant: tc.dq}
		// Python's json.dump(indent=2) of the whole config nests the block at
		// one level of indentation.
		b, err := jsonMarshalIndent(map[string]any{"quantization_config": c})
		if err != nil {
			t.Fatal(err)
		}
		block := strings.TrimSuffix(strings.TrimPrefix(string(b), "{\n"), "\n}")
		if !strings.HasSuffix(string(raw), block+"\n}") {
			t.Errorf("%s: config block\n%s\nnot found at the end of\n%s", tc.dir, block, raw)
		}
		var whole struct {
			Q rawJSON `json:"quantization_config"`
		}
		if err := jsonUnmarshal(raw, &whole); err != nil {
			t.Fatal(err)
		}
		pc, err := ParseQuantizationConfig(whole.Q)
		if err != nil {
			t.Fatal(err)
		}
		if pc.QuantType != NF4 || pc.DoubleQuant != tc.dq || pc.SkipModules != nil || pc.ComputeDType != "bfloat16" || pc.QuantStorage != "uint8" {
			t.Errorf("%s: parsed %+v", tc.dir, pc)
		}
	}
}
