// Package cli is what every lorakit binary shares at the command-line layer:
// the kong setup, the global flags, the exit-code table and the one function
// that maps an error to its code, the run's context (cancelled on SIGINT and
// SIGTERM, which also remove unfinished outputs), progress on a terminal,
// warnings and deprecation notices. The library packages know none of it:
// commands turn flags into a library options struct and call its run
// function.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/lorakit/lorakit/internal/num"
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

// Preformatted indents every line of s by two spaces, so that --help prints
// it as it is (a table) instead of reflowing it.
func Preformatted(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n")
}

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
	Verbose bool `short:"v" help:"Print more detail (warnings, timings, peak memory)."`
	Threads int  `default:"0" placeholder:"N" help:"Worker threads (0: one per core). Results do not depend on it."`
}

// Context is handed to every command's Run method: the run's context
// (cancelled on SIGINT/SIGTERM), its standard streams, the global flags and
// the registry of temporary outputs that an interrupt removes.
type Context struct {
	context.Context
	Name    string
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	Globals Globals
	Cleanup *output.Cleanup
}

// Quiet reports -q.
func (c *Context) Quiet() bool { return c.Globals.Quiet }

// Verbose reports -v (and not -q).
func (c *Context) Verbose() bool { return c.Globals.Verbose && !c.Globals.Quiet }

// Warnf prints a warning on stderr unless quiet.
func (c *Context) Warnf(format string, args ...any) {
	if !c.Globals.Quiet {
		fmt.Fprintf(c.Stderr, "%s: warning: "+format+"\n", append([]any{c.Name}, args...)...)
	}
}

// Infof prints an informational line on stderr when verbose.
func (c *Context) Infof(format string, args ...any) {
	if c.Verbose() {
		fmt.Fprintf(c.Stderr, "%s: "+format+"\n", append([]any{c.Name}, args...)...)
	}
}

// Deprecated warns (unless quiet) that a flag spelling will go away.
func (c *Context) Deprecated(old, replacement string) {
	c.Warnf("%s is deprecated and will be removed in the next release; use %s", old, replacement)
}

// Env returns the environment a library run takes: the streams, the
// cleanup registry, --threads, and warnings and details printed as the
// flags say. Progress is left to the command (see Progress).
func (c *Context) Env() tool.Env {
	return tool.Env{Stdin: c.Stdin, Stdout: c.Stdout, Cleanup: c.Cleanup, Threads: c.Globals.Threads,
		Logf: c.Infof, Warnf: c.Warnf}
}

// ReportTo is where a command's report goes: stdout, or stderr when stdout
// carries the data (the output is "-").
func (c *Context) ReportTo(out string) io.Writer {
	if out == "-" {
		return c.Stderr
	}
	return c.Stdout
}

// PrintJSON writes v as one indented JSON object.
func PrintJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Tool describes one binary for Main and Run.
type Tool struct {
	Name        string
	Description string
	// Grammar is the kong grammar: a pointer to a struct that embeds
	// Globals, whose commands (or itself) have Run(*Context) error.
	Grammar any
	// Globals points at the Globals embedded in Grammar.
	Globals *Globals
	Options []kong.Option
}

// Streams are a run's standard streams.
type Streams struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Main runs the tool on the process's arguments and streams and exits with
// the code from the table. It never returns.
func Main(t Tool) {
	os.Exit(Run(t, os.Args[1:], Streams{os.Stdin, os.Stdout, os.Stderr}))
}

// Run parses args with the tool's grammar, runs the command with a context
// cancelled by SIGINT/SIGTERM, reports an error as one line on stderr and
// returns the exit code. On a signal it removes the unfinished outputs and
// exits 130 at once: a blocked write may never see the context.
func Run(t Tool, args []string, s Streams) int {
	// Signals are caught from the start, so that one arriving while the
	// command line is parsed still exits 130 with nothing left behind.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cleanup := output.NewCleanup()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	defer func() {
		signal.Stop(sigs)
		close(done)
	}()
	go func() {
		select {
		case <-sigs:
			cancel()
			cleanup.RemoveAll()
			fmt.Fprintf(s.Stderr, "%s: interrupted\n", t.Name)
			os.Exit(ExitInterrupted)
		case <-done:
		}
	}()

	exitCode := -1
	opts := []kong.Option{
		kong.Name(t.Name),
		kong.Description(t.Description + "\n\n" + ExitCodesHelp),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, WrapUpperBound: 100}),
		kong.Exit(func(code int) { exitCode = code }),
		kong.Writers(s.Stdout, s.Stderr),
	}
	opts = append(opts, t.Options...)
	parser, err := kong.New(t.Grammar, opts...)
	if err != nil {
		fmt.Fprintf(s.Stderr, "%s: %v\n", t.Name, err)
		return ExitFailure
	}
	kctx, err := parser.Parse(args)
	if exitCode >= 0 { // --help
		return exitCode
	}
	if err != nil {
		fmt.Fprintf(s.Stderr, "%s: %v\n", t.Name, err)
		fmt.Fprintf(s.Stderr, "Run '%s --help' for usage.\n", t.Name)
		return ExitUsage
	}
	c := &Context{Context: ctx, Name: t.Name, Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr, Cleanup: cleanup}
	if t.Globals != nil {
		c.Globals = *t.Globals
	}
	if c.Globals.Threads < 0 {
		fmt.Fprintf(s.Stderr, "%s: --threads %d must not be negative\n", t.Name, c.Globals.Threads)
		return ExitUsage
	}
	err = kctx.Run(c)
	if err != nil {
		c.Cleanup.RemoveAll()
		if errors.Is(err, syscall.EPIPE) {
			return ExitFailure // the reader went away: nothing to say on stderr
		}
		fmt.Fprintf(s.Stderr, "%s: %v\n", t.Name, err)
		return ExitCode(err)
	}
	if rss := PeakRSS(); rss > 0 {
		c.Infof("peak RSS %s", num.Bytes(rss, 1))
	}
	return ExitOK
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(f)
}
