package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/lorakit/lorakit/pkg/errclass"
)

func TestExitCodes(t *testing.T) {
	local := errclass.New(errclass.Invalid, "pkg: corrupt")
	cases := []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{errors.New("disk full"), ExitFailure},
		{errclass.Usagef("bad flag"), ExitUsage},
		{errclass.Invalidf("file %s", "x"), ExitInvalid},
		{errclass.Requirementf("no GPU"), ExitRequirement},
		{fmt.Errorf("x.safetensors: %w", local), ExitInvalid},
		{errclass.Interrupted, ExitInterrupted},
		{fmt.Errorf("step 2: %w", context.Canceled), ExitInterrupted},
	}
	for _, c := range cases {
		if got := ExitCode(c.err); got != c.want {
			t.Errorf("ExitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

func TestPeakRSS(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	if rss := PeakRSS(); rss < 1<<20 || rss > 1<<40 {
		t.Fatalf("peak RSS %d bytes", rss)
	}
}
