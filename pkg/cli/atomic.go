package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/lorakit/lorakit/pkg/errclass"
)

// pending holds the temporary paths of outputs not yet committed, so an
// interrupt or a failure can remove them.
var (
	pendingMu sync.Mutex
	pending   = map[string]bool{}
)

func track(path string) {
	pendingMu.Lock()
	pending[path] = true
	pendingMu.Unlock()
}

func untrack(path string) {
	pendingMu.Lock()
	delete(pending, path)
	pendingMu.Unlock()
}

// abortAll removes every uncommitted temporary output. It holds the lock so
// that it cannot interleave with a commit's rename.
func abortAll() {
	pendingMu.Lock()
	defer pendingMu.Unlock()
	for p := range pending {
		os.RemoveAll(p)
		delete(pending, p)
	}
}

// ErrStdoutTerminal refuses binary output to a terminal.
var ErrStdoutTerminal = errclass.New(errclass.Usage, "refusing to write binary data to a terminal; redirect stdout or use -o FILE")

// AtomicFile is an output file written to a temporary name in the target's
// folder and renamed into place by Commit after an fsync. Until Commit the
// target is untouched; Abort (or an interrupt) removes the temporary file.
type AtomicFile struct {
	*os.File
	target string
	done   bool
}

// CreateAtomic starts an atomic write of path.
func CreateAtomic(path string) (*AtomicFile, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, err
	}
	track(f.Name())
	return &AtomicFile{File: f, target: path}, nil
}

// Commit syncs, closes and renames the file into place.
func (a *AtomicFile) Commit() error {
	if a.done {
		return nil
	}
	if err := a.File.Sync(); err != nil {
		a.Abort()
		return fmt.Errorf("%s: %w", a.target, err)
	}
	if err := a.File.Chmod(0o644); err != nil {
		a.Abort()
		return err
	}
	if err := a.File.Close(); err != nil {
		a.Abort()
		return fmt.Errorf("%s: %w", a.target, err)
	}
	pendingMu.Lock()
	err := os.Rename(a.File.Name(), a.target)
	delete(pending, a.File.Name())
	pendingMu.Unlock()
	a.done = true
	if err != nil {
		os.Remove(a.File.Name())
		return err
	}
	syncDir(filepath.Dir(a.target))
	return nil
}

// Abort discards the temporary file; the target is left as it was.
func (a *AtomicFile) Abort() {
	if a.done {
		return
	}
	a.done = true
	a.File.Close()
	os.Remove(a.File.Name())
	untrack(a.File.Name())
}

// AtomicDir is an output folder built under a temporary name beside the
// target and renamed into place by Commit. An existing target folder is
// replaced only at Commit.
type AtomicDir struct {
	Path   string // the temporary folder to write into
	target string
	done   bool
}

// CreateAtomicDir starts an atomic write of the folder path.
func CreateAtomicDir(path string) (*AtomicDir, error) {
	path = filepath.Clean(path)
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		return nil, fmt.Errorf("%s: exists and is not a folder", path)
	}
	tmp, err := os.MkdirTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, err
	}
	os.Chmod(tmp, 0o755)
	track(tmp)
	return &AtomicDir{Path: tmp, target: path}, nil
}

// Create creates a file inside the temporary folder.
func (d *AtomicDir) Create(name string) (*os.File, error) {
	return os.OpenFile(filepath.Join(d.Path, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
}

// Commit syncs every file and renames the folder into place, replacing an
// existing folder of that name.
func (d *AtomicDir) Commit() error {
	if d.done {
		return nil
	}
	entries, err := os.ReadDir(d.Path)
	if err != nil {
		d.Abort()
		return err
	}
	for _, e := range entries {
		f, err := os.Open(filepath.Join(d.Path, e.Name()))
		if err == nil {
			err = f.Sync()
			f.Close()
		}
		if err != nil {
			d.Abort()
			return fmt.Errorf("%s: %w", filepath.Join(d.target, e.Name()), err)
		}
	}
	syncDir(d.Path)
	pendingMu.Lock()
	defer pendingMu.Unlock()
	var old string
	if _, err := os.Stat(d.target); err == nil {
		old = d.Path + ".old"
		if err := os.Rename(d.target, old); err != nil {
			return err
		}
	}
	if err := os.Rename(d.Path, d.target); err != nil {
		if old != "" {
			os.Rename(old, d.target)
		}
		return err
	}
	delete(pending, d.Path)
	d.done = true
	if old != "" {
		os.RemoveAll(old)
	}
	syncDir(filepath.Dir(d.target))
	return nil
}

// Abort removes the temporary folder.
func (d *AtomicDir) Abort() {
	if d.done {
		return
	}
	d.done = true
	os.RemoveAll(d.Path)
	untrack(d.Path)
}

func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}

// Output is where a tool writes its data: a file (atomic), or stdout.
type Output struct {
	io.Writer
	file   *AtomicFile
	Stdout bool
}

// OpenOutput opens path for writing: "-" is stdout (refused when it is a
// terminal), anything else an atomic file.
func OpenOutput(path string) (*Output, error) {
	if path == "-" {
		if IsTerminal(os.Stdout) {
			return nil, ErrStdoutTerminal
		}
		return &Output{Writer: os.Stdout, Stdout: true}, nil
	}
	f, err := CreateAtomic(path)
	if err != nil {
		return nil, err
	}
	return &Output{Writer: Writeback(f.File), file: f}, nil
}

// Commit makes the output visible (a no-op for stdout).
func (o *Output) Commit() error {
	if o.file != nil {
		return o.file.Commit()
	}
	return nil
}

// Abort discards a file output.
func (o *Output) Abort() {
	if o.file != nil {
		o.file.Abort()
	}
}

// IsDirTarget reports whether an -o value names a folder output: an existing
// folder, or a path with no file extension that ends in a separator or whose
// name has no dot. Single files end in .safetensors (possibly .gz/.zst).
func IsDirTarget(path string) bool {
	if path == "-" {
		return false
	}
	if st, err := os.Stat(path); err == nil {
		return st.IsDir()
	}
	if strings.HasSuffix(path, string(os.PathSeparator)) {
		return true
	}
	base := filepath.Base(path)
	return !strings.Contains(base, ".safetensors") && !strings.HasSuffix(base, ".gguf")
}
