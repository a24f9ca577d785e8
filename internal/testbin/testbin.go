// Package testbin builds the project's binaries for end-to-end tests and
// locates the shared fixtures.
package testbin

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

var (
	mu    sync.Mutex
	built = map[string]string{}
	dir   string
)

// Root is the repository root (the folder holding go.mod).
func Root(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Fixtures returns the shared fixtures folder: shared/fixtures or
// ../shared/fixtures found walking up from the test's working directory (the
// package folder), so it works from a clone with shared/ beside it. It skips
// the test when there is none. $LORAKIT_FIXTURES overrides the search (test
// binaries run on another machine, as scripts/gpu-check.sh does).
func Fixtures(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("LORAKIT_FIXTURES"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		for _, c := range []string{filepath.Join(dir, "shared", "fixtures"), filepath.Join(dir, "..", "shared", "fixtures")} {
			if st, err := os.Stat(c); err == nil && st.IsDir() {
				return c
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("shared/fixtures not found")
		}
		dir = parent
	}
}

// Build compiles cmd/<name> once per test process and returns its path.
func Build(t testing.TB, name string) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if p, ok := built[name]; ok {
		return p
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not available")
	}
	if dir == "" {
		// One folder per checkout, reused by every run: nothing accumulates.
		sum := sha256.Sum256([]byte(Root(t)))
		dir = filepath.Join(os.TempDir(), fmt.Sprintf("lorakit-testbin-%x", sum[:6]))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A per-process name so that concurrent test binaries never overwrite a
	// binary another one is running.
	out := filepath.Join(dir, fmt.Sprintf("%s-%d", name, os.Getpid()))
	removeStale(dir)
	cmd := exec.Command("go", "build", "-o", out, "./cmd/"+name)
	cmd.Dir = Root(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, b)
	}
	built[name] = out
	return out
}

// Result is what a command printed and how it exited.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs bin with args and optional stdin.
func Run(t testing.TB, stdin []byte, bin string, args ...string) Result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return Result{so.String(), se.String(), code}
}

// removeStale deletes binaries left by test processes that have exited.
func removeStale(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		i := strings.LastIndexByte(e.Name(), '-')
		pid, err := strconv.Atoi(e.Name()[i+1:])
		if i < 0 || err != nil || pid == os.Getpid() {
			continue
		}
		if p, err := os.FindProcess(pid); err != nil || p.Signal(syscall.Signal(0)) != nil {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// StartsWithSchema reports whether a JSON report's first key is "schema",
// as every lorakit --json object's is.
func StartsWithSchema(out string) bool {
	return strings.HasPrefix(strings.TrimSpace(out), "{\n  \"schema\": ")
}
