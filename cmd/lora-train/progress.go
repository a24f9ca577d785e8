package main

import (
	"fmt"
	"io"
	"time"

	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/train"
)

// stepProgress draws "step 12/100  loss 2.3456  1,234 tok/s  ETA 3m20s" on
// stderr when it is a terminal and the run is not quiet.
type stepProgress struct {
	w         io.Writer
	enabled   bool
	firstStep int // the step before the first this run makes
	start     time.Time
	last      time.Time
	tokens    int64
}

func newStepProgress(ctx *cli.Context) *stepProgress {
	return &stepProgress{w: ctx.Stderr, enabled: !ctx.Quiet() && cli.IsTerminal(ctx.Stderr), firstStep: -1, start: time.Now()}
}

func (p *stepProgress) update(r train.StepResult, total int) {
	if p.firstStep < 0 {
		p.firstStep = r.Step - 1
	}
	p.tokens += int64(r.Tokens)
	if !p.enabled {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond && r.Step != total {
		return
	}
	p.last = now
	el := now.Sub(p.start)
	done := r.Step - p.firstStep
	eta := "?"
	if done > 0 {
		eta = (time.Duration(float64(el) / float64(done) * float64(total-r.Step))).Round(time.Second).String()
	}
	rate := float64(p.tokens) / max(el.Seconds(), 1e-9)
	fmt.Fprintf(p.w, "\rstep %d/%d  loss %.4f  %s tok/s  ETA %s\033[K", r.Step, total, r.Loss, num.Thousands(int64(rate)), eta)
}

func (p *stepProgress) done() {
	if p.enabled {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
