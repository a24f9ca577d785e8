package train

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/llama"
	"github.com/lorakit/lorakit/pkg/output"
)

// resumeSetup is a run that exercises everything a checkpoint must carry:
// shuffling across epochs, a partial accumulation at the end of each epoch,
// dropout, a schedule with warm-up, clipping and weight decay.
func resumeSetup(t *testing.T) ([]Row, Settings, *Adapter) {
	g := loadGolden(t)
	var ex []Example
	for i, e := range goldenExamples(t, g) {
		for j, cut := range [][2]int{{0, 16}, {2, 12}, {5, 16}} {
			ex = append(ex, Example{IDs: e.IDs[cut[0]:cut[1]], Labels: e.Labels[cut[0]:cut[1]], Line: 3*i + j + 1})
		}
	}
	s := DefaultSettings()
	s.LR, s.Schedule, s.Warmup, s.Epochs, s.Batch, s.GradAccum, s.WeightDecay, s.Seed = 1e-2, ScheduleCosine, 1, 3, 2, 2, 0.01, 9
	ad, err := NewAdapter(tinyConfig(t), AdapterOptions{Rank: 4, Alpha: 8, Targets: []string{"all-linear"}, Dropout: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	return Rows(ex), s, ad
}

func resumeModel(t *testing.T, be compute.Backend, ad *Adapter) *llama.Model {
	return newModel(t, be, "peft/tiny", ad, InitLoader(tinyConfig(t), ad.Specs, 9, dtype.F32), llama.Options{})
}

// adapterBytes writes the model's adapter to a file and returns its bytes.
func adapterBytes(t *testing.T, ad *Adapter, m *llama.Model) []byte {
	t.Helper()
	p := filepath.Join(t.TempDir(), "a.safetensors")
	if err := WriteAdapter(p, ad, m, output.Options{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func runAll(t *testing.T, tr *Trainer) []StepResult {
	var rs []StepResult
	for !tr.Done() {
		r, err := tr.Step()
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	return rs
}

// TestResumeBitExact trains N steps in one go, and k steps, a checkpoint,
// then a fresh process-like restart to N: the adapters must be identical
// bytes, as must the losses after the restart.
func TestResumeBitExact(t *testing.T) {
	rows, s, ad := resumeSetup(t)
	m := resumeModel(t, newCPU(), ad)
	tr, err := NewTrainer(m, rows, 0, s)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.BatchesPerEpoch() != 3 || tr.Total() != 6 {
		t.Fatalf("%d batches per epoch, %d steps", tr.BatchesPerEpoch(), tr.Total())
	}
	full := runAll(t, tr)
	want := adapterBytes(t, ad, m)
	if e := full[len(full)-1].Epoch; e != 3 {
		t.Errorf("final epoch %v", e)
	}

	for _, k := range []int{1, 3, 4} { // after a partial accumulation, at an epoch start, mid-epoch
		m1 := resumeModel(t, newCPU(), ad)
		tr1, err := NewTrainer(m1, rows, 0, s)
		if err != nil {
			t.Fatal(err)
		}
		for range k {
			if _, err := tr1.Step(); err != nil {
				t.Fatal(err)
			}
		}
		dir := filepath.Join(t.TempDir(), "checkpoint")
		if err := tr1.SaveCheckpoint(dir, ad, nil); err != nil {
			t.Fatal(err)
		}
		tr1.Close()
		// The checkpoint is a PEFT adapter too.
		ck, load, err := OpenAdapter(dir, nil, tinyConfig(t), 0.1)
		if err != nil || !slices.Equal(ck.Specs, ad.Specs) {
			t.Fatalf("checkpoint as adapter: %v", err)
		}
		m2 := newModel(t, newCPU(), "peft/tiny", ck, load, llama.Options{})
		tr2, err := NewTrainer(m2, rows, 0, s)
		if err != nil {
			t.Fatal(err)
		}
		if err := tr2.Restore(dir); err != nil {
			t.Fatal(err)
		}
		rest := runAll(t, tr2)
		tr2.Close()
		for i, r := range rest {
			f := full[k+i]
			if r.Step != f.Step || r.Loss != f.Loss || r.GradNorm != f.GradNorm || r.LR != f.LR || r.Epoch != f.Epoch {
				t.Errorf("k=%d: step %d after resume %+v, uninterrupted %+v", k, r.Step, r, f)
			}
		}
		if got := adapterBytes(t, ad, m2); !bytes.Equal(got, want) {
			t.Errorf("k=%d: resumed adapter differs from the uninterrupted one", k)
		}
	}

	// A checkpoint of another run is refused.
	m3 := resumeModel(t, newCPU(), ad)
	tr3, _ := NewTrainer(m3, rows, 0, s)
	tr3.Step()
	dir := filepath.Join(t.TempDir(), "ck")
	if err := tr3.SaveCheckpoint(dir, ad, nil); err != nil {
		t.Fatal(err)
	}
	other := s
	other.LR = 2e-2
	tr4, _ := NewTrainer(m3, rows, 0, other)
	if err := tr4.Restore(dir); !errors.Is(err, ErrResume) {
		t.Errorf("other lr: %v", err)
	}
	tr5, _ := NewTrainer(m3, rows[1:], 0, s)
	if err := tr5.Restore(dir); !errors.Is(err, ErrResume) {
		t.Errorf("other data: %v", err)
	}
	os.Remove(filepath.Join(dir, OptimizerFile))
	tr6, _ := NewTrainer(m3, rows, 0, s)
	if err := tr6.Restore(dir); !errors.Is(err, ErrResume) {
		t.Errorf("no optimizer state: %v", err)
	}
}

// TestDeterministicThreads trains with 1 and 3 threads (and GOMAXPROCS 1)
// and requires identical adapter bytes.
func TestDeterministicThreads(t *testing.T) {
	rows, s, ad := resumeSetup(t)
	s.Epochs = 1
	run := func(be compute.Backend, ckpt bool) []byte {
		m := newModel(t, be, "peft/tiny", ad, InitLoader(tinyConfig(t), ad.Specs, 9, dtype.F32), llama.Options{GradCheckpoint: ckpt})
		tr, err := NewTrainer(m, rows, 0, s)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		runAll(t, tr)
		return adapterBytes(t, ad, m)
	}
	ref := run(cpu.New(1), false)
	if got := run(cpu.New(3), false); !bytes.Equal(got, ref) {
		t.Error("3 threads differ from 1")
	}
	if got := run(cpu.New(2), true); !bytes.Equal(got, ref) {
		t.Error("gradient checkpointing differs")
	}
	old := runtime.GOMAXPROCS(1)
	got := run(cpu.New(0), false)
	runtime.GOMAXPROCS(old)
	if !bytes.Equal(got, ref) {
		t.Error("GOMAXPROCS=1 differs")
	}
	s.Seed++
	if got := run(cpu.New(0), false); bytes.Equal(got, ref) {
		t.Error("another seed gives the same adapter")
	}
}
