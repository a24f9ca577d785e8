// Package tool holds what a lorakit library run takes from its caller
// besides its own options: the standard streams, the registry that removes
// unfinished outputs on an interrupt, the thread count, the folder for
// temporary files, and callbacks for progress and messages. Every feature
// package's options embed an Env; the zero Env is a quiet run on all cores
// with the process's stdin and stdout.
package tool

import (
	"io"
	"os"
	"path/filepath"

	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/output"
)

// StdinOnce is the usage error for paths that name stdin ("-") more than
// once; "" is ignored.
func StdinOnce(paths ...string) error {
	n := 0
	for _, p := range paths {
		if p == "-" {
			n++
		}
	}
	if n > 1 {
		return errclass.Usagef("'-' (stdin) may be given once")
	}
	return nil
}

// Env is the environment of one run.
type Env struct {
	// Stdin is read for an input named "-"; nil means os.Stdin.
	Stdin io.Reader
	// Stdout receives an output named "-"; nil means os.Stdout.
	Stdout io.Writer
	// Cleanup, when not nil, tracks temporary outputs until they are
	// committed, so that an interrupt can remove them.
	Cleanup *output.Cleanup
	// Threads is the number of worker goroutines; 0 means one per core.
	// Results never depend on it.
	Threads int
	// TempDir holds spill files; "" means beside the output (os.TempDir
	// for standard output).
	TempDir string
	// Progress, when set, is called with the work done so far and the
	// total (bytes, or steps for training).
	Progress func(done, total int64)
	// Logf, when set, receives details (timings, choices made).
	Logf func(format string, args ...any)
	// Warnf, when set, receives warnings: findings the user should see.
	Warnf func(format string, args ...any)
}

// In returns the reader for "-".
func (e *Env) In() io.Reader {
	if e.Stdin == nil {
		return os.Stdin
	}
	return e.Stdin
}

// Output returns the options of package output for this run.
func (e *Env) Output() output.Options {
	return output.Options{Stdout: e.Stdout, Cleanup: e.Cleanup}
}

// SpillDir is the folder for the spill file of a run writing to out:
// TempDir, else out's folder (it must hold the output anyway), else
// os.TempDir() for standard output.
func (e *Env) SpillDir(out string) string {
	switch {
	case e.TempDir != "":
		return e.TempDir
	case out == "-" || out == "":
		return os.TempDir()
	}
	return filepath.Dir(filepath.Clean(out))
}

// Log sends a detail to Logf, if set.
func (e *Env) Log(format string, args ...any) {
	if e.Logf != nil {
		e.Logf(format, args...)
	}
}

// Warn sends a warning to Warnf, if set.
func (e *Env) Warn(format string, args ...any) {
	if e.Warnf != nil {
		e.Warnf(format, args...)
	}
}

// Report sends progress to Progress, if set.
func (e *Env) Report(done, total int64) {
	if e.Progress != nil {
		e.Progress(done, total)
	}
}
