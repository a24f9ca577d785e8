package output

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestAtomicFileCommitAndAbort(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "out.safetensors")
	os.WriteFile(target, []byte("old"), 0o644)
	a, err := CreateFile(target, nil)
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

	a, _ = CreateFile(target, nil)
	a.WriteString("new")
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "new" {
		t.Fatal("commit did not replace the target")
	}
	assertOnly(t, dir, "out.safetensors")
}

func TestAtomicDirAndCleanup(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "adapter")
	d, err := CreateDir(target, nil)
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
	c := NewCleanup()
	d2, _ := CreateDir(target, c)
	f2, _ := d2.Create("b.json")
	f2.Close()
	a, _ := CreateFile(filepath.Join(dir, "x.safetensors"), c)
	c.RemoveAll() // what an interrupt does
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

func TestOpenStdout(t *testing.T) {
	var buf bytes.Buffer
	o, err := Open("-", Options{Stdout: &buf})
	if err != nil || o.file != nil {
		t.Fatal(err)
	}
	o.Write([]byte("data"))
	if err := o.Commit(); err != nil || buf.String() != "data" {
		t.Fatalf("commit %v, wrote %q to the given stdout", err, buf.String())
	}
	dir := t.TempDir()
	c := NewCleanup()
	f, err := Open(filepath.Join(dir, "out.gguf"), Options{Cleanup: c})
	if err != nil || f.file == nil {
		t.Fatal(err)
	}
	f.Write([]byte("x"))
	c.RemoveAll()
	f.Abort()
	assertOnly(t, dir)
}
