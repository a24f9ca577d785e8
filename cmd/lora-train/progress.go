package main

import (
	"fmt"
	"time"

	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/train"
)

// stepProgress shows "step 12/100  loss 2.3456  1,234 tok/s  ETA 3m20s".
type stepProgress struct {
	*cli.Progress
	first  int // the step before the first this run makes
	tokens int64
}

func newStepProgress(ctx *cli.Context) *stepProgress {
	return &stepProgress{Progress: ctx.NewProgress(""), first: -1}
}

func (p *stepProgress) update(r train.StepResult, total int) {
	if p.first < 0 {
		p.first = r.Step - 1
	}
	p.tokens += int64(r.Tokens)
	p.Line(r.Step == total, func(el time.Duration) string {
		rate := float64(p.tokens) / max(el.Seconds(), 1e-9)
		eta := cli.ETA(el, float64(r.Step-p.first)/float64(total-p.first))
		return fmt.Sprintf("step %d/%d  loss %.4f  %s tok/s  ETA %s", r.Step, total, r.Loss, num.Thousands(int64(rate)), eta)
	})
}

func (p *stepProgress) done() { p.Done() }
