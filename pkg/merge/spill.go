package merge

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// spillFile holds merged tensors that are ready before their turn to be
// written (a stream read in another order than the output's, or 4-bit
// weights whose header entries are only known once quantized). It is an
// unlinked temporary file: nothing is left behind, whatever happens.
type spillFile struct {
	dir   string
	f     *os.File
	end   int64
	where map[string]spilled
}

// spillPuts counts spilled tensors (for tests).
var spillPuts atomic.Int64

type spilled struct {
	off, n int64
	dt     dtype.DType
	shape  []int64
}

func (s *spillFile) put(name string, dt dtype.DType, shape []int64, data []byte) error {
	if s.f == nil {
		f, err := os.CreateTemp(s.dir, ".lora-merge-spill-*")
		if err != nil {
			return err
		}
		os.Remove(f.Name())
		s.f, s.where = f, map[string]spilled{}
	}
	if _, err := s.f.WriteAt(data, s.end); err != nil {
		return fmt.Errorf("spill file: %w", err)
	}
	s.where[name] = spilled{s.end, int64(len(data)), dt, shape}
	spillPuts.Add(1)
	s.end += int64(len(data))
	return nil
}

func (s *spillFile) has(name string) bool {
	_, ok := s.where[name]
	return ok
}

// size is the byte length of a spilled tensor.
func (s *spillFile) size(name string) int { return int(s.where[name].n) }

// take reads a spilled tensor into buf (reallocated when too small).
func (s *spillFile) take(name string, buf []byte) ([]byte, error) {
	e := s.where[name]
	buf = grow(buf, int(e.n))
	if _, err := s.f.ReadAt(buf, e.off); err != nil {
		return nil, fmt.Errorf("spill file: %w", err)
	}
	delete(s.where, name)
	return buf, nil
}

func (s *spillFile) close() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// bufPool recycles output buffers: models repeat a few tensor sizes, so a
// handful of buffers serves the whole merge and the heap stays bounded.
type bufPool struct {
	mu   sync.Mutex
	free [][]byte
}

func (p *bufPool) get(n int) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	best := -1
	for i, b := range p.free {
		if cap(b) >= n && cap(b) <= 2*n+4096 && (best < 0 || cap(b) < cap(p.free[best])) {
			best = i
		}
	}
	if best < 0 {
		return make([]byte, n)
	}
	b := p.free[best]
	p.free = append(p.free[:best], p.free[best+1:]...)
	return b[:n]
}

func (p *bufPool) put(b []byte) {
	if cap(b) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, b)
	if len(p.free) > 6 { // drop the oldest
		p.free = p.free[1:]
	}
}

// spool copies a stream source to an unlinked temporary file and opens it,
// so that its tensors can be read in any order (4-bit streams: a weight's
// state tensors follow it in the stream).
func spool(src *checkpoint.Source, dir string) (*checkpoint.Source, func(), error) {
	f, err := os.CreateTemp(dir, ".lora-merge-spool-*.safetensors")
	if err != nil {
		return nil, nil, err
	}
	name := f.Name()
	fail := func(err error) (*checkpoint.Source, func(), error) {
		f.Close()
		os.Remove(name)
		return nil, nil, err
	}
	sw, err := safetensors.NewWriterOrdered(f, checkpoint.Metadata(src.Files), src.Tensors)
	if err != nil {
		return fail(err)
	}
	if err := src.Each(func(t safetensors.TensorInfo, data []byte) error { return sw.WriteTensor(t.Name, data) }); err != nil {
		return fail(err)
	}
	if err := sw.Close(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	out, err := checkpoint.Open(name, nil)
	os.Remove(name) // the mapping keeps the data until Close
	if err != nil {
		return nil, nil, err
	}
	out.Path = src.Path
	return out, func() { out.Close() }, nil
}

// baseFiles gives pread access to the tensors of a file-backed base, so that
// merged tensors are read block by block into small buffers instead of
// through the mapping (no page faults, nothing to release).
type baseFiles struct {
	files []*safetensors.File
	loc   map[string]fileLoc
}

type fileLoc struct {
	ra  io.ReaderAt
	off int64 // file offset of the tensor's first byte
}

// openBaseFiles opens the base's safetensors files again, by path, and
// checks that they hold the tensors the source describes; it returns nil
// (use the mapping) when that is not possible.
func openBaseFiles(src *checkpoint.Source) *baseFiles {
	var paths []string
	switch src.Kind {
	case checkpoint.KindFile:
		paths = []string{src.Path}
	case checkpoint.KindFolder:
		for _, sh := range src.Shards {
			paths = append(paths, filepath.Join(src.Path, sh.Name))
		}
	default:
		return nil
	}
	if len(paths) != len(src.Shards) {
		return nil
	}
	bf := &baseFiles{loc: map[string]fileLoc{}}
	for i, path := range paths {
		f, err := safetensors.Open(path)
		if err != nil {
			bf.close()
			return nil
		}
		bf.files = append(bf.files, f)
		for _, t := range src.Shards[i].Tensors {
			ft, ok := f.Info(t.Name)
			if !ok || ft.Offsets != t.Offsets || ft.DType != t.DType {
				bf.close()
				return nil
			}
			bf.loc[t.Name] = fileLoc{f.ReaderAt(), f.DataStart + t.Offsets[0]}
		}
	}
	return bf
}

// locate returns where a tensor's bytes are (false when bf is nil).
func (bf *baseFiles) locate(name string) (fileLoc, bool) {
	if bf == nil {
		return fileLoc{}, false
	}
	l, ok := bf.loc[name]
	return l, ok
}

func (bf *baseFiles) close() {
	if bf == nil {
		return
	}
	for _, f := range bf.files {
		f.Close()
	}
}
