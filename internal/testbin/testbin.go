// Package testbin builds the project's binaries for end-to-end tests and
// locates the shared fixtures.
package testbin

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
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

// Fixtures returns ../shared/fixtures beside the repository, or skips.
func Fixtures(t testing.TB) string {
	t.Helper()
	for _, c := range []string{filepath.Join(Root(t), "..", "shared", "fixtures"), filepath.Join(Root(t), "shared", "fixtures")} {
		if st, err := os.Stat(c); err == nil && st.IsDir() {
			return c
		}
	}
	t.Skip("shared/fixtures not found")
	return ""
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
		d, err := os.MkdirTemp("", "lorakit-bin-")
		if err != nil {
			t.Fatal(err)
		}
		dir = d
	}
	out := filepath.Join(dir, name)
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
