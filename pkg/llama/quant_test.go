package llama

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// rawGetter serves the raw tensors of f, for nf4.ParseModule.
func rawGetter(t testing.TB, f *safetensors.File) func(string) (nf4.Tensor, bool) {
	return func(name string) (nf4.Tensor, bool) {
		info, ok := f.Info(name)
		if !ok {
			return nf4.Tensor{}, false
		}
		data, err := f.Data(name)
		if err != nil {
			t.Fatal(err)
		}
		return nf4.Tensor{DType: info.DType, Shape: info.Shape, Data: data}, true
	}
}

// overlay serves name from first when it has it, else from second.
func overlay(first, second Loader) Loader {
	return func(name string) ([]float32, []int, error) {
		d, s, err := first(name)
		if errors.Is(err, ErrNotFound) {
			return second(name)
		}
		return d, s, err
	}
}

// countingBackend tallies the bytes allocated and the lm_head GEMMs.
type countingBackend struct {
	*cpu.Backend
	bytes      int
	vocab      int
	headRows   int // rows of lm_head GEMMs (logits and their gradient)
	dequantize int
}

func (c *countingBackend) Alloc(dt compute.DType, n int) (compute.Buffer, error) {
	c.bytes += n * dt.Size()
	return c.Backend.Alloc(dt, n)
}

func (c *countingBackend) Gemm(p compute.Gemm, a, b, out compute.Buffer) {
	if (p.N == c.vocab || p.K == c.vocab) && c.vocab > 0 {
		c.headRows += p.M
	}
	c.Backend.Gemm(p, a, b, out)
}

func (c *countingBackend) Dequantize4(dst compute.Buffer, q compute.Quant4) {
	c.dequantize++
	c.Backend.Dequantize4(dst, q)
}

// qloraPair returns the tiny model built from a bnb fixture (4-bit
// projections) and built from its dequantized weights.
func qloraPair(t *testing.T, dir string, opt Options, be func() compute.Backend) (q, dense *Model) {
	fx := fixtures(t)
	mf := openST(t, filepath.Join(fx, "bnb", dir, "model.safetensors"))
	df := openST(t, filepath.Join(fx, "bnb", dir, "dequantized.safetensors"))
	qopt := opt
	qopt.Quantized = NF4Loader(rawGetter(t, mf))
	q, err := New(be(), tinyConfig(), stLoader(mf, ""), qopt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	dense, err = New(be(), tinyConfig(), overlay(stLoader(df, ""), stLoader(mf, "")), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dense.Close)
	return q, dense
}

// sameStep runs one ForwardBackward of b on q and dense and requires the
// same loss and gradients, bit for bit.
func sameStep(t *testing.T, q, dense *Model, b Batch, st Step) {
	t.Helper()
	sq, _, err := q.ForwardBackward(b, st)
	if err != nil {
		t.Fatal(err)
	}
	sd, _, err := dense.ForwardBackward(b, st)
	if err != nil {
		t.Fatal(err)
	}
	if sq != sd {
		t.Errorf("loss sum %v, dense %v", sq, sd)
	}
	pd := dense.Params()
	for i, p := range q.Params() {
		sameBits(t, p.Name, download(t, q.be, p.Grad), download(t, dense.be, pd[i].Grad))
	}
}

func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: [%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// TestQLoRA requires a model holding the NF4 fixtures' projections in
// 4-bit form to compute exactly what the model built from bitsandbytes'
// dequantized weights computes: logits, losses and adapter gradients.
func TestQLoRA(t *testing.T) {
	_, b := loadGolden(t, fixtures(t)+"/peft/train/plain")
	for _, dir := range []string{"tiny-nf4", "tiny-nf4-nodq"} {
		for _, kind := range []string{"mixed", "ia3"} {
			for _, ckpt := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/checkpoint=%v", dir, kind, ckpt), func(t *testing.T) {
					q, dense := qloraPair(t, dir, Options{GradCheckpoint: ckpt}, newCPU)
					got, want := make([]float32, b.Rows*b.Seq*256), make([]float32, b.Rows*b.Seq*256)
					if err := q.Logits(b, got); err != nil {
						t.Fatal(err)
					}
					if err := dense.Logits(b, want); err != nil {
						t.Fatal(err)
					}
					sameBits(t, "base logits", got, want)
					for _, m := range []*Model{q, dense} {
						// Random DoRA magnitudes are replaced by PEFT's init
						// from ‖W + s·B·A‖, which reads the dequantized weight.
						load := randomAdapters(5)
						noMag := func(name string) ([]float32, []int, error) {
							if strings.HasSuffix(name, SuffixMagnitude) {
								return nil, nil, fmt.Errorf("%s: %w", name, ErrNotFound)
							}
							return load(name)
						}
						if err := m.AddAdapters(gradSpecs(kind), noMag); err != nil {
							t.Fatal(err)
						}
						m.ZeroGrad()
					}
					sq, nq, err := q.ForwardBackward(b, Step{Seed: 9})
					if err != nil {
						t.Fatal(err)
					}
					sd, nd, err := dense.ForwardBackward(b, Step{Seed: 9})
					if err != nil {
						t.Fatal(err)
					}
					if sq != sd || nq != nd {
						t.Errorf("loss sum %v over %d targets, dense %v over %d", sq, nq, sd, nd)
					}
					pd := dense.Params()
					for i, p := range q.Params() {
						sameBits(t, p.Name+" value", download(t, q.be, p.Value), download(t, dense.be, pd[i].Value))
						sameBits(t, p.Name+" gradient", download(t, q.be, p.Grad), download(t, dense.be, pd[i].Grad))
					}
					if err := q.Logits(b, got); err != nil {
						t.Fatal(err)
					}
					if err := dense.Logits(b, want); err != nil {
						t.Fatal(err)
					}
					sameBits(t, "adapted logits", got, want)
				})
			}
		}
	}
}

// TestQLoRAResident checks that a 4-bit projection is held in its 4-bit
// form only: the model allocates the packed codes and scales plus one
// scratch buffer instead of the dense weights, and dequantizes once per use.
func TestQLoRAResident(t *testing.T) {
	var qb, db *countingBackend
	q, dense := qloraPair(t, "tiny-nf4", Options{}, func() compute.Backend {
		c := &countingBackend{Backend: cpu.New(0)}
		if qb == nil {
			qb = c
		} else {
			db = c
		}
		return c
	})
	_ = dense
	c := tinyConfig()
	dq, quant, largest := 0, 0, 0
	for _, tg := range allTargets {
		out, in := projShape(c, tg)
		n := out * in
		dq += c.Layers * 4 * n
		nb := nf4.NumBlocks(n, 64)
		// packed + u8 absmax + nested absmax + the two maps
		quant += c.Layers * (nf4.PackedLen(n) + nb + 4*nf4.NumBlocks(nb, 256) + 4*16 + 4*256)
		largest = max(largest, n)
	}
	if want := db.bytes - dq + quant + 4*largest; qb.bytes != want {
		t.Errorf("4-bit model allocates %d bytes, want %d (dense %d)", qb.bytes, want, db.bytes)
	}
	t.Logf("allocated: dense %d bytes, 4-bit %d bytes", db.bytes, qb.bytes)
	_, b := loadGolden(t, fixtures(t)+"/peft/train/plain")
	if _, _, err := q.Loss(b); err != nil {
		t.Fatal(err)
	}
	if qb.dequantize != c.Layers*7 {
		t.Errorf("an evaluation forward dequantized %d times, want %d", qb.dequantize, c.Layers*7)
	}
}

// TestQLoRADTypes quantizes the tiny model's projections as bfloat16 and
// float16 weights: the 4-bit model must match a dense model holding
// bitsandbytes' dequantize_4bit output in that dtype.
func TestQLoRADTypes(t *testing.T) {
	fx := fixtures(t)
	f := openST(t, filepath.Join(fx, "peft", "tiny", "model.safetensors"))
	plain := stLoader(f, "")
	_, b := loadGolden(t, fx+"/peft/train/plain")
	for _, c := range []struct {
		dt  dtype.DType
		opt Options
	}{
		{dtype.BF16, Options{WeightDType: compute.BF16}},
		{dtype.BF16, Options{}}, // bf16 weights decode to bf16 whatever WeightDType
		{dtype.F16, Options{}},
		{dtype.F32, Options{WeightDType: compute.BF16}},
	} {
		t.Run(fmt.Sprintf("%s/%v", c.dt, c.opt.WeightDType), func(t *testing.T) {
			quant := map[string]*nf4.Quantized{}
			qload := func(name string) (*nf4.QuantState, []byte, bool, error) {
				if !strings.Contains(name, "_proj.") || strings.Contains(name, "layers.1.self_attn.o_proj") {
					return nil, nil, false, nil // one projection stays dense
				}
				w, shape, err := plain(name)
				if err != nil {
					return nil, nil, false, err
				}
				opts := nf4.DefaultOptions()
				opts.DType = c.dt
				opts.Type = nf4.NF4
				if strings.Contains(name, "mlp") {
					opts.Type, opts.DoubleQuant, opts.Blocksize = nf4.FP4, false, 128
				}
				q, err := nf4.QuantizeTensor(w, []int64{int64(shape[0]), int64(shape[1])}, opts)
				if err != nil {
					return nil, nil, false, err
				}
				quant[name] = q
				return &q.State, q.Packed, true, nil
			}
			opt := c.opt
			opt.Quantized = qload
			qm, err := New(newCPU(), tinyConfig(), plain, opt)
			if err != nil {
				t.Fatal(err)
			}
			defer qm.Close()
			deq := func(name string) ([]float32, []int, error) {
				q, ok := quant[name]
				if !ok {
					return plain(name)
				}
				raw := make([]byte, q.State.NumElements()*int64(c.dt.Size()))
				if err := q.State.DequantizeTo(raw, q.Packed); err != nil {
					return nil, nil, err
				}
				v := make([]float32, q.State.NumElements())
				if err := dtype.ToF32(v, raw, c.dt); err != nil {
					return nil, nil, err
				}
				return v, []int{int(q.State.Shape[0]), int(q.State.Shape[1])}, nil
			}
			// The dense model holds the decoded values in its own storage
			// (f32 holds bf16 and f16 values exactly).
			dm, err := New(newCPU(), tinyConfig(), deq, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			defer dm.Close()
			for _, m := range []*Model{qm, dm} {
				if err := m.AddAdapters(gradSpecs("mlp-only-below"), randomAdapters(3)); err != nil {
					t.Fatal(err)
				}
				m.ZeroGrad()
			}
			sameStep(t, qm, dm, b, Step{})
		})
	}
}

// TestQLoRAErrors checks that bad 4-bit states are refused.
func TestQLoRAErrors(t *testing.T) {
	fx := fixtures(t)
	mf := openST(t, filepath.Join(fx, "bnb", "tiny-nf4", "model.safetensors"))
	good := NF4Loader(rawGetter(t, mf))
	for _, c := range []struct {
		name string
		edit func(qs *nf4.QuantState, packed []byte) (*nf4.QuantState, []byte)
		want error
	}{
		{"shape", func(qs *nf4.QuantState, p []byte) (*nf4.QuantState, []byte) {
			q := *qs
			q.Shape = []int64{qs.Shape[1], qs.Shape[0]}
			return &q, p
		}, ErrWeight},
		{"packed", func(qs *nf4.QuantState, p []byte) (*nf4.QuantState, []byte) { return qs, p[1:] }, ErrWeight},
		{"state", func(qs *nf4.QuantState, p []byte) (*nf4.QuantState, []byte) {
			q := *qs
			q.Blocksize = 48
			return &q, p
		}, nf4.ErrBlocksize},
	} {
		t.Run(c.name, func(t *testing.T) {
			ql := func(name string) (*nf4.QuantState, []byte, bool, error) {
				qs, p, ok, err := good(name)
				if ok && strings.Contains(name, "layers.1.mlp.up_proj") {
					qs, p = c.edit(qs, p)
				}
				return qs, p, ok, err
			}
			_, err := New(newCPU(), tinyConfig(), stLoader(mf, ""), Options{Quantized: ql})
			if !errors.Is(err, c.want) || !strings.Contains(fmt.Sprint(err), "layers.1.mlp.up_proj") {
				t.Errorf("error %v, want %v naming the tensor", err, c.want)
			}
		})
	}
	// A damaged state tensor is reported by NF4Loader.
	get := rawGetter(t, mf)
	broken := func(name string) (nf4.Tensor, bool) {
		tt, ok := get(name)
		if strings.HasSuffix(name, "layers.0.self_attn.k_proj.weight.nested_absmax") {
			tt.Data = tt.Data[:0]
			tt.Shape = []int64{0}
		}
		return tt, ok
	}
	if _, err := New(newCPU(), tinyConfig(), stLoader(mf, ""), Options{Quantized: NF4Loader(broken)}); !errors.Is(err, nf4.ErrState) {
		t.Errorf("damaged nested_absmax: %v", err)
	}
}
