package safetensors

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// IndexFile is the conventional name of a sharded checkpoint's index.
const IndexFile = "model.safetensors.index.json"

// MaxIndexSize bounds an index file.
var MaxIndexSize int64 = 64 << 20

// Index is a parsed model.safetensors.index.json.
type Index struct {
	Metadata  map[string]any    `json:"metadata,omitempty"`
	WeightMap map[string]string `json:"weight_map"`
}

// Shards lists the shard file names in sorted order.
func (ix *Index) Shards() []string {
	set := map[string]bool{}
	for _, f := range ix.WeightMap {
		set[f] = true
	}
	out := make([]string, 0, len(set))
	for f := range set {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// ReadIndex reads and validates an index file: shard names must be plain
// file names in the same folder.
func ReadIndex(path string) (*Index, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > MaxIndexSize {
		return nil, fmt.Errorf("%s: %w: %d bytes (limit %d)", path, ErrIndex, st.Size(), MaxIndexSize)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ix Index
	if err := json.Unmarshal(b, &ix); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, ErrIndex, err)
	}
	if len(ix.WeightMap) == 0 {
		return nil, fmt.Errorf("%s: %w: empty weight_map", path, ErrIndex)
	}
	for name, f := range ix.WeightMap {
		if f == "" || f != filepath.Base(f) || strings.HasPrefix(f, ".") {
			return nil, fmt.Errorf("%s: %w: tensor %q maps to %q, which is not a file in the same folder", path, ErrIndex, name, f)
		}
	}
	return &ix, nil
}

// Set is several safetensors files read as one set of tensors: the shards
// of a checkpoint, or a single file.
type Set struct {
	Files []*File
	where map[string]*File
	names []string
}

// OpenSet opens the given files as one set; a tensor name may occur once.
func OpenSet(paths ...string) (*Set, error) {
	s := &Set{where: map[string]*File{}}
	for _, p := range paths {
		f, err := Open(p)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.Files = append(s.Files, f)
		for _, t := range f.Header.Tensors {
			if prev, dup := s.where[t.Name]; dup {
				s.Close()
				return nil, fmt.Errorf("%s: %w: tensor %q is also in %s", p, ErrIndex, t.Name, prev.Path)
			}
			s.where[t.Name] = f
			s.names = append(s.names, t.Name)
		}
	}
	return s, nil
}

// OpenIndexed opens a sharded checkpoint from its index file and checks
// that the index and the shards agree tensor for tensor.
func OpenIndexed(indexPath string) (*Set, *Index, error) {
	ix, err := ReadIndex(indexPath)
	if err != nil {
		return nil, nil, err
	}
	s, err := OpenSet(ix.ShardPaths(indexPath)...)
	if err != nil {
		return nil, nil, err
	}
	found := make(map[string]string, len(s.where))
	for name, f := range s.where {
		found[name] = f.Path
	}
	if err := ix.Check(indexPath, found); err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, ix, nil
}

// ShardPaths returns the paths of the index's shards, which lie beside
// the index file indexPath.
func (ix *Index) ShardPaths(indexPath string) []string {
	dir := filepath.Dir(indexPath)
	var paths []string
	for _, f := range ix.Shards() {
		paths = append(paths, filepath.Join(dir, f))
	}
	return paths
}

// Check verifies that the index and its shards agree tensor for tensor:
// found maps each tensor read from the shards to the path of its file.
// Sharded checkpoints of every format share this index schema.
func (ix *Index) Check(indexPath string, found map[string]string) error {
	for _, name := range slices.Sorted(maps.Keys(ix.WeightMap)) {
		f := ix.WeightMap[name]
		if p, ok := found[name]; !ok || filepath.Base(p) != f {
			return fmt.Errorf("%s: %w: tensor %q is listed in %s but not found there", indexPath, ErrIndex, name, f)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(found)) {
		if _, ok := ix.WeightMap[name]; !ok {
			return fmt.Errorf("%s: %w: tensor %q in %s is missing from the index", indexPath, ErrIndex, name, found[name])
		}
	}
	return nil
}

// Names lists every tensor, file by file in file order.
func (s *Set) Names() []string { return s.names }

// Info returns the tensor called name and the file holding it.
func (s *Set) Info(name string) (TensorInfo, *File, bool) {
	f, ok := s.where[name]
	if !ok {
		return TensorInfo{}, nil, false
	}
	t, _ := f.Info(name)
	return t, f, true
}

// Data returns the bytes of tensor name (see File.Data).
func (s *Set) Data(name string) ([]byte, error) {
	f, ok := s.where[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return f.Data(name)
}

// Float32 returns tensor name converted to float32.
func (s *Set) Float32(name string) ([]float32, error) {
	f, ok := s.where[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return f.Float32(name)
}

// Close closes every file.
func (s *Set) Close() error {
	var first error
	for _, f := range s.Files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
