package torchbin

import (
	"fmt"
	"strings"

	"github.com/lorakit/lorakit/pkg/safetensors"
)

// IndexFile is the conventional name of a sharded .bin checkpoint's index;
// its schema is model.safetensors.index.json's (safetensors.Index).
const IndexFile = "pytorch_model.bin.index.json"

// Set is several checkpoint files read as one set of tensors: the shards of
// a checkpoint, or a single file.
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
		for _, t := range f.Tensors {
			if prev, dup := s.where[t.Name]; dup {
				s.Close()
				return nil, fmt.Errorf("%s: %w: tensor %q is also in %s", p, safetensors.ErrIndex, t.Name, prev.Path)
			}
			s.where[t.Name] = f
			s.names = append(s.names, t.Name)
		}
	}
	return s, nil
}

// OpenIndexed opens a sharded checkpoint from its index file (usually
// pytorch_model.bin.index.json) and checks that the index and the shards
// agree tensor for tensor.
func OpenIndexed(indexPath string) (*Set, *safetensors.Index, error) {
	ix, err := safetensors.ReadIndex(indexPath)
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

// Data returns the contiguous bytes of tensor name (see File.Data).
func (s *Set) Data(name string) ([]byte, error) {
	f, ok := s.where[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return f.Data(name)
}

// ReadTensor reads tensor name into dst (see File.ReadTensor).
func (s *Set) ReadTensor(name string, dst []byte) error {
	f, ok := s.where[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return f.ReadTensor(name, dst)
}

// Float32 returns tensor name converted to float32.
func (s *Set) Float32(name string) ([]float32, error) {
	f, ok := s.where[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	return f.Float32(name)
}

// Each calls fn for every tensor, file by file in file order (see File.Each).
func (s *Set) Each(fn func(t TensorInfo, data []byte) error) error {
	var buf []byte
	for _, f := range s.Files {
		if err := f.each(fn, &buf); err != nil {
			return err
		}
	}
	return nil
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

// SafetensorsName is the safetensors file name that holds what the .bin
// file name held, as transformers and PEFT name them: adapter_model.bin →
// adapter_model.safetensors, pytorch_model.bin → model.safetensors,
// pytorch_model-00001-of-00002.bin → model-00001-of-00002.safetensors,
// pytorch_model.bin.index.json → model.safetensors.index.json; any other
// X.bin, X.pt or X.pth → X.safetensors.
func SafetensorsName(name string) string {
	if name == IndexFile {
		return safetensors.IndexFile
	}
	base := name
	for _, ext := range []string{".bin", ".pth", ".pt"} {
		if b, ok := strings.CutSuffix(name, ext); ok {
			base = b
			break
		}
	}
	if rest, ok := strings.CutPrefix(base, "pytorch_model"); ok && (rest == "" || rest[0] == '-') {
		base = "model" + rest
	}
	return base + ".safetensors"
}
