package computetest_test

import (
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/computetest"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
)

// recorder is a testing.TB that records failures instead of reporting them.
type recorder struct {
	testing.TB
	failed bool
}

type fatal struct{}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true; panic(fatal{}) }
func (r *recorder) Logf(string, ...any)   {}
func (r *recorder) Fatal(...any)          { r.failed = true; panic(fatal{}) }
func (r *recorder) Error(...any)          { r.failed = true }

func failsOn(t *testing.T, be compute.Backend, c computetest.Case) (failed bool) {
	r := &recorder{TB: t}
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(fatal); !ok {
				panic(v)
			}
		}
		failed = r.failed
	}()
	computetest.RunCase(r, be, c)
	return r.failed
}

// faulty wraps the CPU backend and perturbs the output of one operation.
type faulty struct {
	*cpu.Backend
	op string
}

func (f *faulty) bump(b compute.Buffer, i int, by float32) {
	if b == nil || i < 0 || b.Len() <= i {
		return
	}
	if b.DType() == compute.BF16 {
		by = 0.5 // well above the mixed-precision tolerances
	}
	x := make([]float32, b.Len())
	if err := f.Backend.Download(x, b); err != nil {
		panic(err)
	}
	x[i] += by
	f.Backend.Upload(b, x)
}

func (f *faulty) Gemm(p compute.Gemm, a, b, c compute.Buffer) {
	f.Backend.Gemm(p, a, b, c)
	if f.op == "gemm" {
		f.bump(c, c.Len()-1, 1e-3)
	}
}

func (f *faulty) RMSNormBackward(dx, dy, x, w, rstd compute.Buffer, rows, dim int) {
	f.Backend.RMSNormBackward(dx, dy, x, w, rstd, rows, dim)
	if f.op == "rmsnorm_backward" {
		f.bump(dx, 3, 1e-3)
	}
}

func (f *faulty) AttentionBackward(p compute.Attention, dq, dk, dv, dout, q, k, v, out, lse compute.Buffer) {
	f.Backend.AttentionBackward(p, dq, dk, dv, dout, q, k, v, out, lse)
	if f.op == "attention_backward" {
		f.bump(dk, 5, 1e-3)
	}
}

func (f *faulty) Attention(p compute.Attention, out, lse, q, k, v compute.Buffer) {
	f.Backend.Attention(p, out, lse, q, k, v)
	if f.op == "attention" {
		f.bump(lse, 0, 1e-4)
		if out.DType() == compute.BF16 {
			f.bump(out, 1, 0)
		}
	}
}

func (f *faulty) CrossEntropy(loss, dlogits, logits, targets compute.Buffer, rows, vocab int, gradScale, softCap float32) {
	f.Backend.CrossEntropy(loss, dlogits, logits, targets, rows, vocab, gradScale, softCap)
	if f.op == "cross_entropy" {
		f.bump(dlogits, 7, 1e-4)
	}
}

func (f *faulty) DoRABackward(dbase, dlora, dmag, dy, comb, mag, norm compute.Buffer, rows, cols int, scale float32) {
	f.Backend.DoRABackward(dbase, dlora, dmag, dy, comb, mag, norm, rows, cols, scale)
	if f.op == "dora_backward" {
		f.bump(dmag, 2, 1e-3)
	}
}

func (f *faulty) AdamWStep(h compute.AdamW, p, g, m, v compute.Buffer) {
	f.Backend.AdamWStep(h, p, g, m, v)
	if f.op == "adamw" {
		f.bump(v, 1, 1e-6)
	}
}

func (f *faulty) DropoutMask(mask compute.Buffer, p float32, seed, stream uint64) {
	f.Backend.DropoutMask(mask, p, seed, stream)
	if f.op == "dropout_mask" {
		f.bump(mask, 100, 0.5)
	}
}

func (f *faulty) Rope(p compute.Rope, x, pos, cos, sin compute.Buffer) {
	f.Backend.Rope(p, x, pos, cos, sin)
	if f.op == "rope" {
		f.bump(x, 9, 1e-4)
	}
}

func (f *faulty) GLUBackward(act compute.Activation, dgate, dup, dout, gate, up compute.Buffer) {
	f.Backend.GLUBackward(act, dgate, dup, dout, gate, up)
	if f.op == "glu" {
		f.bump(dgate, 6, 1e-3)
	}
}

func (f *faulty) GLU(act compute.Activation, out, gate, up compute.Buffer) {
	f.Backend.GLU(act, out, gate, up)
	if f.op == "glu" {
		f.bump(out, 6, 1e-3)
	}
}

func (f *faulty) SoftCap(x compute.Buffer, c float32) {
	f.Backend.SoftCap(x, c)
	if f.op == "softcap" {
		f.bump(x, 2, 1e-3)
	}
}

func (f *faulty) ScaleCols(dst, x, v compute.Buffer, rows, cols int, accumulate bool) {
	f.Backend.ScaleCols(dst, x, v, rows, cols, accumulate)
	if f.op == "scale_cols" {
		f.bump(dst, 4, 1e-4)
	}
}

func (f *faulty) Dequantize4(dst compute.Buffer, q compute.Quant4) {
	f.Backend.Dequantize4(dst, q)
	if f.op == "dequant4" {
		x := make([]float32, dst.Len())
		if err := f.Backend.Download(x, dst); err != nil {
			panic(err)
		}
		x[len(x)-1] = x[len(x)-1]*1.02 + 1e-3 // visible in bf16 too
		f.Backend.Upload(dst, x)
	}
}

func (f *faulty) Convert(dst, src compute.Buffer) {
	f.Backend.Convert(dst, src)
	if f.op == "convert" {
		f.bump(dst, 2, 0.5)
	}
}

func (f *faulty) ColDot(out, a, b compute.Buffer, rows, cols int) {
	f.Backend.ColDot(out, a, b, rows, cols)
	if f.op == "col_dot" {
		f.bump(out, 4, 1e-3)
	}
}

// TestSuiteCatchesFaults checks that each perturbed operation fails its
// cases and that the unperturbed backend passes them.
func TestSuiteCatchesFaults(t *testing.T) {
	for _, op := range []string{"gemm", "rmsnorm_backward", "attention", "attention_backward", "cross_entropy",
		"dora_backward", "adamw", "dropout_mask", "rope", "scale_cols", "col_dot", "dequant4", "convert", "glu", "softcap"} {
		n := 0
		for _, c := range computetest.Cases {
			if c.Name != op && !strings.HasPrefix(c.Name, op+"_") {
				continue
			}
			if op == "attention" && strings.HasPrefix(c.Name, "attention_backward") ||
				strings.HasPrefix(c.Name, "gemm_0x") { // nothing to perturb
				continue
			}
			n++
			if failsOn(t, cpu.New(2), c) {
				t.Errorf("%s: fails on the reference backend", c.Name)
			}
			if !failsOn(t, &faulty{Backend: cpu.New(2), op: op}, c) {
				t.Errorf("%s: a perturbed %s passes", c.Name, op)
			}
		}
		if n == 0 {
			t.Errorf("no case for %s", op)
		}
	}
}
