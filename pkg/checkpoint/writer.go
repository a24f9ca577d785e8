package checkpoint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/lorakit/lorakit/pkg/output"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// Writer writes a checkpoint or adapter to a folder (one file per shard,
// with model.safetensors.index.json when there are several, and the carried
// files), to one .safetensors file (optionally .gz/.zst) or to stdout ("-").
// Single files and streams carry the files in __metadata__. Every offset is
// known before the first byte; the output appears atomically on Commit.
type Writer struct {
	order    []safetensors.TensorInfo
	shards   []Shard
	shardEnd []int // per shard, the index in order after its last tensor
	shard    int   // index of the shard being written
	cur      *safetensors.Writer
	pos      int   // index in order of the tensor being written
	partial  int64 // its bytes written

	dir     *output.Dir
	out     *output.Output
	comp    io.WriteCloser
	files   map[string][]byte
	single  bool
	written int64
}

// Create prepares the output at path, with "-" the process's stdout and no
// cleanup registry: CreateWith with zero options.
func Create(path string, files map[string][]byte, shards []Shard) (*Writer, error) {
	return CreateWith(path, files, shards, output.Options{})
}

// CreateWith prepares the output at path: a folder, a .safetensors file
// (.gz/.zst compressed by name) or "-" (o.Stdout). shards gives the layout
// in folder mode (their names become file names); single-file and stream
// outputs put every tensor in one file. The tensors of each file are laid
// out in the reference order; Order tells the order WriteTensor must follow.
func CreateWith(path string, files map[string][]byte, shards []Shard, o output.Options) (*Writer, error) {
	w := &Writer{files: files}
	if path == "-" || !output.IsDirTarget(path) {
		w.single = true
		var all []safetensors.TensorInfo
		for _, s := range shards {
			all = append(all, s.Tensors...)
		}
		name := "model.safetensors"
		if len(shards) > 0 {
			name = shards[0].Name
		}
		shards = []Shard{{Name: name, Tensors: all}}
	}
	for i := range shards {
		ts := append([]safetensors.TensorInfo(nil), shards[i].Tensors...)
		safetensors.SortReference(ts)
		shards[i].Tensors = ts
		w.order = append(w.order, ts...)
		w.shardEnd = append(w.shardEnd, len(w.order))
	}
	w.shards = shards
	if w.single {
		out, err := output.Open(path, o)
		if err != nil {
			return nil, err
		}
		w.out = out
		comp := safetensors.None
		if path != "-" {
			comp = safetensors.CompressionFor(path)
		}
		if w.comp, err = safetensors.Compress(out, comp); err != nil {
			out.Abort()
			return nil, err
		}
	} else {
		d, err := output.CreateDir(path, o.Cleanup)
		if err != nil {
			return nil, err
		}
		w.dir = d
		for _, name := range sortedNames(files) {
			if err := os.WriteFile(filepath.Join(d.Path, name), files[name], 0o644); err != nil {
				d.Abort()
				return nil, err
			}
		}
		if len(shards) > 1 {
			if err := w.writeIndex(); err != nil {
				d.Abort()
				return nil, err
			}
		}
	}
	if err := w.openShard(); err != nil {
		w.Abort()
		return nil, err
	}
	return w, nil
}

func sortedNames(m map[string][]byte) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// writeIndex writes model.safetensors.index.json as transformers does
// (sorted keys, two-space indent, trailing newline).
func (w *Writer) writeIndex() error {
	wm := map[string]string{}
	var total int64
	for _, s := range w.shards {
		for _, t := range s.Tensors {
			wm[t.Name] = s.Name
			total += t.NumElements() * int64(t.DType.Size())
		}
	}
	ix := map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": wm}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(ix); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(w.dir.Path, safetensors.IndexFile), buf.Bytes(), 0o644)
}

// openShard starts the next shard file that has data to write, finishing
// the ones that hold none.
func (w *Writer) openShard() error {
	for w.shard < len(w.shards) {
		s := w.shards[w.shard]
		var dst io.Writer
		md := map[string]string{"format": "pt"}
		if w.single {
			dst = w.comp
			md = Metadata(w.files)
		} else {
			f, err := w.dir.Create(s.Name)
			if err != nil {
				return err
			}
			dst = &closingWriter{f: f, w: output.Writeback(f)}
		}
		sw, err := safetensors.NewWriterOrdered(dst, md, s.Tensors)
		if err != nil {
			return err
		}
		w.cur = sw
		w.skipEmpty()
		if w.pos < w.shardEnd[w.shard] {
			return nil
		}
		if err := w.finishShard(); err != nil {
			return err
		}
	}
	return nil
}

// dataSize is the byte size of a tensor's data from its dtype and shape (the
// layout's TensorInfos carry no offsets).
func dataSize(t safetensors.TensorInfo) int64 { return t.NumElements() * int64(t.DType.Size()) }

// skipEmpty moves past zero-byte tensors of the current shard.
func (w *Writer) skipEmpty() {
	for w.partial == 0 && w.pos < w.shardEnd[w.shard] && dataSize(w.order[w.pos]) == 0 {
		w.pos++
	}
}

func (w *Writer) finishShard() error {
	if err := w.cur.Close(); err != nil {
		return err
	}
	if !w.single {
		if err := w.cur.Underlying().(*closingWriter).f.Close(); err != nil {
			return err
		}
	}
	w.cur = nil
	w.shard++
	return nil
}

// closingWriter remembers the shard's file so it can be closed.
type closingWriter struct {
	f *os.File
	w io.Writer
}

func (c *closingWriter) Write(p []byte) (int, error) { return c.w.Write(p) }

// Order is the order in which tensors must be written.
func (w *Writer) Order() []safetensors.TensorInfo { return w.order }

// Written is the number of data bytes written so far.
func (w *Writer) Written() int64 { return w.written }

// WriteTensor writes the next tensor's bytes, all at once. Zero-byte
// tensors need no call (they are passed over on their own); one is
// accepted.
func (w *Writer) WriteTensor(name string, data []byte) error {
	if w.pos < len(w.order) && w.order[w.pos].Name == name && w.partial == 0 {
		if n := dataSize(w.order[w.pos]); int64(len(data)) != n {
			return fmt.Errorf("%w: tensor %q: %d bytes given, %d expected", safetensors.ErrWrite, name, len(data), n)
		}
		_, err := w.Write(data)
		return err
	}
	if len(data) == 0 && slices.ContainsFunc(w.order[:w.pos], func(t safetensors.TensorInfo) bool { return t.Name == name && dataSize(t) == 0 }) {
		return nil
	}
	expected := "none: every tensor has been written"
	if w.pos < len(w.order) {
		expected = fmt.Sprintf("%q", w.order[w.pos].Name)
	}
	return fmt.Errorf("%w: tensor %q written out of order (expected %s)", safetensors.ErrWrite, name, expected)
}

// Write writes tensor data in Order, across tensor and shard boundaries:
// a tensor may come in several pieces.
func (w *Writer) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if w.cur == nil {
			return n, fmt.Errorf("%w: %d bytes beyond the last tensor", safetensors.ErrWrite, len(p))
		}
		t := w.order[w.pos]
		k := min(dataSize(t)-w.partial, int64(len(p)))
		m, err := w.cur.Write(p[:k])
		n += m
		w.partial += int64(m)
		w.written += int64(m)
		if err != nil {
			return n, err
		}
		p = p[k:]
		if w.partial == dataSize(t) {
			w.pos++
			w.partial = 0
			if err := w.advance(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// advance skips zero-byte tensors and moves to the next shard when the
// current one is complete.
func (w *Writer) advance() error {
	if w.cur == nil {
		return nil
	}
	w.skipEmpty()
	if w.pos < w.shardEnd[w.shard] {
		return nil
	}
	if err := w.finishShard(); err != nil {
		return err
	}
	return w.openShard()
}

// Commit finishes the output and makes it visible.
func (w *Writer) Commit() error {
	if err := w.advance(); err != nil {
		w.Abort()
		return err
	}
	if w.cur != nil || w.shard < len(w.shards) {
		w.Abort()
		return fmt.Errorf("%w: not every tensor was written", safetensors.ErrWrite)
	}
	if w.single {
		if err := w.comp.Close(); err != nil {
			w.Abort()
			return err
		}
		return w.out.Commit()
	}
	return w.dir.Commit()
}

// Abort discards the output.
func (w *Writer) Abort() {
	if w.out != nil {
		w.out.Abort()
	}
	if w.dir != nil {
		w.dir.Abort()
	}
}
