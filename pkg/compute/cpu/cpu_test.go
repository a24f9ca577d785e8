package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lorakit/lorakit/internal/kernels/gemm"
	"github.com/lorakit/lorakit/internal/kernels/ktest"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/computetest"
	"github.com/lorakit/lorakit/pkg/nf4"
)

func TestConformance(t *testing.T) {
	for _, threads := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) {
			computetest.Run(t, New(threads))
		})
	}
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(2*r.Float64() - 1)
	}
	return s
}

// TestDeterministic runs every operation with 1..5 threads and requires
// bit-identical results.
func TestDeterministic(t *testing.T) {
	run := func(threads int) [][]float32 {
		be := New(threads)
		r := rand.New(rand.NewPCG(3, 4))
		var outs [][]float32
		keep := func(b compute.Buffer) {
			f := make([]float32, b.Len())
			if err := be.Download(f, b); err != nil {
				t.Fatal(err)
			}
			outs = append(outs, f)
		}
		buf := func(n int) compute.Buffer { return NewBuffer(randSlice(r, n)) }
		M, N, K := 67, 301, 530
		c := buf(M * N)
		be.Gemm(compute.Gemm{M: M, N: N, K: K, Alpha: 1, Beta: 1}, buf(M*K), buf(K*N), c)
		keep(c)
		c2 := buf(M * N)
		be.Gemm(compute.Gemm{M: M, N: N, K: K, Alpha: 1, TransA: true, TransB: true}, buf(M*K), buf(K*N), c2)
		keep(c2)
		// Causal attention, packed (documents of 13, 20 and 7 tokens in
		// each sequence), and with a prefix of 5 keys and a window.
		attend := func(p compute.Attention) {
			nq, nk := 2*40*64, 2*p.Keys()*32
			q, k, v, o, l := buf(nq), buf(nk), buf(nk), buf(nq), buf(2*4*40)
			be.Attention(p, o, l, q, k, v)
			dq, dk, dv := buf(nq), buf(nk), buf(nk)
			be.AttentionBackward(p, dq, dk, dv, buf(nq), q, k, v, o, l)
			for _, x := range []compute.Buffer{o, l, dq, dk, dv} {
				keep(x)
			}
		}
		p := compute.Attention{Batch: 2, Seq: 40, Heads: 4, KVHeads: 2, HeadDim: 16, Scale: 0.25}
		attend(p)
		segs := make([]int32, 2*40)
		for i := range segs {
			segs[i] = int32(i/40*3 + min(2, (i%40+7)/20))
		}
		sb, _ := be.Alloc(compute.I32, len(segs))
		be.UploadInt32(sb, segs)
		pp := p
		pp.Segments = sb
		attend(pp)
		pf := p
		pf.Prefix, pf.Window = 5, 9
		attend(pf)
		sw := 100003
		g, u, so := buf(sw), buf(sw), buf(sw)
		for _, act := range []compute.Activation{compute.SiLU, compute.GELUTanh} {
			be.GLU(act, so, g, u)
			keep(so)
			dg, du := buf(sw), buf(sw)
			be.GLUBackward(act, dg, du, buf(sw), g, u)
			keep(dg)
			keep(du)
		}
		ay := buf(sw)
		be.Axpy(ay, buf(sw), 0.3)
		keep(ay)
		wq, err := nf4.QuantizeTensor(randSlice(r, 70001), []int64{70001}, nf4.DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		dqo, _ := be.Alloc(compute.BF16, 70001)
		be.Dequantize4(dqo, upload4(t, be, &wq.State, wq.Packed))
		keep(dqo)
		rows, dim := 300, 128
		x, w, y, rs := buf(rows*dim), buf(dim), buf(rows*dim), buf(rows)
		be.RMSNorm(y, rs, x, w, rows, dim, 1e-5)
		keep(y)
		dx := buf(rows * dim)
		be.RMSNormBackward(dx, buf(rows*dim), x, w, rs, rows, dim)
		keep(dx)
		comb, dm := buf(rows*dim), buf(dim)
		mag, nrm := buf(dim), buf(dim)
		be.DoRABackward(buf(rows*dim), buf(rows*dim), dm, buf(rows*dim), comb, mag, nrm, rows, dim, 2)
		keep(dm)
		cd := buf(dim)
		be.ColDot(cd, buf(rows*dim), buf(rows*dim), rows, dim)
		keep(cd)
		nb := buf(1)
		be.Norm2(nb, buf(100000))
		keep(nb)
		lg := buf(50 * 1000)
		tg, _ := be.Alloc(compute.I32, 50)
		ids := make([]int32, 50)
		for i := range ids {
			ids[i] = int32(r.IntN(1000))
		}
		be.UploadInt32(tg, ids)
		ls := buf(50)
		lg2 := buf(50 * 1000)
		be.CrossEntropy(ls, lg, lg, tg, 50, 1000, 0.5, 0)
		keep(ls)
		keep(lg)
		ls2 := buf(50)
		be.CrossEntropy(ls2, lg2, lg2, tg, 50, 1000, 0.5, 30)
		keep(ls2)
		keep(lg2)
		return outs
	}
	ref := run(1)
	for threads := 2; threads <= 5; threads++ {
		got := run(threads)
		for i := range ref {
			for j := range ref[i] {
				if math.Float32bits(ref[i][j]) != math.Float32bits(got[i][j]) {
					t.Fatalf("threads=%d: output %d differs at %d: %v vs %v", threads, i, j, got[i][j], ref[i][j])
				}
			}
		}
	}
}

func TestBF16(t *testing.T) {
	for _, c := range []struct {
		f float32
		h uint16
	}{{1, 0x3f80}, {-2, 0xc000}, {1 + 1.0/256, 0x3f80}, {1 + 3.0/256, 0x3f82}, {float32(math.Inf(1)), 0x7f80}} {
		if h := toBF16(c.f); h != c.h {
			t.Errorf("toBF16(%v) = %#x, want %#x", c.f, h, c.h)
		}
		if f := fromBF16(c.h); c.f == float32(int(c.f)) && f != c.f {
			t.Errorf("fromBF16(%#x) = %v", c.h, f)
		}
	}
	if h := toBF16(float32(math.NaN())); h&0x7f80 != 0x7f80 || h&0x7f == 0 {
		t.Errorf("toBF16(NaN) = %#x", h)
	}
}

// benchGemm times one GEMM on one thread and reports GFLOP/s: the mean,
// the best rate over short chunks of calls (best-GFLOP/s: the machine may
// be shared) and that rate as a share of the core's FMA peak in the active
// tier.
func benchGemm(b *testing.B, m, n, k int, transB bool, dt compute.DType) {
	be := New(1)
	r := rand.New(rand.NewPCG(1, 2))
	a := NewBuffer(randSlice(r, m*k))
	var bb compute.Buffer = NewBuffer(randSlice(r, k*n))
	if dt == compute.BF16 {
		bb, _ = be.Alloc(compute.BF16, k*n)
		be.Upload(bb, randSlice(r, k*n))
	}
	c := NewBuffer(make([]float32, m*n))
	p := compute.Gemm{M: m, N: n, K: k, Alpha: 1, TransB: transB}
	flop := float64(2 * m * n * k)
	for b.Loop() {
		be.Gemm(p, a, bb, c)
	}
	b.ReportMetric(flop*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	best := ktest.BestRate(300*time.Millisecond, flop/1e9, func() { be.Gemm(p, a, bb, c) })
	b.ReportMetric(best, "best-GFLOP/s")
	if pk := ktest.PeakGFLOPS(gemm.Peak); pk > 0 {
		b.ReportMetric(100*best/pk, "%peak")
	}
}

// BenchmarkGemm covers the products of a LoRA training step of the 100M
// Llama shape at 256 tokens: projections forward (NT: X·Wᵀ), input
// gradients (NN: dY·W), the tied lm_head, bf16 weights, and a square case.
func BenchmarkGemm(b *testing.B) {
	for _, c := range []struct {
		m, n, k int
		transB  bool
		dt      compute.DType
	}{
		{256, 768, 768, true, compute.F32},
		{256, 2048, 768, true, compute.F32},
		{256, 768, 2048, true, compute.F32},
		{256, 768, 768, false, compute.F32},
		{256, 768, 2048, false, compute.F32},
		{256, 32000, 768, true, compute.F32},
		{256, 768, 32000, false, compute.F32},
		{256, 2048, 768, true, compute.BF16},
		{512, 512, 512, false, compute.F32},
	} {
		name := fmt.Sprintf("%dx%dx%d", c.m, c.n, c.k)
		if c.transB {
			name += "NT"
		} else {
			name += "NN"
		}
		if c.dt == compute.BF16 {
			name += "-bf16"
		}
		b.Run(name+"/"+gemm.Active().Name, func(b *testing.B) { benchGemm(b, c.m, c.n, c.k, c.transB, c.dt) })
	}
}
