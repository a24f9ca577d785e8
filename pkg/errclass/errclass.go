// Package errclass gives every lorakit error a class: what went wrong from
// the caller's point of view. The command-line tools turn the class into
// their exit code in one place (internal/cli); a Go program tests it with
// errors.Is:
//
//	if errors.Is(err, errclass.Invalid) { ... the input is at fault ... }
//
// Every sentinel error of every lorakit package is made with New and so
// wraps exactly one class; errors that wrap none are failures (I/O errors,
// bugs). The package imports nothing of lorakit: every layer may use it.
package errclass

import (
	"context"
	"errors"
	"fmt"
)

// The classes. They are error values so that errors.Is finds them in any
// chain of wrapped errors.
var (
	// Usage: bad flags, arguments or options (exit code 2).
	Usage = errors.New("usage error")
	// Invalid: invalid or unsupported input — a corrupt file, an unknown
	// architecture, an adapter that does not fit its base (exit code 3).
	Invalid = errors.New("invalid input")
	// Requirement: a requirement of the run is not met, e.g. no usable GPU
	// for --device cuda (exit code 4).
	Requirement = errors.New("requirement not met")
	// Interrupted: the run was cancelled (exit code 130).
	Interrupted = errors.New("interrupted")
	// Failure: anything else — an I/O error, a failed internal check (exit
	// code 1). Sentinels of this class state that failing is their meaning;
	// an error that wraps no class is a failure too.
	Failure = errors.New("failure")
)

// Classes lists the classes in the order a classifier must test them: an
// error that wraps several classes belongs to the first.
var Classes = []error{Interrupted, Usage, Requirement, Invalid, Failure}

// sentinel is a package's sentinel error: its own message, and its class
// for errors.Is.
type sentinel struct {
	msg   string
	class error
}

func (e *sentinel) Error() string { return e.msg }
func (e *sentinel) Unwrap() error { return e.class }

// New returns a sentinel error with the message msg that belongs to class
// (one of the package's class values). Each call returns a distinct error.
func New(class error, msg string) error {
	checkClass(class)
	return &sentinel{msg: msg, class: class}
}

// classed attaches a class to an error without changing its message.
type classed struct {
	err   error
	class error
}

func (e *classed) Error() string   { return e.err.Error() }
func (e *classed) Unwrap() []error { return []error{e.err, e.class} }

// Wrap returns err (nil stays nil) with class added: its message is err's,
// and errors.Is finds both err's chain and class.
func Wrap(class error, err error) error {
	checkClass(class)
	if err == nil {
		return nil
	}
	return &classed{err: err, class: class}
}

// Usagef formats an error of class Usage (as fmt.Errorf: %w wraps).
func Usagef(format string, args ...any) error { return Wrap(Usage, fmt.Errorf(format, args...)) }

// Invalidf formats an error of class Invalid (as fmt.Errorf: %w wraps).
func Invalidf(format string, args ...any) error { return Wrap(Invalid, fmt.Errorf(format, args...)) }

// Requirementf formats an error of class Requirement (as fmt.Errorf: %w wraps).
func Requirementf(format string, args ...any) error {
	return Wrap(Requirement, fmt.Errorf(format, args...))
}

// Of returns the class of err: the first of Classes that err wraps, or
// Failure; nil for a nil error. A cancelled context counts as Interrupted.
func Of(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, Interrupted) || errors.Is(err, context.Canceled) {
		return Interrupted
	}
	for _, c := range Classes[1:] {
		if errors.Is(err, c) {
			return c
		}
	}
	return Failure
}

func checkClass(class error) {
	for _, c := range Classes {
		if class == c {
			return
		}
	}
	panic(fmt.Sprintf("errclass: %v is not a class", class))
}
