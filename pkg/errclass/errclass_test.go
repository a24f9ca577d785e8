package errclass

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestOf(t *testing.T) {
	errBad := New(Invalid, "pkg: bad")
	errBug := New(Failure, "pkg: internal check failed")
	cases := []struct {
		err  error
		want error
	}{
		{nil, nil},
		{errors.New("disk full"), Failure},
		{errBug, Failure},
		{errBad, Invalid},
		{fmt.Errorf("x.safetensors: tensor %q: %w", "w", errBad), Invalid},
		{Usagef("--rank %d", -1), Usage},
		{Invalidf("x: %w", errBug), Invalid},
		{Requirementf("no GPU"), Requirement},
		{fmt.Errorf("step 3: %w", context.Canceled), Interrupted},
		{Wrap(Usage, errBad), Usage}, // usage outranks invalid input
		{fmt.Errorf("%w: %w", Interrupted, errBad), Interrupted},
	}
	for _, c := range cases {
		if got := Of(c.err); got != c.want {
			t.Errorf("Of(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestMessages(t *testing.T) {
	if m := Invalidf("x.safetensors: %s", "bad").Error(); m != "x.safetensors: bad" {
		t.Errorf("Invalidf message %q", m)
	}
	inner := New(Invalid, "pkg: bad")
	if err := Wrap(Usage, inner); err.Error() != "pkg: bad" || !errors.Is(err, inner) {
		t.Errorf("Wrap: %q", err)
	}
	if Wrap(Usage, nil) != nil {
		t.Error("Wrap(nil) is not nil")
	}
	if a, b := New(Invalid, "same"), New(Invalid, "same"); errors.Is(a, b) {
		t.Error("two sentinels with one message are the same error")
	}
}

func TestNewRefusesNonClass(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("New accepted an error that is not a class")
		}
	}()
	New(errors.New("not a class"), "x")
}
