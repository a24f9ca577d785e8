package llama

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
)

// randomAdapters returns a loader of random non-zero adapter tensors (DoRA
// magnitudes included) for specs on the tiny model.
func randomAdapters(seed uint64) Loader { return randomAdaptersFor(tinyConfig(), seed) }

// randomAdaptersFor is randomAdapters for a model of cfg: rank 4, (IA)³
// vectors of the MLP's modules feed-forward, trainable biases.
func randomAdaptersFor(cfg *arch.Config, seed uint64) Loader {
	r := rand.New(rand.NewPCG(seed, 99))
	return func(name string) ([]float32, []int, error) {
		var shape []int
		for l := range cfg.Layers {
			for _, lin := range cfg.AllLinear() {
				out, in := projShape(cfg, lin)
				p := cfg.ModulePath(l, lin)
				switch {
				case !strings.HasPrefix(name, p+"."):
				case strings.HasSuffix(name, SuffixA):
					shape = []int{4, in}
				case strings.HasSuffix(name, SuffixB):
					shape = []int{out, 4}
				case strings.HasSuffix(name, SuffixMagnitude), strings.HasSuffix(name, SuffixBias):
					shape = []int{out}
				case strings.HasSuffix(name, SuffixIA3) && strings.Contains(p, ".mlp."): // feed-forward in these tests
					shape = []int{1, in}
				case strings.HasSuffix(name, SuffixIA3):
					shape = []int{out, 1}
				}
			}
		}
		if shape == nil {
			return nil, nil, fmt.Errorf("%s: %w", name, ErrNotFound)
		}
		n := 1
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			switch {
			case strings.HasSuffix(name, SuffixMagnitude):
				v[i] = float32(0.1 + 0.2*r.Float64())
			case strings.HasSuffix(name, SuffixIA3):
				v[i] = float32(1 + 0.3*(2*r.Float64()-1))
			default:
				v[i] = float32(0.2 * (2*r.Float64() - 1))
			}
		}
		return v, shape, nil
	}
}

func gradSpecs(kind string) []Adapter {
	var s []Adapter
	switch kind {
	case "mixed": // LoRA with dropout below, DoRA with dropout above
		for _, tg := range []string{V, Gate} {
			s = append(s, Adapter{Layer: 0, Module: tg, Rank: 4, Scale: 1.7, Dropout: 0.2})
		}
		for _, tg := range allTargets {
			s = append(s, Adapter{Layer: 1, Module: tg, Rank: 4, Scale: 0.9, DoRA: true, Dropout: 0.15})
		}
	case "lora":
		for l := range 2 {
			for _, tg := range allTargets {
				s = append(s, Adapter{Layer: l, Module: tg, Rank: 4, Scale: 1.3, Dropout: 0.1 * float32(l)})
			}
		}
	case "ia3": // PEFT's Llama defaults (k, v, down; down feed-forward) below, LoRA above
		for _, tg := range []string{K, V, Down} {
			s = append(s, Adapter{Layer: 0, Module: tg, IA3: true, FeedForward: tg == Down})
		}
		s = append(s, Adapter{Layer: 1, Module: Q, Rank: 4, Scale: 1},
			Adapter{Layer: 1, Module: Up, IA3: true, FeedForward: true},
			Adapter{Layer: 1, Module: O, IA3: true})
	case "mlp-only-below": // lowest layer adapted only at down_proj; DoRA without dropout
		s = append(s, Adapter{Layer: 0, Module: Down, Rank: 4, Scale: 2})
		for _, tg := range []string{Q, K, O, Up} {
			s = append(s, Adapter{Layer: 1, Module: tg, Rank: 4, Scale: 0.5, DoRA: true})
		}
	}
	return s
}

// TestDirectionalDerivative checks the backward pass against central finite
// differences of the loss along directions in each kind of parameter.
func TestDirectionalDerivative(t *testing.T) {
	_, b := loadGolden(t, fixtures(t)+"/peft/train/plain")
	for _, kind := range []string{"lora", "mixed", "mlp-only-below", "ia3"} {
		t.Run(kind, func(t *testing.T) {
			be := newCPU()
			m := loadTiny(t, be, "tiny", Options{})
			if err := m.AddAdapters(gradSpecs(kind), randomAdapters(5)); err != nil {
				t.Fatal(err)
			}
			checkDirectional(t, m, b, SuffixA, SuffixB, SuffixMagnitude, SuffixIA3)
		})
	}
}

// checkDirectional compares, for the parameters of each name suffix, the
// loss's derivative along a random direction (leaning on the gradient, so
// the loss changes well above f32 noise) with central finite differences;
// dropout masks and DoRA norms are held fixed.
func checkDirectional(t *testing.T, m *Model, b Batch, suffixes ...string) {
	t.Helper()
	be := m.be
	st := Step{Seed: 11}
	m.ZeroGrad()
	if _, _, err := m.ForwardBackward(b, st); err != nil {
		t.Fatal(err)
	}
	st.KeepDoRANorms = true // from here on: finite differences hold the norms fixed
	params := m.Params()
	vals := make([][]float32, len(params))
	grads := make([][]float32, len(params))
	for i, p := range params {
		vals[i], grads[i] = download(t, be, p.Value), download(t, be, p.Grad)
	}
	r := rand.New(rand.NewPCG(7, 8))
	for _, suffix := range suffixes {
		d := make([][]float32, len(params))
		var want, dmax float64
		for i, p := range params {
			d[i] = make([]float32, len(vals[i]))
			if !strings.HasSuffix(p.Name, suffix) {
				continue
			}
			for j := range d[i] {
				d[i][j] = grads[i][j] * float32(1+0.8*(2*r.Float64()-1))
				want += float64(d[i][j]) * float64(grads[i][j])
				dmax = math.Max(dmax, math.Abs(float64(d[i][j])))
			}
		}
		if want == 0 {
			continue
		}
		eps := 2e-3 / dmax
		loss := func(sign float64) float64 {
			for i, p := range params {
				v := make([]float32, len(vals[i]))
				for j := range v {
					v[j] = vals[i][j] + float32(sign*eps)*d[i][j]
				}
				be.Upload(p.Value, v)
			}
			sum, n, err := m.ForwardBackward(b, st)
			if err != nil {
				t.Fatal(err)
			}
			return sum / float64(n)
		}
		got := (loss(1) - loss(-1)) / (2 * eps)
		for i, p := range params {
			be.Upload(p.Value, vals[i])
		}
		e := math.Abs(got-want) / math.Abs(want)
		t.Logf("%s: analytic %.6g, finite difference %.6g (rel %.2g)", suffix, want, got, e)
		if e > 5e-3 {
			t.Errorf("%s: analytic %.6g, finite difference %.6g", suffix, want, got)
		}
	}
}

// TestCheckpointAndThreads requires bit-identical gradients with gradient
// checkpointing, other thread counts and small loss chunks.
func TestCheckpointAndThreads(t *testing.T) {
	_, b := loadGolden(t, fixtures(t)+"/peft/train/plain")
	run := func(be compute.Backend, opt Options) ([][]float32, float64) {
		m := loadTiny(t, be, "tiny", opt)
		if err := m.AddAdapters(gradSpecs("mixed"), randomAdapters(5)); err != nil {
			t.Fatal(err)
		}
		m.ZeroGrad()
		sum, _, err := m.ForwardBackward(b, Step{Seed: 3, Denominator: 17})
		if err != nil {
			t.Fatal(err)
		}
		var gs [][]float32
		for _, p := range m.Params() {
			gs = append(gs, download(t, be, p.Grad))
		}
		return gs, sum
	}
	sameAcrossRuns(t, run)
}

// sameAcrossRuns requires run to give bit-identical gradients and losses
// with other thread counts, gradient checkpointing and small loss chunks.
func sameAcrossRuns(t *testing.T, run func(be compute.Backend, opt Options) ([][]float32, float64)) {
	t.Helper()
	ref, refSum := run(cpu.New(1), Options{})
	for _, c := range []struct {
		name string
		be   compute.Backend
		opt  Options
	}{
		{"threads=2", cpu.New(2), Options{}},
		{"threads=3,checkpoint", cpu.New(3), Options{GradCheckpoint: true}},
		{"chunk=5", cpu.New(2), Options{LossChunk: 5}},
	} {
		got, sum := run(c.be, c.opt)
		if sum != refSum {
			t.Errorf("%s: loss sum %v, want %v", c.name, sum, refSum)
		}
		for i := range ref {
			sameBits(t, fmt.Sprintf("%s: gradient %d", c.name, i), got[i], ref[i])
		}
	}
}

// TestDropoutSeed checks that the seed changes the masks (and so the loss)
// and that evaluation ignores dropout.
func TestDropoutSeed(t *testing.T) {
	_, b := loadGolden(t, fixtures(t)+"/peft/train/plain")
	m := loadTiny(t, newCPU(), "tiny", Options{})
	if err := m.AddAdapters(gradSpecs("mixed"), randomAdapters(5)); err != nil {
		t.Fatal(err)
	}
	s1, _, _ := m.ForwardBackward(b, Step{Seed: 1})
	s1b, _, _ := m.ForwardBackward(b, Step{Seed: 1})
	s2, _, _ := m.ForwardBackward(b, Step{Seed: 2})
	if s1 != s1b || s1 == s2 {
		t.Errorf("seed 1: %v, %v; seed 2: %v", s1, s1b, s2)
	}
	e1, n, err := m.Loss(b)
	if err != nil {
		t.Fatal(err)
	}
	if n != 24 || e1 == s1 {
		t.Errorf("eval loss %v (n %d) equals a dropout loss", e1, n)
	}
	// Without dropout, training and evaluation losses agree.
	m2 := loadTiny(t, newCPU(), "tiny", Options{})
	if err := m2.AddAdapters(gradSpecs("mlp-only-below"), randomAdapters(5)); err != nil {
		t.Fatal(err)
	}
	tr, _, _ := m2.ForwardBackward(b, Step{Seed: 1})
	ev, _, _ := m2.Loss(b)
	if tr != ev {
		t.Errorf("no dropout: training loss %v, evaluation loss %v", tr, ev)
	}
}

// TestEvalAfterTraining checks that evaluation in a workspace laid out for
// training (stored or checkpointed) gives the logits of a fresh model.
func TestEvalAfterTraining(t *testing.T) {
	_, b := loadGolden(t, fixtures(t)+"/peft/train/plain")
	fresh := loadTiny(t, newCPU(), "tiny", Options{})
	if err := fresh.AddAdapters(gradSpecs("mixed"), randomAdapters(5)); err != nil {
		t.Fatal(err)
	}
	want := make([]float32, b.Rows*b.Seq*256)
	if err := fresh.Logits(b, want); err != nil {
		t.Fatal(err)
	}
	for _, ckpt := range []bool{false, true} {
		m := loadTiny(t, newCPU(), "tiny", Options{GradCheckpoint: ckpt})
		if err := m.AddAdapters(gradSpecs("mixed"), randomAdapters(5)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := m.ForwardBackward(b, Step{Seed: 4}); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, len(want))
		if err := m.Logits(b, got); err != nil {
			t.Fatal(err)
		}
		if d, _ := maxAbs(got, want); d != 0 {
			t.Errorf("checkpoint=%v: logits after a training step differ by %.3g", ckpt, d)
		}
		// And training again after evaluation still matches.
		s1, _, _ := m.ForwardBackward(b, Step{Seed: 4})
		s2, _, _ := fresh.ForwardBackward(b, Step{Seed: 4})
		if s1 != s2 {
			t.Errorf("checkpoint=%v: loss %v after evaluation, fresh %v", ckpt, s1, s2)
		}
	}
}

// TestIA3Forward checks (IA)³ against the merged weights of PEFT's
// ia3 merge (rows scaled for output vectors, columns for feed-forward ones),
// and that a ones-initialised (IA)³ adapter leaves the model unchanged.
func TestIA3Forward(t *testing.T) {
	fx := fixtures(t)
	ids := int64s(t, openST(t, fx+"/peft/logits.safetensors"), "ids")
	b := Batch{Rows: 2, Seq: 12, IDs: ids}
	base := loadTiny(t, newCPU(), "tiny", Options{})
	want := make([]float32, 2*12*256)
	if err := base.Logits(b, want); err != nil {
		t.Fatal(err)
	}
	ones := loadTiny(t, newCPU(), "tiny", Options{})
	none := func(name string) ([]float32, []int, error) { return nil, nil, fmt.Errorf("%s: %w", name, ErrNotFound) }
	if err := ones.AddAdapters(gradSpecs("ia3")[:3], none); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, len(want))
	if err := ones.Logits(b, got); err != nil {
		t.Fatal(err)
	}
	if d, _ := maxAbs(got, want); d != 0 {
		t.Errorf("ones-initialised (IA)³ changes logits by %.3g", d)
	}

	specs := []Adapter{{Layer: 0, Module: K, IA3: true}, {Layer: 0, Module: Down, IA3: true, FeedForward: true},
		{Layer: 1, Module: V, IA3: true}, {Layer: 1, Module: Gate, IA3: true, FeedForward: true}}
	vecs := randomAdapters(8)
	m := loadTiny(t, newCPU(), "tiny", Options{})
	if err := m.AddAdapters(specs, vecs); err != nil {
		t.Fatal(err)
	}
	if err := m.Logits(b, got); err != nil {
		t.Fatal(err)
	}
	// Merge the same vectors into the weights.
	f := openST(t, fx+"/peft/tiny/model.safetensors")
	plain := stLoader(f, "")
	vecs = randomAdapters(8)
	scaled := map[string][]float32{}
	for _, s := range specs {
		l, _, err := vecs(modulePath(s.Layer, s.Module) + SuffixIA3)
		if err != nil {
			t.Fatal(err)
		}
		scaled[modulePath(s.Layer, s.Module)+".weight"] = l
	}
	merged := func(name string) ([]float32, []int, error) {
		w, shape, err := plain(name)
		if l, ok := scaled[name]; ok && err == nil {
			for o := range shape[0] {
				for i := range shape[1] {
					if len(l) == shape[0] {
						w[o*shape[1]+i] *= l[o]
					} else {
						w[o*shape[1]+i] *= l[i]
					}
				}
			}
		}
		return w, shape, err
	}
	mm, err := New(newCPU(), tinyConfig(), merged, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer mm.Close()
	if err := mm.Logits(b, want); err != nil {
		t.Fatal(err)
	}
	d, scale := maxAbs(got, want)
	t.Logf("(IA)³ vs merged: max |Δlogit| %.3g (max |logit| %.3g)", d, scale)
	if d > 1e-5 {
		t.Errorf("(IA)³ vs merged weights: max |Δlogit| %.3g", d)
	}
	if d, _ := maxAbs(want, float32s(t, openST(t, fx+"/peft/logits.safetensors"), "base")); d < 1e-3 {
		t.Errorf("the (IA)³ vectors hardly change the model (%.3g)", d)
	}
}
