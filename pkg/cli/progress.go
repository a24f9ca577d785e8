package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/lorakit/lorakit/internal/num"
)

// Progress draws a one-line progress report on stderr when stderr is a
// terminal and the run is not quiet; otherwise every method is a no-op.
type Progress struct {
	mu      sync.Mutex
	w       io.Writer
	label   string
	total   int64
	done    int64
	start   time.Time
	last    time.Time
	enabled bool
}

// NewProgress starts a progress report of total units (bytes when total > 0).
func (c *Context) NewProgress(label string, total int64) *Progress {
	p := &Progress{w: c.Stderr, label: label, total: total, start: time.Now()}
	if f, ok := c.Stderr.(*os.File); ok && !c.Quiet && IsTerminal(f) {
		p.enabled = true
	}
	return p
}

// Add records n more units done.
func (p *Progress) Add(n int64) {
	if p == nil || !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if now := time.Now(); now.Sub(p.last) > 100*time.Millisecond {
		p.last = now
		p.draw()
	}
}

func (p *Progress) draw() {
	el := time.Since(p.start).Seconds()
	rate := float64(p.done) / max(el, 1e-9)
	if p.total > 0 {
		pct := 100 * float64(p.done) / float64(p.total)
		eta := "?"
		if rate > 0 {
			eta = time.Duration(float64(p.total-p.done) / rate * float64(time.Second)).Round(time.Second).String()
		}
		fmt.Fprintf(p.w, "\r%s %5.1f%% %s/%s %s/s ETA %s   ", p.label, pct, num.Bytes(p.done, 1), num.Bytes(p.total, 1), num.Bytes(int64(rate), 1), eta)
	} else {
		fmt.Fprintf(p.w, "\r%s %s %s/s   ", p.label, num.Bytes(p.done, 1), num.Bytes(int64(rate), 1))
	}
}

// Done clears the progress line.
func (p *Progress) Done() {
	if p == nil || !p.enabled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprint(p.w, "\r\033[K")
}
