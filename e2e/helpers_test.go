package e2e

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
)

// tools are the binaries under test.
var tools = []string{"lora-inspect", "lora-quantize", "lora-train", "lora-merge", "lora-gguf"}

// binDir builds every tool and returns a fresh folder holding them under
// their real names (symlinks), for PATH and for the Makefile's BIN.
func binDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bin")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range tools {
		if err := os.Symlink(testbin.Build(t, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// examples is the repository's examples folder.
func examples(t *testing.T) string {
	return filepath.Join(testbin.Root(t), "examples")
}

// result is how a command ended.
type result struct {
	stdout, stderr string
	code           int // exit status, -1 when killed by a signal
	sig            syscall.Signal
}

// run runs a command in dir with PATH starting at bins. A start failure is
// fatal; any exit status is returned.
func run(t *testing.T, dir, bins string, stdin io.Reader, name string, args ...string) result {
	t.Helper()
	// exec.Command looks a bare name up in the test's PATH, not cmd.Env's.
	if p := filepath.Join(bins, name); !strings.ContainsRune(name, '/') && fileExists(p) {
		name = p
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = pathEnv(bins)
	var so, se bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &so, &se
	err := cmd.Run()
	return exitOf(t, err, so.String(), se.String())
}

func exitOf(t *testing.T, err error, so, se string) result {
	t.Helper()
	r := result{stdout: so, stderr: se}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.sig = ws.Signal()
		}
	default:
		t.Fatal(err)
	}
	return r
}

// pathEnv is the environment with bins first on PATH.
func pathEnv(bins string) []string {
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	return append(env, "PATH="+bins+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// copyTree copies a file or a folder; copies are writable whatever the
// source's mode (the shipped examples are read-only).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// entries lists the names in dir.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
