package cli

import (
	"context"
	"errors"
	"fmt"
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
