// Package computetest is the conformance suite of compute.Backend.
//
// Every case runs an operation of the backend on small random inputs and
// compares the result with a float64 reference implementation of the forward
// operation (backward operations against central finite differences of it),
// within a stated tolerance relative to the largest reference magnitude. A
// backend package runs the whole table with
//
//	func TestConformance(t *testing.T) { computetest.Run(t, mybackend.New()) }
package computetest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/lorakit/lorakit/pkg/compute"
)

// Case is one conformance check.
type Case struct {
	Name string
	// Tol is the largest accepted |got − want| / max(1e-3, max|want|).
	Tol float64
	Run func(e *Env)
}

// Env is what a case works with: the backend, a seeded random source, and
// helpers that move float64 test data in and out of the backend.
type Env struct {
	T    testing.TB
	BE   compute.Backend
	Tol  float64
	rng  *rand.Rand
	bufs []compute.Buffer
}

// Run runs every case of Cases against be, each as a subtest.
func Run(t *testing.T, be compute.Backend) {
	for _, c := range Cases {
		t.Run(c.Name, func(t *testing.T) { RunCase(t, be, c) })
	}
}

// RunCase runs one case against be, reporting to tb.
func RunCase(tb testing.TB, be compute.Backend, c Case) {
	e := &Env{T: tb, BE: be, Tol: c.Tol, rng: rand.New(rand.NewPCG(1, uint64(len(c.Name))))}
	defer e.free()
	c.Run(e)
	if err := be.Sync(); err != nil {
		tb.Fatalf("sync: %v", err)
	}
}

func (e *Env) free() {
	for _, b := range e.bufs {
		e.BE.Free(b)
	}
}

// Rand returns n values uniform in [−scale, scale), rounded to float32.
func (e *Env) Rand(n int, scale float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = float64(float32((2*e.rng.Float64() - 1) * scale))
	}
	return x
}

// Alloc allocates a zeroed buffer freed at the end of the case.
func (e *Env) Alloc(dt compute.DType, n int) compute.Buffer {
	b, err := e.BE.Alloc(dt, n)
	if err != nil {
		e.T.Fatalf("alloc %v[%d]: %v", dt, n, err)
	}
	e.bufs = append(e.bufs, b)
	return b
}

// F32 uploads x as an F32 buffer.
func (e *Env) F32(x []float64) compute.Buffer {
	b := e.Alloc(compute.F32, len(x))
	e.BE.Upload(b, toF32(x))
	return b
}

// BF16 rounds x in place to bfloat16 values and uploads it as a BF16 buffer.
func (e *Env) BF16(x []float64) compute.Buffer {
	for i, v := range x {
		x[i] = roundBF16(v)
	}
	b := e.Alloc(compute.BF16, len(x))
	e.BE.Upload(b, toF32(x))
	return b
}

// I32 uploads x as an I32 buffer.
func (e *Env) I32(x []int32) compute.Buffer {
	b := e.Alloc(compute.I32, len(x))
	e.BE.UploadInt32(b, x)
	return b
}

// Get downloads b.
func (e *Env) Get(b compute.Buffer) []float64 {
	f := make([]float32, b.Len())
	if err := e.BE.Download(f, b); err != nil {
		e.T.Fatalf("download: %v", err)
	}
	x := make([]float64, len(f))
	for i, v := range f {
		x[i] = float64(v)
	}
	return x
}

// Check compares got with want at the case's tolerance.
func (e *Env) Check(name string, got, want []float64) {
	e.T.Helper()
	e.CheckTol(name, got, want, e.Tol)
}

// CheckTol compares got with want: max|got − want| ≤ tol·max(1e-3, max|want|).
func (e *Env) CheckTol(name string, got, want []float64, tol float64) {
	e.T.Helper()
	if len(got) != len(want) {
		e.T.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	scale := 1e-3
	for _, w := range want {
		if !math.IsInf(w, 0) {
			scale = max(scale, math.Abs(w))
		}
	}
	worst, at := 0.0, -1
	for i := range got {
		d := math.Abs(got[i] - want[i])
		if math.IsNaN(got[i]) != math.IsNaN(want[i]) {
			d = math.Inf(1)
		}
		if d > worst || (at < 0 && d > 0) {
			worst, at = d, i
		}
	}
	if worst > tol*scale {
		e.T.Errorf("%s: max error %.3g at [%d] (got %.9g, want %.9g) > %.3g × scale %.3g",
			name, worst, at, got[at], want[at], tol, scale)
	}
}

// FD returns the central finite-difference gradient of f with respect to
// every element of x (f reads x).
func FD(x []float64, f func() float64) []float64 {
	g := make([]float64, len(x))
	for i := range x {
		v := x[i]
		h := 1e-6 * max(1, math.Abs(v))
		x[i] = v + h
		fp := f()
		x[i] = v - h
		fm := f()
		x[i] = v
		g[i] = (fp - fm) / (2 * h)
	}
	return g
}

func dot64(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func toF32(x []float64) []float32 {
	f := make([]float32, len(x))
	for i, v := range x {
		f[i] = float32(v)
	}
	return f
}

// roundBF16 rounds to the nearest bfloat16 value, ties to even (reference).
func roundBF16(v float64) float64 {
	f := float32(v)
	if f != f {
		return v
	}
	u := math.Float32bits(f)
	lo := u & 0xffff
	u &^= 0xffff
	if lo > 0x8000 || (lo == 0x8000 && u&0x10000 != 0) {
		u += 0x10000
	}
	return float64(math.Float32frombits(u))
}

func fmtGemm(p compute.Gemm) string {
	return fmt.Sprintf("%dx%dx%d_tA%v_tB%v_a%g_b%g", p.M, p.N, p.K, p.TransA, p.TransB, p.Alpha, p.Beta)
}
