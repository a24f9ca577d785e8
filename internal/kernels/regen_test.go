package kernels

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestGenerated regenerates every assembly file and stub with _gen into a
// temporary folder and requires the committed files to be byte-identical,
// and every committed generated file to have a generator. It needs the Go
// toolchain and the avo module (from the module cache or the proxy); without
// them it skips.
func TestGenerated(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not regenerating the assembly")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH: cannot regenerate the assembly")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "gen")
	build := exec.Command(goTool, "build", "-o", bin, ".")
	build.Dir = "_gen"
	build.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "GOOS=", "GOARCH=", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		if unreachable.Match(out) {
			t.Skipf("the generator's module (avo) cannot be fetched, not regenerating:\n%s", out)
		}
		t.Fatalf("building _gen: %v\n%s", err, out)
	}
	out := filepath.Join(tmp, "out")
	if b, err := exec.Command(bin, "-dir", out).CombinedOutput(); err != nil {
		t.Fatalf("_gen: %v\n%s", err, b)
	}
	committed, err := filepath.Glob("*/*")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, path := range committed {
		if !generated.MatchString(filepath.Base(path)) || strings.HasPrefix(path, "_") {
			continue
		}
		seen[path] = true
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(out, path))
		if err != nil {
			t.Errorf("%s is committed but _gen does not write it", path)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what _gen writes: run go generate ./internal/kernels", path)
		}
	}
	fresh, _ := filepath.Glob(filepath.Join(out, "*", "*"))
	for _, p := range fresh {
		rel, _ := filepath.Rel(out, p)
		if !seen[rel] {
			t.Errorf("_gen writes %s, which is not committed: run go generate ./internal/kernels", rel)
		}
	}
}

var (
	generated   = regexp.MustCompile(`^(.*_(amd64|arm64)\.s|stubs_(amd64|arm64)\.go)$`)
	unreachable = regexp.MustCompile(`dial tcp|no such host|connection refused|GOPROXY=off|i/o timeout|TLS handshake|missing go.sum entry|module lookup disabled`)
)
