package cli

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/lorakit/lorakit/internal/num"
)

// Progress draws a one-line status on stderr when stderr is a terminal and
// the run is not quiet, at most ten times a second; otherwise every method
// is a no-op.
type Progress struct {
	mu      sync.Mutex
	w       io.Writer
	label   string
	start   time.Time
	last    time.Time
	enabled bool
	drawn   bool
}

// NewProgress starts a status line labelled label.
func (c *Context) NewProgress(label string) *Progress {
	return &Progress{w: c.Stderr, label: label, start: time.Now(), enabled: !c.Quiet() && IsTerminal(c.Stderr)}
}

// Report shows done bytes of total (total <= 0: unknown), with the rate and
// the time left; it has the signature of tool.Env.Progress.
func (p *Progress) Report(done, total int64) {
	p.Line(done == total, func(el time.Duration) string {
		rate := float64(done) / max(el.Seconds(), 1e-9)
		if total <= 0 {
			return fmt.Sprintf("%s %s %s/s", p.label, num.Bytes(done, 1), num.Bytes(int64(rate), 1))
		}
		return fmt.Sprintf("%s %5.1f%% %s/%s %s/s ETA %s", p.label, 100*float64(done)/float64(total),
			num.Bytes(done, 1), num.Bytes(total, 1), num.Bytes(int64(rate), 1), ETA(el, float64(done)/float64(total)))
	})
}

// Line redraws the status with the text line returns, given the time since
// the start; at most every 100 ms unless final.
func (p *Progress) Line(final bool, line func(elapsed time.Duration) string) {
	if p == nil || !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond && !final {
		return
	}
	p.last, p.drawn = now, true
	fmt.Fprintf(p.w, "\r%s\033[K", line(now.Sub(p.start)))
}

// ETA is the time left of a job that took elapsed for fraction of its work.
func ETA(elapsed time.Duration, fraction float64) string {
	if fraction <= 0 {
		return "?"
	}
	return time.Duration(float64(elapsed) * (1 - fraction) / fraction).Round(time.Second).String()
}

// Done clears the status line.
func (p *Progress) Done() {
	if p == nil || !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}
