package adapterops

import (
	"bytes"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/lorakit/lorakit/pkg/linalg"
	"github.com/lorakit/lorakit/pkg/tool"
)

// binomialOK reports whether kept out of n is within 5 standard deviations
// of n·p.
func binomialOK(kept, n int, p float64) bool {
	return math.Abs(float64(kept)-float64(n)*p) <= 5*math.Sqrt(float64(n)*p*(1-p))+1
}

func TestDAREKeep(t *testing.T) {
	for _, d := range []float64{0.1, 0.5, 0.9} {
		n, kept := 200000, 0
		for i := 0; i < n; i++ {
			if DAREKeep(7, qProj, DARELoraA, 1, int64(i), d) {
				kept++
			}
		}
		if !binomialOK(kept, n, d) {
			t.Errorf("density %v: kept %d of %d", d, kept, n)
		}
	}
	// Different seeds, modules, tensors and adapters give independent masks.
	same := func(f func(i int64) bool, g func(i int64) bool) int {
		s := 0
		for i := int64(0); i < 10000; i++ {
			if f(i) == g(i) {
				s++
			}
		}
		return s
	}
	base := func(i int64) bool { return DAREKeep(1, qProj, DARELoraA, 0, i, 0.5) }
	for name, other := range map[string]func(int64) bool{
		"seed":    func(i int64) bool { return DAREKeep(2, qProj, DARELoraA, 0, i, 0.5) },
		"module":  func(i int64) bool { return DAREKeep(1, vProj, DARELoraA, 0, i, 0.5) },
		"tensor":  func(i int64) bool { return DAREKeep(1, qProj, DARELoraB, 0, i, 0.5) },
		"adapter": func(i int64) bool { return DAREKeep(1, qProj, DARELoraA, 1, i, 0.5) },
	} {
		if s := same(base, other); !binomialOK(s, 10000, 0.5) {
			t.Errorf("%s: masks agree on %d of 10000 entries", name, s)
		}
	}
}

// TestDAREProperties runs dare_linear on two adapters and checks PEFT's
// definition entry by entry: A' = Σ wAᵢ·maskᵢ·Aᵢ/density with masks from
// DAREKeep, the fraction kept, and that the output depends only on the seed.
func TestDAREProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(91, 92))
	dir := t.TempDir()
	m1, m2 := randModule(rng, qProj, 200, 150, 8), randModule(rng, qProj, 200, 150, 8)
	p1 := writeAdapter(t, filepath.Join(dir, "a1"), map[string]any{"r": 8, "lora_alpha": 16}, []tmod{m1}, nil)
	p2 := writeAdapter(t, filepath.Join(dir, "a2"), map[string]any{"r": 8, "lora_alpha": 8}, []tmod{m2}, nil)
	const density = 0.3
	run := func(seed uint64, workers int) string {
		out := filepath.Join(t.TempDir(), "out.safetensors")
		mustCombine(t, CombineOptions{Adapters: []Input{{p1, 1}, {p2, 0.5}}, Method: DARELinear, Density: density, Seed: seed, Output: out, Env: tool.Env{Threads: workers}})
		return out
	}
	out := run(42, 1)
	f := load(t, out).mods[qProj]
	wa := []float32{float32(math.Sqrt(1 * 2)), float32(math.Sqrt(0.5 * 1))}
	kept := 0
	for i := range f.a {
		var want float32
		for j, m := range []tmod{m1, m2} {
			v := m.a[i]
			if DAREKeep(42, qProj, DARELoraA, j, int64(i), density) {
				if j == 0 {
					kept++
				}
			} else {
				v *= 0
			}
			want += (v / float32(density)) * wa[j]
		}
		if f.a[i] != want {
			t.Fatalf("A'[%d] = %v, want %v", i, f.a[i], want)
		}
	}
	if !binomialOK(kept, len(f.a), density) {
		t.Errorf("kept %d of %d at density %v", kept, len(f.a), density)
	}
	// Same seed, any number of workers: the same bytes; another seed differs.
	if !bytes.Equal(fileBytes(t, out), fileBytes(t, run(42, 4))) {
		t.Error("the output depends on the number of workers")
	}
	if bytes.Equal(fileBytes(t, out), fileBytes(t, run(43, 1))) {
		t.Error("the seed does not change the output")
	}
}

func TestMagnitudeRule(t *testing.T) {
	x := []float32{0.5, -3, 2, -2, 2, 0, 1, -0.5}
	for _, c := range []struct {
		density float64
		keep    []bool
	}{
		{0.25, []bool{false, true, true, false, false, false, false, false}}, // k = 2: -3, then the first 2
		{0.5, []bool{false, true, true, true, true, false, false, false}},
		{0.625, []bool{false, true, true, true, true, false, true, false}},
		{0.75, []bool{true, true, true, true, true, false, true, false}}, // k = 6: the first 0.5 in magnitude
		{0.1, []bool{false, false, false, false, false, false, false, false}},
		{1, []bool{true, true, true, true, true, true, true, true}},
	} {
		r := magnitudeRule(x, c.density)
		for i, v := range x {
			if got := r.keep(v, int64(i)); got != c.keep[i] {
				t.Errorf("density %v: entry %d (%v) kept %v", c.density, i, v, got)
			}
		}
	}
	// Random data: exactly int(density·n) entries, all at least as large as
	// every dropped one.
	rng := rand.New(rand.NewPCG(5, 5))
	v := randVec(rng, 10007, 1)
	for _, d := range []float64{0.01, 0.33, 0.5, 0.99} {
		r := magnitudeRule(v, d)
		var kept int
		minKept, maxDropped := math.Inf(1), 0.0
		for i, x := range v {
			a := math.Abs(float64(x))
			if r.keep(x, int64(i)) {
				kept++
				minKept = math.Min(minKept, a)
			} else {
				maxDropped = math.Max(maxDropped, a)
			}
		}
		if kept != int(d*float64(len(v))) || minKept < maxDropped {
			t.Errorf("density %v: kept %d, min kept %v, max dropped %v", d, kept, minKept, maxDropped)
		}
	}
}

// TestTIESElection checks the sign election and the disjoint mean on
// hand-made values, with PEFT's rules: the vote uses the pruned unweighted
// values; zeros never vote or count; a tie goes to +.
func TestTIESElection(t *testing.T) {
	ts := [][]float32{
		{1, 3, -1, 0, 2},
		{-2, -1, -1, 0, -2},
		{-0.5, -1, 2, 0, 0},
	}
	ws := []float32{1, 2, 0.5}
	total := make([]float32, 5)
	mergeInto(total, ts, ws, mergeTIESTotal)
	// Column 0: sum −1.5 → −; agreeing: −2·2, −0.5·0.5 → (−4 − 0.25)/2.
	// Column 1: sum 1 → +; 3·1 / 1. Column 2: sum 0 → + (tie); 2·0.5 / 1.
	// Column 3: all zero → 0. Column 4: sum 0 → +; 2·1 / 1.
	want := []float32{-2.125, 3, 1, 0, 2}
	for i := range want {
		if total[i] != want[i] {
			t.Errorf("total: column %d = %v, want %v", i, total[i], want[i])
		}
	}
	freq := make([]float32, 5)
	mergeInto(freq, ts, ws, mergeTIESFreq)
	// Column 0: votes +1 −1 −1 → −. Column 1: +1 −1 −1 → −: (−1·2 −1·0.5)/2.
	// Column 2: −1 −1 +1 → −: (−1·1 −1·2)/2. Column 4: +1 −1 → tie → +.
	want = []float32{-2.125, -1.25, -1.5, 0, 2}
	for i := range want {
		if freq[i] != want[i] {
			t.Errorf("frequency: column %d = %v, want %v", i, freq[i], want[i])
		}
	}
}

// TestSubspaceSVDMatchesExact compares the iterative top-k SVD of the
// dense methods (float32 GEMMs) with the full float64 Jacobi SVD, to
// float32 accuracy: singular values within 1e-6·σ₁, the rank-k products
// within 2e-6, the factors within 1e-5; with and without start vectors,
// for wide and tall matrices, on 1 and 3 threads (the same bits).
func TestSubspaceSVDMatchesExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(101, 102))
	for _, c := range []struct{ m, n, k, r int }{{150, 90, 6, 12}, {90, 150, 6, 12}, {300, 200, 16, 24}, {200, 300, 16, 40}} {
		m, n, k, r := c.m, c.n, c.k, c.r
		d := make([]float32, m*n)
		// Low rank plus noise, like a pruned sum of deltas.
		a, b := randVec(rng, r*n, 1), randVec(rng, m*r, 1)
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				var v float64
				for l := 0; l < r; l++ {
					v += float64(b[i*r+l]) * float64(a[l*n+j]) * math.Pow(0.8, float64(l))
				}
				d[i*n+j] = float32(v + 0.05*rng.NormFloat64())
			}
		}
		exact := linalg.ComputeSVD(dense64(d, m, n, 1))
		var start [][]float32
		for l := 0; l < r; l++ {
			start = append(start, a[l*n:(l+1)*n])
		}
		var first []float32
		for _, st := range [][][]float32{nil, start} {
			for _, threads := range []int{1, 3} {
				u, s, v, note, err := subspaceSVD(t.Context(), d, m, n, k, threads, st)
				if note != "" || err != nil {
					t.Fatal(note, err)
				}
				for j := 0; j < k; j++ {
					if math.Abs(s[j]-exact.S[j]) > 1e-6*exact.S[0] {
						t.Errorf("%d×%d: σ%d = %v, exact %v", m, n, j, s[j], exact.S[j])
					}
				}
				ga, gb := truncated(u, s, v, k)
				ea, eb := truncated(exact.U, exact.S, exact.V, k)
				bs, as := []int64{int64(m), int64(k)}, []int64{int64(k), int64(n)}
				if e := relErr(product(gb, ga, bs, as), product(eb, ea, bs, as)); e > 2e-6 {
					t.Errorf("%d×%d: rank-%d products differ by %g", m, n, k, e)
				}
				for i := range ga {
					if math.Abs(float64(ga[i]-ea[i])) > 1e-5 {
						t.Fatalf("%d×%d: A'[%d] = %v, exact %v (sign convention?)", m, n, i, ga[i], ea[i])
					}
				}
				if st == nil && threads == 1 {
					first = ga
				} else if st == nil && !slices.Equal(ga, first) {
					t.Errorf("%d×%d: the result depends on the thread count", m, n)
				}
			}
		}
	}
}

// TestMagnitudeRuleSelection: the two-pass selection gives radix
// selection's rule, whatever the thread count, on values with many ties
// (quantized to few levels), spread ones, and a bucket too crowded for the
// two passes (the radix fallback).
func TestMagnitudeRuleSelection(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	spread := randVec(rng, 3<<20, 1)
	ties := make([]float32, 3<<20+17)
	for i := range ties {
		ties[i] = float32(rng.IntN(41)-20) / 8
	}
	crowded := make([]float32, maxBucket+1000)
	for i := range crowded {
		crowded[i] = 1 + float32(i%3)*0x1p-20 // one 16-bit bucket
	}
	for _, x := range [][]float32{spread, ties, crowded} {
		for _, d := range []float64{0.001, 0.3, 0.5, 0.97} {
			want := radixRule(x, int(d*float64(len(x))))
			for _, w := range []int{1, 3} {
				if got := magnitudeRuleN(x, d, w); got != want {
					t.Errorf("%d values, density %v, %d workers: rule %+v, radix selection %+v", len(x), d, w, got, want)
				}
			}
		}
	}
}

// mergeReference is mergeInto written element by element, as PEFT's
// formulas read.
func mergeReference(dst []float32, ts [][]float32, ws []float32, kind mergeKind) {
	for j := range dst {
		if kind == mergeSum {
			var acc float32
			for i, t := range ts {
				acc += float32(t[j] * ws[i])
			}
			dst[j] = acc
			continue
		}
		var elect float32
		for _, t := range ts {
			if kind == mergeTIESTotal {
				elect += t[j]
			} else {
				elect += sign32(t[j])
			}
		}
		maj := float32(1)
		if elect < 0 {
			maj = -1
		}
		var acc, n float32
		for i, t := range ts {
			if sign32(t[j]) == maj {
				acc += float32(t[j] * ws[i])
				n++
			}
		}
		dst[j] = acc / max(n, 1)
	}
}

// TestMergeMatchesReference: the block-wise merge gives the reference's
// bits (signed zeros included) for 1 to 4 pruned tensors with ties,
// zeros and cancelling votes.
func TestMergeMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 13))
	for iter := range 50 {
		n := 1 + rng.IntN(1000)
		k := 1 + iter%4
		ts := make([][]float32, k)
		ws := make([]float32, k)
		for i := range ts {
			ts[i] = make([]float32, n)
			for j := range ts[i] {
				switch rng.IntN(4) {
				case 0: // pruned: ±0
					ts[i][j] = float32(rng.IntN(2)*2-1) * 0
				case 1: // few levels: exact cancellations and ties
					ts[i][j] = float32(rng.IntN(5) - 2)
				default:
					ts[i][j] = float32(rng.NormFloat64())
				}
			}
			ws[i] = float32(rng.NormFloat64())
		}
		for _, kind := range []mergeKind{mergeSum, mergeTIESTotal, mergeTIESFreq} {
			got, want := make([]float32, n), make([]float32, n)
			mergeInto(got, ts, ws, kind)
			mergeReference(want, ts, ws, kind)
			for j := range want {
				if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
					t.Fatalf("iteration %d, kind %d, entry %d: %v, reference %v", iter, kind, j, got[j], want[j])
				}
			}
		}
	}
}
