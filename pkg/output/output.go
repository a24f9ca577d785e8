// Package output writes every lorakit output atomically: a file or a folder
// is built under a temporary name beside its target, synced, and renamed
// into place by Commit; until then the target is untouched, and Abort (or
// an interrupt) removes the temporary. "-" is the caller's stdout. There is
// no global state: temporary paths register with the caller's Cleanup, whose
// RemoveAll a signal handler may call while outputs are being written.
package output

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/lorakit/lorakit/internal/term"
	"github.com/lorakit/lorakit/pkg/errclass"
)

// Cleanup tracks the temporary paths of outputs not yet committed, so that
// an interrupt can remove them. A nil *Cleanup tracks nothing.
type Cleanup struct {
	mu     sync.Mutex
	paths  map[string]bool
	closed bool // RemoveAll ran: paths added later are removed at once
}

// NewCleanup returns an empty registry.
func NewCleanup() *Cleanup { return &Cleanup{paths: map[string]bool{}} }

func (c *Cleanup) add(path string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		removeNow(path)
		return
	}
	c.paths[path] = true
}

func (c *Cleanup) remove(path string) { c.commit(path, func() error { return nil }) }

// commit runs a commit's renames of tmp holding the registry's lock, so
// that RemoveAll cannot interleave with them, and forgets tmp once they
// succeed.
func (c *Cleanup) commit(tmp string, renames func() error) error {
	if c == nil {
		return renames()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	err := renames()
	if err == nil {
		delete(c.paths, tmp)
	}
	return err
}

// RemoveAll removes every registered temporary path, and any path
// registered later: the run is over.
func (c *Cleanup) RemoveAll() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for p := range c.paths {
		removeNow(p)
		delete(c.paths, p)
	}
}

// removeNow removes a temporary file or folder that a writer may still be
// using: the folder is first renamed away, so that a file the writer
// creates by its old path during the removal fails instead of keeping the
// folder alive.
func removeNow(p string) {
	gone := p + ".removing"
	if os.Rename(p, gone) == nil {
		p = gone
	}
	for range 3 {
		if err := os.RemoveAll(p); err == nil {
			return
		}
	}
}

// ErrStdoutTerminal refuses binary output to a terminal.
var ErrStdoutTerminal = errclass.New(errclass.Usage, "refusing to write binary data to a terminal; redirect stdout or use -o FILE")

// File is an output file written to a temporary name in the target's folder
// and renamed into place by Commit after an fsync. Until Commit the target
// is untouched; Abort (or the Cleanup's RemoveAll) removes the temporary file.
type File struct {
	*os.File
	target  string
	done    bool
	cleanup *Cleanup
}

// CreateFile starts an atomic write of path, registered with c (may be nil).
func CreateFile(path string, c *Cleanup) (*File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, err
	}
	c.add(f.Name())
	return &File{File: f, target: path, cleanup: c}, nil
}

// Commit syncs, closes and renames the file into place.
func (a *File) Commit() error {
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
	err := a.cleanup.commit(a.File.Name(), func() error { return os.Rename(a.File.Name(), a.target) })
	a.done = true
	if err != nil {
		os.Remove(a.File.Name())
		return err
	}
	syncDir(filepath.Dir(a.target))
	return nil
}

// Abort discards the temporary file; the target is left as it was.
func (a *File) Abort() {
	if a.done {
		return
	}
	a.done = true
	a.File.Close()
	os.Remove(a.File.Name())
	a.cleanup.remove(a.File.Name())
}

// Dir is an output folder built under a temporary name beside the target
// and renamed into place by Commit. An existing target folder is replaced
// only at Commit.
type Dir struct {
	Path    string // the temporary folder to write into
	target  string
	done    bool
	cleanup *Cleanup
}

// CreateDir starts an atomic write of the folder path, registered with c
// (may be nil).
func CreateDir(path string, c *Cleanup) (*Dir, error) {
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
	c.add(tmp)
	return &Dir{Path: tmp, target: path, cleanup: c}, nil
}

// Create creates a file inside the temporary folder.
func (d *Dir) Create(name string) (*os.File, error) {
	return os.OpenFile(filepath.Join(d.Path, name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
}

// Commit syncs every file and renames the folder into place, replacing an
// existing folder of that name.
func (d *Dir) Commit() error {
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
	var old string
	err = d.cleanup.commit(d.Path, func() error {
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
		return nil
	})
	if err != nil {
		return err
	}
	d.done = true
	if old != "" {
		os.RemoveAll(old)
	}
	syncDir(filepath.Dir(d.target))
	return nil
}

// Abort removes the temporary folder.
func (d *Dir) Abort() {
	if d.done {
		return
	}
	d.done = true
	os.RemoveAll(d.Path)
	d.cleanup.remove(d.Path)
}

func syncDir(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
}

// Options say where "-" goes and which registry tracks temporary outputs.
type Options struct {
	// Stdout receives the output "-"; nil means os.Stdout. Binary data is
	// refused when it is a terminal.
	Stdout io.Writer
	// Cleanup, when not nil, tracks the temporary files until they are
	// committed or aborted.
	Cleanup *Cleanup
}

// stdout returns the writer for "-".
func (o Options) stdout() io.Writer {
	if o.Stdout == nil {
		return os.Stdout
	}
	return o.Stdout
}

// Output is where a tool writes its data: a file (atomic), or stdout.
type Output struct {
	io.Writer
	file *File
}

// Open opens path for writing: "-" is o.Stdout (refused when it is a
// terminal), anything else an atomic file.
func Open(path string, o Options) (*Output, error) {
	if path == "-" {
		w := o.stdout()
		if f, ok := w.(*os.File); ok && term.IsTerminal(f) {
			return nil, ErrStdoutTerminal
		}
		return &Output{Writer: w}, nil
	}
	f, err := CreateFile(path, o.Cleanup)
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
