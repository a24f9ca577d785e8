package cli

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/lorakit/lorakit/internal/num"
)

// Progress draws a one-line progress report of bytes on stderr when stderr
// is a terminal and the run is not quiet; otherwise every method is a no-op.
type Progress struct {
	mu      sync.Mutex
	w       io.Writer
	label   string
	start   time.Time
	last    time.Time
	enabled bool
	drawn   bool
}

// NewProgress starts a progress report labelled label.
func (c *Context) NewProgress(label string) *Progress {
	return &Progress{w: c.Stderr, label: label, start: time.Now(), enabled: !c.Quiet() && IsTerminal(c.Stderr)}
}

// Report records done bytes of total (total <= 0: unknown); it has the
// signature of tool.Env.Progress.
func (p *Progress) Report(done, total int64) {
	if p == nil || !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond && done != total {
		return
	}
	p.last, p.drawn = now, true
	rate := float64(done) / max(now.Sub(p.start).Seconds(), 1e-9)
	if total > 0 {
		eta := "?"
		if rate > 0 {
			eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
		}
		fmt.Fprintf(p.w, "\r%s %5.1f%% %s/%s %s/s ETA %s\033[K", p.label, 100*float64(done)/float64(total),
			num.Bytes(done, 1), num.Bytes(total, 1), num.Bytes(int64(rate), 1), eta)
	} else {
		fmt.Fprintf(p.w, "\r%s %s %s/s\033[K", p.label, num.Bytes(done, 1), num.Bytes(int64(rate), 1))
	}
}

// Done clears the progress line.
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
