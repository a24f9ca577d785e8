package train

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/cli"
)

// progress draws "step 12/100  loss 2.3456  1,234 tok/s  ETA 3m20s" on
// stderr when it is a terminal and the run is not quiet.
type progress struct {
	w         io.Writer
	enabled   bool
	total     int
	firstStep int
	start     time.Time
	last      time.Time
	tokens    int64
}

func newProgress(ctx *cli.Context, total, firstStep int) *progress {
	p := &progress{w: ctx.Stderr, total: total, firstStep: firstStep, start: time.Now()}
	if f, ok := ctx.Stderr.(*os.File); ok && !ctx.Quiet && cli.IsTerminal(f) {
		p.enabled = true
	}
	return p
}

func (p *progress) update(r StepResult) {
	p.tokens += int64(r.Tokens)
	if !p.enabled {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond && r.Step != p.total {
		return
	}
	p.last = now
	el := now.Sub(p.start)
	done := r.Step - p.firstStep
	eta := "?"
	if done > 0 {
		eta = (time.Duration(float64(el) / float64(done) * float64(p.total-r.Step))).Round(time.Second).String()
	}
	rate := float64(p.tokens) / max(el.Seconds(), 1e-9)
	fmt.Fprintf(p.w, "\rstep %d/%d  loss %.4f  %s tok/s  ETA %s\033[K", r.Step, p.total, r.Loss, num.Thousands(int64(rate)), eta)
}

func (p *progress) done() {
	if p.enabled {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
