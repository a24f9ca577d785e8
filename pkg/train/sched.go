package train

import (
	"fmt"
	"math"
)

// Schedule kinds (transformers' SchedulerType names).
const (
	ScheduleConstant       = "constant"
	ScheduleConstantWarmup = "constant_with_warmup"
	ScheduleLinear         = "linear"
	ScheduleCosine         = "cosine"
)

// Schedule is a learning-rate multiplier λ(t) of transformers'
// get_*_schedule_with_warmup over Total updates with Warmup warm-up steps.
// LambdaLR is stepped after each update, so update k (1-based) uses λ(k−1)
// (spec §10.5): with Warmup > 0 the first update has lr 0.
type Schedule struct {
	Kind   string
	Warmup int
	Total  int
}

// Lambda returns λ(t) for scheduler step t ≥ 0.
func (s Schedule) Lambda(t int) float64 {
	W, N := s.Warmup, s.Total
	warm := func() (float64, bool) {
		if t < W {
			return float64(t) / float64(max(1, W)), true
		}
		return 0, false
	}
	switch s.Kind {
	case ScheduleConstant:
		if W > 0 { // --warmup with "constant" means constant_with_warmup
			if v, ok := warm(); ok {
				return v
			}
		}
		return 1
	case ScheduleConstantWarmup:
		if v, ok := warm(); ok {
			return v
		}
		return 1
	case ScheduleLinear:
		if v, ok := warm(); ok {
			return v
		}
		return math.Max(0, float64(N-t)/float64(max(1, N-W)))
	case ScheduleCosine:
		if v, ok := warm(); ok {
			return v
		}
		p := float64(t-W) / float64(max(1, N-W))
		return math.Max(0, 0.5*(1+math.Cos(math.Pi*2*0.5*p)))
	}
	return math.NaN()
}

// LR returns the learning rate of update k (1-based): base·λ(k−1).
func (s Schedule) LR(base float64, k int) float64 { return base * s.Lambda(k-1) }

// CheckSchedule reports whether kind names a schedule.
func CheckSchedule(kind string) error {
	switch kind {
	case ScheduleConstant, ScheduleConstantWarmup, ScheduleLinear, ScheduleCosine:
		return nil
	}
	return fmt.Errorf("%w: unknown schedule %q (constant, constant_with_warmup, linear, cosine)", ErrSettings, kind)
}

// WarmupSteps resolves a warm-up setting: a value below 1 is a ratio of
// the total, W = ⌈total·ratio⌉ (transformers v5 warmup_steps < 1, v4
// warmup_ratio); otherwise a step count.
func WarmupSteps(warmup float64, total int) (int, error) {
	switch {
	case !(warmup >= 0) || math.IsInf(warmup, 0):
		return 0, fmt.Errorf("%w: warmup %g", ErrSettings, warmup)
	case warmup < 1:
		return int(math.Ceil(float64(total) * warmup)), nil
	case warmup != math.Trunc(warmup) || warmup > math.MaxInt32:
		return 0, fmt.Errorf("%w: warmup %g is neither a ratio below 1 nor a whole number of steps", ErrSettings, warmup)
	}
	return int(warmup), nil
}

// TotalSteps is the number of updates of a run: maxSteps when positive,
// else ⌈epochs · max(1, ⌈batches/accum⌉)⌉ (spec §10.5).
func TotalSteps(maxSteps int, epochs float64, batches, accum int) int {
	if maxSteps > 0 {
		return maxSteps
	}
	perEpoch := max(1, (batches+accum-1)/accum)
	return int(math.Ceil(epochs * float64(perEpoch)))
}
