package train

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"time"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/llama"
)

// Settings are the hyper-parameters that decide a run's result.
type Settings struct {
	LR          float64 `json:"lr"`
	Schedule    string  `json:"schedule"`
	Warmup      float64 `json:"warmup"` // steps, or a ratio of the total below 1
	Epochs      float64 `json:"epochs"`
	MaxSteps    int     `json:"max_steps"` // > 0 overrides Epochs
	Batch       int     `json:"batch"`
	GradAccum   int     `json:"grad_accum"`
	WeightDecay float64 `json:"weight_decay"`
	MaxGradNorm float64 `json:"max_grad_norm"` // 0: no clipping
	Beta1       float64 `json:"beta1"`
	Beta2       float64 `json:"beta2"`
	Eps         float64 `json:"eps"`
	Seed        uint64  `json:"seed"`
	Shuffle     bool    `json:"shuffle"`
	// UnshiftedCount counts num_items_in_batch on the unshifted labels, as
	// transformers did before PR #46204 (spec §10.2), for comparisons.
	UnshiftedCount bool `json:"unshifted_count"`
}

// DefaultSettings returns lora-train's defaults: lr 2e-4, cosine, one
// epoch, batch 4, AdamW β = (0.9, 0.999), ε = 1e-8, clipping at 1, seed 42,
// shuffled.
func DefaultSettings() Settings {
	return Settings{LR: 2e-4, Schedule: ScheduleCosine, Epochs: 1, Batch: 4, GradAccum: 1, MaxGradNorm: 1,
		Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Seed: 42, Shuffle: true}
}

func (s *Settings) check() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: %s", ErrSettings, fmt.Sprintf(f, a...)) }
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	switch {
	case !(s.LR >= 0) || !finite(s.LR):
		return bad("learning rate %g", s.LR)
	case s.Batch <= 0 || s.Batch > 1<<16:
		return bad("batch %d", s.Batch)
	case s.GradAccum <= 0 || s.GradAccum > 1<<16:
		return bad("grad-accum %d", s.GradAccum)
	case s.MaxSteps < 0:
		return bad("max-steps %d", s.MaxSteps)
	case s.MaxSteps == 0 && !(s.Epochs > 0 && s.Epochs <= 1e6):
		return bad("epochs %g", s.Epochs)
	case !(s.WeightDecay >= 0) || !finite(s.WeightDecay):
		return bad("weight decay %g", s.WeightDecay)
	case !(s.MaxGradNorm >= 0) || !finite(s.MaxGradNorm):
		return bad("max-grad-norm %g", s.MaxGradNorm)
	case !(s.Beta1 >= 0 && s.Beta1 < 1) || !(s.Beta2 >= 0 && s.Beta2 < 1) || !(s.Eps > 0):
		return bad("AdamW betas (%g, %g), eps %g", s.Beta1, s.Beta2, s.Eps)
	}
	return CheckSchedule(s.Schedule)
}

// State is a run's position: what a checkpoint records besides the
// adapter and the optimizer moments.
type State struct {
	Step  int `json:"step"`  // updates done
	Epoch int `json:"epoch"` // epoch of the next micro-batch (0-based)
	Batch int `json:"batch"` // next micro-batch within the epoch
}

// StepResult describes one update; it is the --log line.
type StepResult struct {
	Step       int     `json:"step"`
	Loss       float64 `json:"loss"`
	LR         float64 `json:"lr"`
	GradNorm   float64 `json:"grad_norm"`
	Tokens     int     `json:"tokens"` // non-padding input tokens of the update
	TokensPerS float64 `json:"tokens_per_s"`
	Epoch      float64 `json:"epoch"`
	// Targets is num_items_in_batch: the scored positions of the update.
	Targets  int      `json:"targets"`
	EvalLoss *float64 `json:"eval_loss,omitempty"`
}

// Trainer runs the optimisation loop of transformers' Trainer (spec
// §10.3) on a model with adapters: per update, forward/backward of up to
// GradAccum micro-batches with the summed token count as denominator,
// clipping, AdamW, then the scheduler step.
type Trainer struct {
	model    *llama.Model
	be       compute.Backend
	set      Settings
	rows     []Row
	pad      int32
	params   []llama.Param
	m, v     []compute.Buffer
	norms    compute.Buffer
	sched    Schedule
	perEpoch int // micro-batches per epoch
	state    State
	perm     []int
	permFor  int

	// OnGradients, when set, is called after each update's backward pass
	// with the update's number and the adapter parameters, whose Grad
	// buffers hold the summed gradients before clipping (gradient
	// monitoring, comparisons with a reference trainer).
	OnGradients func(step int, params []llama.Param)
}

// NewTrainer prepares a run over rows (see Rows and Pack) on a model with
// adapters attached. pad is the token id of padding positions.
func NewTrainer(m *llama.Model, rows []Row, pad int32, s Settings) (*Trainer, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%w: no training data", ErrData)
	}
	params := m.Params()
	if len(params) == 0 {
		return nil, fmt.Errorf("%w: the model has no adapters", ErrSettings)
	}
	t := &Trainer{model: m, be: m.Backend(), set: s, rows: rows, pad: pad, params: params, permFor: -1}
	t.perEpoch = (len(rows) + s.Batch - 1) / s.Batch
	total := TotalSteps(s.MaxSteps, s.Epochs, t.perEpoch, s.GradAccum)
	w, err := WarmupSteps(s.Warmup, total)
	if err != nil {
		return nil, err
	}
	t.sched = Schedule{Kind: s.Schedule, Warmup: w, Total: total}
	for _, p := range params {
		for _, dst := range []*[]compute.Buffer{&t.m, &t.v} {
			b, err := t.be.Alloc(compute.F32, p.Value.Len())
			if err != nil {
				t.Close()
				return nil, err
			}
			*dst = append(*dst, b)
		}
	}
	if t.norms, err = t.be.Alloc(compute.F32, len(params)); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// Close frees the optimizer state.
func (t *Trainer) Close() {
	for _, b := range append(t.m, t.v...) {
		t.be.Free(b)
	}
	t.m, t.v = nil, nil
	if t.norms != nil {
		t.be.Free(t.norms)
		t.norms = nil
	}
}

// Total returns the number of updates of the run.
func (t *Trainer) Total() int { return t.sched.Total }

// Schedule returns the resolved learning-rate schedule.
func (t *Trainer) Schedule() Schedule { return t.sched }

// State returns the run's position.
func (t *Trainer) State() State { return t.state }

// Done reports whether every update has run.
func (t *Trainer) Done() bool { return t.state.Step >= t.sched.Total }

// BatchesPerEpoch returns the number of micro-batches of an epoch.
func (t *Trainer) BatchesPerEpoch() int { return t.perEpoch }

// dropoutSeed is the dropout seed of micro-batch k of update step.
func dropoutSeed(seed uint64, step, k int) uint64 {
	return num.Mix64((seed ^ num.Mix64((uint64(step)<<16|uint64(k))+num.Golden)) + num.Golden)
}

// Step runs one update and returns its log line.
func (t *Trainer) Step() (StepResult, error) {
	if t.Done() {
		return StepResult{}, fmt.Errorf("%w: all %d steps are done", ErrSettings, t.sched.Total)
	}
	start := time.Now()
	st := &t.state
	if st.Batch >= t.perEpoch {
		st.Epoch++
		st.Batch = 0
	}
	if t.permFor != st.Epoch {
		t.perm = permutation(len(t.rows), t.set.Seed, st.Epoch, t.set.Shuffle)
		t.permFor = st.Epoch
	}
	step := st.Step + 1
	nMicro := min(t.set.GradAccum, t.perEpoch-st.Batch)
	micro := make([][]*Row, nMicro)
	items, tokens := 0, 0
	for k := range micro {
		lo := (st.Batch + k) * t.set.Batch
		hi := min(lo+t.set.Batch, len(t.rows))
		for _, i := range t.perm[lo:hi] {
			micro[k] = append(micro[k], &t.rows[i])
		}
		if t.set.UnshiftedCount {
			items += unshiftedTargets(micro[k])
		} else {
			for _, r := range micro[k] {
				items += r.Targets()
			}
		}
		tokens += tokenCount(micro[k])
	}
	t.model.ZeroGrad()
	var sum float64
	for k, rows := range micro {
		b := makeBatch(rows, t.pad)
		s, _, err := t.model.ForwardBackward(b, llama.Step{Denominator: float64(items), Seed: dropoutSeed(t.set.Seed, step, k)})
		if err != nil {
			return StepResult{}, fmt.Errorf("step %d: %w", step, err)
		}
		sum += s
	}
	if t.OnGradients != nil {
		t.OnGradients(step, t.params)
	}
	norm, err := t.clip()
	if err != nil {
		return StepResult{}, err
	}
	lr := t.sched.LR(t.set.LR, step)
	h := compute.AdamW{LR: lr, Beta1: t.set.Beta1, Beta2: t.set.Beta2, Eps: t.set.Eps, WeightDecay: t.set.WeightDecay, Step: step}
	for i, p := range t.params {
		t.be.AdamWStep(h, p.Value, p.Grad, t.m[i], t.v[i])
	}
	if err := t.be.Sync(); err != nil {
		return StepResult{}, err
	}
	st.Step = step
	st.Batch += nMicro
	r := StepResult{Step: step, LR: lr, GradNorm: float64(norm), Tokens: tokens, Targets: items,
		Epoch: float64(st.Epoch) + float64(st.Batch)/float64(t.perEpoch)}
	if items > 0 {
		r.Loss = sum / float64(items)
	}
	if el := time.Since(start).Seconds(); el > 0 {
		r.TokensPerS = float64(tokens) / el
	}
	return r, nil
}

// clip computes the global gradient norm (the 2-norm of the per-tensor
// 2-norms, in f32 as torch's clip_grad_norm_) and, when MaxGradNorm > 0,
// multiplies every gradient by min(1, max/(norm + 1e-6)). It returns the
// pre-clip norm.
func (t *Trainer) clip() (float32, error) {
	for i, p := range t.params {
		t.be.Norm2(t.be.View(t.norms, i, 1), p.Grad)
	}
	ns := make([]float32, len(t.params))
	if err := t.be.Download(ns, t.norms); err != nil {
		return 0, err
	}
	var s float64
	for _, n := range ns {
		s += float64(n) * float64(n)
	}
	total := float32(math.Sqrt(s))
	if t.set.MaxGradNorm > 0 {
		coef := ClipCoef(total, t.set.MaxGradNorm)
		for _, p := range t.params {
			t.be.Scale(p.Grad, coef)
		}
	}
	return total, nil
}

// ClipCoef is torch's clip coefficient min(1, max/(total + 1e-6)), in f32.
func ClipCoef(total float32, maxNorm float64) float32 {
	return min(1, float32(maxNorm)/(total+1e-6))
}

// Fingerprint identifies the training rows (ids, labels and segments, in
// order), so that a checkpoint is resumed only on the same data.
func Fingerprint(rows []Row) string {
	h := sha256.New()
	var buf [4]byte
	put := func(v int32) {
		binary.LittleEndian.PutUint32(buf[:], uint32(v))
		h.Write(buf[:])
	}
	for _, r := range rows {
		put(int32(len(r.IDs)))
		for i := range r.IDs {
			put(r.IDs[i])
			put(r.Labels[i])
		}
		put(int32(len(r.Segments)))
		for _, s := range r.Segments {
			put(int32(s))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// EvalResult is the loss of a model on examples.
type EvalResult struct {
	// Loss is the mean cross-entropy over all scored positions.
	Loss       float64       `json:"loss"`
	Perplexity float64       `json:"perplexity"`
	Targets    int           `json:"targets"`
	Examples   []ExampleLoss `json:"examples"`
}

// ExampleLoss is the loss of one example.
type ExampleLoss struct {
	Line    int     `json:"line"`
	Loss    float64 `json:"loss"` // mean over its scored positions; 0 when none
	Targets int     `json:"targets"`
}

// Evaluate computes the loss of the model (evaluation mode: no dropout)
// on each example, one at a time.
func Evaluate(m *llama.Model, ex []Example) (*EvalResult, error) {
	r := &EvalResult{Examples: make([]ExampleLoss, 0, len(ex))}
	var sum float64
	for _, e := range ex {
		s, n, err := m.Loss(llama.Batch{Rows: 1, Seq: len(e.IDs), IDs: e.IDs, Labels: e.Labels})
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", e.Line, err)
		}
		el := ExampleLoss{Line: e.Line, Targets: n}
		if n > 0 {
			el.Loss = s / float64(n)
		}
		r.Examples = append(r.Examples, el)
		sum += s
		r.Targets += n
	}
	if r.Targets > 0 {
		r.Loss = sum / float64(r.Targets)
		r.Perplexity = math.Exp(r.Loss)
	}
	return r, nil
}
