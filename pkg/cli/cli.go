// Package cli holds what every lorakit binary shares: the kong setup,
// common flags, the exit-code table, progress reporting on a terminal, and
// atomic outputs that leave nothing behind on failure or interruption.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/lorakit/lorakit/internal/term"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/output"
	"github.com/lorakit/lorakit/pkg/tool"
)

// Exit codes, the same in every binary.
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitUsage       = 2
	ExitInvalid     = 3
	ExitRequirement = 4
	ExitInterrupted = 130
)

// ExitCodesHelp is the exit-code table printed in every --help.
const ExitCodesHelp = `Exit codes:
  0    ok
  1    failure (I/O error, internal error)
  2    usage error (bad flags or arguments)
  3    invalid or unsupported input (corrupt file, unknown architecture, mismatch)
  4    requirement not met (e.g. --device cuda without a usable GPU)
  130  interrupted (SIGINT/SIGTERM); no partial output is left behind`

// ExitCode is the one place where an error becomes an exit code: its class
// (see package errclass) picks the row of the table.
func ExitCode(err error) int {
	switch errclass.Of(err) {
	case nil:
		return ExitOK
	case errclass.Interrupted:
		return ExitInterrupted
	case errclass.Usage:
		return ExitUsage
	case errclass.Requirement:
		return ExitRequirement
	case errclass.Invalid:
		return ExitInvalid
	}
	return ExitFailure
}

// Globals are the flags every binary accepts.
type Globals struct {
	Quiet   bool `short:"q" help:"Print nothing but errors."`
	Verbose bool `short:"v" help:"Print more detail (warnings, timings)."`
}

// Context is handed to every command's Run method: the run's context
// (cancelled on SIGINT/SIGTERM), its standard streams, and the registry of
// temporary outputs that an interrupt removes.
type Context struct {
	context.Context
	Name    string
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	Quiet   bool
	Verbose bool
	Cleanup *output.Cleanup
}

// Env returns the environment a library run takes: the streams, the
// cleanup registry, and warnings and details printed as the flags say.
func (c *Context) Env() tool.Env {
	return tool.Env{Stdin: c.Stdin, Stdout: c.Stdout, Cleanup: c.Cleanup, Logf: c.Infof, Warnf: c.Warnf}
}

// Warnf prints a warning on stderr unless quiet.
func (c *Context) Warnf(format string, args ...any) {
	if !c.Quiet {
		fmt.Fprintf(c.Stderr, "%s: warning: "+format+"\n", append([]any{c.Name}, args...)...)
	}
}

// Infof prints an informational line on stderr when verbose.
func (c *Context) Infof(format string, args ...any) {
	if c.Verbose && !c.Quiet {
		fmt.Fprintf(c.Stderr, "%s: "+format+"\n", append([]any{c.Name}, args...)...)
	}
}

// Main parses the command line into cmd (a kong grammar whose commands have
// Run(*Context) error methods, or whose root has one), runs it with a context
// cancelled by SIGINT/SIGTERM, reports any error as one line on stderr and
// exits with the code from the table. It never returns.
func Main(name, description string, cmd any, globals *Globals, options ...kong.Option) {
	os.Exit(run(name, description, cmd, globals, os.Args[1:], options...))
}

func run(name, description string, cmd any, globals *Globals, args []string, options ...kong.Option) int {
	exitCode := -1
	opts := []kong.Option{
		kong.Name(name),
		kong.Description(description + "\n\n" + ExitCodesHelp),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, WrapUpperBound: 100}),
		kong.Exit(func(code int) { exitCode = code }),
	}
	opts = append(opts, options...)
	parser, err := kong.New(cmd, opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return ExitFailure
	}
	kctx, err := parser.Parse(args)
	if exitCode >= 0 { // --help
		return exitCode
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		fmt.Fprintf(os.Stderr, "Run '%s --help' for usage.\n", name)
		return ExitUsage
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &Context{Context: ctx, Name: name, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Cleanup: output.NewCleanup()}
	if globals != nil {
		c.Quiet, c.Verbose = globals.Quiet, globals.Verbose
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			// Remove temporary outputs now: a blocked write may never see ctx.
			cancel()
			c.Cleanup.RemoveAll()
			fmt.Fprintf(os.Stderr, "%s: interrupted\n", name)
			os.Exit(ExitInterrupted)
		case <-done:
		}
	}()
	err = kctx.Run(c)
	signal.Stop(sigs)
	close(done)
	if err != nil {
		c.Cleanup.RemoveAll()
		code := ExitCode(err)
		if errors.Is(err, syscall.EPIPE) {
			return ExitFailure
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return code
	}
	return ExitOK
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool { return term.IsTerminal(f) }
