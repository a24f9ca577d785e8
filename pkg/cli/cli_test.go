package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

func TestAtomicFileCommitAndAbort(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "out.safetensors")
	os.WriteFile(target, []byte("old"), 0o644)
	a, err := CreateAtomic(target)
	if err != nil {
		t.Fatal(err)
	}
	a.WriteString("new")
	if b, _ := os.ReadFile(target); string(b) != "old" {
		t.Fatal("target changed before commit")
	}
	a.Abort()
	if b, _ := os.ReadFile(target); string(b) != "old" {
		t.Fatal("abort changed the target")
	}
	assertOnly(t, dir, "out.safetensors")

	a, _ = CreateAtomic(target)
	a.WriteString("new")
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "new" {
		t.Fatal("commit did not replace the target")
	}
	assertOnly(t, dir, "out.safetensors")
}

func TestAtomicDirAndAbortAll(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "adapter")
	d, err := CreateAtomicDir(target)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := d.Create("a.json")
	f.WriteString("{}")
	f.Close()
	if err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(target, "a.json")); err != nil {
		t.Fatal(err)
	}
	// A second write replaces the folder whole; an interrupted one leaves the first.
	d2, _ := CreateAtomicDir(target)
	f2, _ := d2.Create("b.json")
	f2.Close()
	a, _ := CreateAtomic(filepath.Join(dir, "x.safetensors"))
	abortAll() // what an interrupt does
	a.Abort()
	assertOnly(t, dir, "adapter")
	if _, err := os.Stat(filepath.Join(target, "a.json")); err != nil {
		t.Fatal("interrupted write damaged the committed folder")
	}
}

func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	es, _ := os.ReadDir(dir)
	if len(es) != len(names) {
		var got []string
		for _, e := range es {
			got = append(got, e.Name())
		}
		t.Fatalf("folder holds %v, want %v", got, names)
	}
}

func TestIsDirTarget(t *testing.T) {
	for path, want := range map[string]bool{"out": true, "out/": true, "m.safetensors": false, "m.safetensors.zst": false, "-": false, "x.gguf": false} {
		if IsDirTarget(path) != want {
			t.Errorf("IsDirTarget(%q) != %v", path, want)
		}
	}
}

func TestDevNullIsNotATerminal(t *testing.T) {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Fatal("/dev/null reported as a terminal")
	}
}

func TestWritebackWriter(t *testing.T) {
	for _, size := range []int{0, 1, writeChunk - 1, writeChunk, writeChunk + 1, 3*writeChunk + 7, writebackBytes + 5} {
		f, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i * 7)
		}
		w := Writeback(f)
		if n, err := w.Write(data); n != size || err != nil {
			t.Fatalf("size %d: wrote %d, %v", size, n, err)
		}
		f.Close()
		got, _ := os.ReadFile(f.Name())
		if string(got) != string(data) {
			t.Fatalf("size %d: file differs", size)
		}
	}
	// A write error is reported with the count of bytes written.
	f, _ := os.Create(filepath.Join(t.TempDir(), "closed"))
	f.Close()
	if n, err := Writeback(f).Write(make([]byte, 10)); err == nil || n != 0 {
		t.Fatalf("write to a closed file: %d, %v", n, err)
	}
}
