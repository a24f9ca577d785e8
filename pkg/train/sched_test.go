package train

import (
	"math"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/llama"
)

// TestSchedule checks λ for each update against hand-computed values
// (spec §10.5: update k uses λ(k−1)).
func TestSchedule(t *testing.T) {
	c45 := 0.5 * (1 + math.Cos(math.Pi/4)) // 0.8535533905932737
	c135 := 0.5 * (1 + math.Cos(3*math.Pi/4))
	for _, c := range []struct {
		s    Schedule
		want []float64 // λ used by updates 1..N
	}{
		{Schedule{ScheduleLinear, 2, 6}, []float64{0, 0.5, 1, 0.75, 0.5, 0.25}},
		{Schedule{ScheduleLinear, 0, 4}, []float64{1, 0.75, 0.5, 0.25}},
		{Schedule{ScheduleCosine, 2, 6}, []float64{0, 0.5, 1, c45, 0.5, c135}},
		{Schedule{ScheduleCosine, 0, 4}, []float64{1, c45, 0.5, c135}},
		{Schedule{ScheduleCosine, 3, 3}, []float64{0, 1. / 3, 2. / 3}},
		{Schedule{ScheduleConstant, 0, 3}, []float64{1, 1, 1}},
		{Schedule{ScheduleConstant, 2, 4}, []float64{0, 0.5, 1, 1}},
		{Schedule{ScheduleConstantWarmup, 4, 5}, []float64{0, 0.25, 0.5, 0.75, 1}},
	} {
		for k := 1; k <= c.s.Total; k++ {
			if got := c.s.LR(2, k); math.Abs(got-2*c.want[k-1]) > 1e-15 {
				t.Errorf("%+v: update %d lr %v, want %v", c.s, k, got, 2*c.want[k-1])
			}
		}
	}
	// Past the end the decaying schedules stay at 0.
	if l := (Schedule{ScheduleLinear, 0, 4}).Lambda(9); l != 0 {
		t.Errorf("linear past the end: %v", l)
	}
	if l := (Schedule{ScheduleCosine, 0, 4}).Lambda(4); math.Abs(l) > 1e-16 {
		t.Errorf("cosine at the end: %v", l)
	}
	if CheckSchedule("polynomial") == nil || CheckSchedule(ScheduleCosine) != nil {
		t.Error("CheckSchedule")
	}
}

func TestWarmupAndTotal(t *testing.T) {
	for _, c := range []struct {
		warmup float64
		total  int
		want   int
	}{{0, 10, 0}, {0.1, 25, 3}, {0.5, 7, 4}, {0.03, 1000, 30}, {3, 100, 3}, {1, 5, 1}} {
		got, err := WarmupSteps(c.warmup, c.total)
		if err != nil || got != c.want {
			t.Errorf("WarmupSteps(%g, %d) = %d, %v; want %d", c.warmup, c.total, got, err, c.want)
		}
	}
	for _, bad := range []float64{-1, 2.5, math.NaN(), math.Inf(1)} {
		if _, err := WarmupSteps(bad, 10); err == nil {
			t.Errorf("warmup %g accepted", bad)
		}
	}
	for _, c := range []struct {
		maxSteps         int
		epochs           float64
		batches, accum   int
		want             int
		nameForReference string
	}{
		{0, 1, 10, 4, 3, "ceil(10/4)"},
		{0, 2.5, 10, 4, 8, "ceil(2.5·3)"},
		{7, 1, 10, 4, 7, "max_steps"},
		{0, 1, 3, 4, 1, "at least one per epoch"},
		{0, 3, 5, 1, 15, "plain"},
	} {
		if got := TotalSteps(c.maxSteps, c.epochs, c.batches, c.accum); got != c.want {
			t.Errorf("%s: %d, want %d", c.nameForReference, got, c.want)
		}
	}
}

// TestWarmupCosineRun checks the learning rates a run logs with a warm-up
// ratio and cosine decay, and that the first update (lr 0) moves nothing.
func TestWarmupCosineRun(t *testing.T) {
	g := loadGolden(t)
	be := newCPU()
	cfg := tinyConfig(t)
	ad, load, err := OpenAdapter(fx(t, "peft", "train", "plain", "init"), nil, cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	m := newModel(t, be, "peft/tiny", ad, load, llama.Options{})
	s := plainSettings(g)
	s.Schedule, s.Warmup, s.MaxSteps, s.LR = ScheduleCosine, 0.25, 8, 1e-2 // W = ceil(8·0.25) = 2
	tr, err := NewTrainer(m, Rows(goldenExamples(t, g)), 0, s)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if w := tr.Schedule().Warmup; w != 2 {
		t.Fatalf("warmup %d steps, want 2", w)
	}
	// lora_B: its gradient is not zero while B is (lora_A's is).
	b := m.Params()[1]
	if !strings.HasSuffix(b.Name, llama.SuffixB) {
		t.Fatalf("param 1 is %s", b.Name)
	}
	before := download(t, be, b.Value)
	want := []float64{0, 0.5, 1, 0.9330127018922194, 0.75, 0.5, 0.25, 0.06698729810778065}
	for k := range 8 {
		r, err := tr.Step()
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(r.LR-1e-2*want[k]) > 1e-15 {
			t.Errorf("update %d: lr %v, want %v", k+1, r.LR, 1e-2*want[k])
		}
		after := download(t, be, b.Value)
		if moved := relErr(after, before) != 0; moved != (k > 0) {
			t.Errorf("update %d (lr %g): parameters moved = %v", k+1, r.LR, moved)
		}
		before = after
	}
}

func TestStepFLOP(t *testing.T) {
	cfg := tinyConfig(t)
	// Projections 36,864 per layer × 2 + lm_head 16,384 = 90,112; T = 32;
	// attention 2·L·rows·H·hd·seq² = 2·2·2·64·256 = 131,072.
	if got, want := StepFLOP(cfg, nil, 2, 16, false), 4*90112*32+3*131072.0; got != want {
		t.Errorf("StepFLOP = %v, want %v", got, want)
	}
	ad, _ := NewAdapter(cfg, AdapterOptions{Rank: 4, Alpha: 8, Targets: []string{"q_proj"}})
	lora := 2 * 2 * 4 * (64 + 64) * 32.0 // two modules
	if got, want := StepFLOP(cfg, ad.Specs, 2, 16, true), 4*90112*32+3*131072.0+3*lora+(2*90112*32+131072+lora); got != want {
		t.Errorf("StepFLOP with adapters and checkpointing = %v, want %v", got, want)
	}
}
