package checkpoint

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// FileMetadataPrefix prefixes the __metadata__ keys that carry whole files
// (config.json, adapter_config.json, tokenizer files) inside a single
// safetensors file or stream: "lorakit.file.config.json" holds config.json.
const FileMetadataPrefix = "lorakit.file."

// CarriedFiles are the small files that travel with a checkpoint or adapter.
var CarriedFiles = []string{
	"config.json", "adapter_config.json", "generation_config.json",
	"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
	"chat_template.jinja", "tokenizer.model",
}

// MaxCarriedFile bounds each carried file.
const MaxCarriedFile = 64 << 20

// Kind says where a Source's tensors come from.
type Kind int

// Source kinds.
const (
	KindFolder Kind = iota // an HF or PEFT folder
	KindFile               // one .safetensors file
	KindStream             // stdin or a compressed file: read once, in order
)

func (k Kind) String() string {
	return [...]string{"folder", "file", "stream"}[k]
}

// Shard is one safetensors file of a source and the tensors it holds.
type Shard struct {
	Name    string // file name, e.g. model-00001-of-00004.safetensors
	Tensors []safetensors.TensorInfo
}

// Source is an opened checkpoint or adapter: its small files and its tensors.
type Source struct {
	Path string
	Kind Kind
	// Files holds the carried files by name (config.json, ...).
	Files map[string][]byte
	// Metadata is the __metadata__ of the (first) safetensors file.
	Metadata map[string]string
	// Tensors lists every tensor in reading order (shard by shard, file order).
	Tensors []safetensors.TensorInfo
	// Shards gives the file layout (one entry for a single file or stream).
	Shards []Shard
	// Bytes is the total size of the tensor data.
	Bytes int64

	set       *safetensors.Set
	stream    *safetensors.StreamReader
	closer    io.Closer
	indexOnce sync.Once
	index     map[string]int
	used      bool
}

// Open opens path: a folder, a .safetensors file (optionally .gz/.zst), or
// "-" for a stream on stdin.
func Open(path string, stdin io.Reader) (*Source, error) {
	if path == "-" {
		return openStream(path, stdin, nil)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return openFolder(path)
	}
	return openFile(path)
}

func openFile(path string) (*Source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	var magic [4]byte
	n, _ := io.ReadFull(f, magic[:])
	if string(magic[:n]) == "GGUF" {
		f.Close()
		return nil, fmt.Errorf("%s: %w: a GGUF file, not safetensors", path, ErrUnsupported)
	}
	if n == 4 && (bytes.HasPrefix(magic[:], []byte{0x1f, 0x8b}) || bytes.Equal(magic[:], []byte{0x28, 0xb5, 0x2f, 0xfd})) {
		f.Seek(0, io.SeekStart)
		return openStream(path, f, f)
	}
	f.Close()
	s := &Source{Path: path, Kind: KindFile, Files: map[string][]byte{}}
	set, err := safetensors.OpenSet(path)
	if err != nil {
		return nil, err
	}
	s.set = set
	s.addShard(filepath.Base(path), set.Files[0].Header)
	s.takeMetadataFiles()
	return s, nil
}

func openStream(path string, r io.Reader, closer io.Closer) (*Source, error) {
	dr, _, err := safetensors.Decompress(r)
	if err != nil {
		if closer != nil {
			closer.Close()
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sr, err := safetensors.NewStreamReader(bufio.NewReaderSize(dr, 4<<20), path)
	if err != nil {
		if closer != nil {
			closer.Close()
		}
		return nil, err
	}
	s := &Source{Path: path, Kind: KindStream, Files: map[string][]byte{}, stream: sr, closer: closer}
	name := "model.safetensors"
	if path != "-" {
		name = safetensors.TrimCompression(filepath.Base(path))
	}
	s.addShard(name, sr.Header())
	s.takeMetadataFiles()
	return s, nil
}

func openFolder(dir string) (*Source, error) {
	s := &Source{Path: dir, Kind: KindFolder, Files: map[string][]byte{}}
	for _, name := range CarriedFiles {
		b, err := readBounded(filepath.Join(dir, name))
		if err == nil {
			s.Files[name] = b
		} else if !os.IsNotExist(err) {
			return nil, err
		}
	}
	var paths []string
	indexPath := filepath.Join(dir, safetensors.IndexFile)
	if _, err := os.Stat(indexPath); err == nil {
		set, ix, err := safetensors.OpenIndexed(indexPath)
		if err != nil {
			return nil, err
		}
		s.set = set
		for i, f := range set.Files {
			s.addShard(ix.Shards()[i], f.Header)
		}
	} else {
		for _, name := range []string{"adapter_model.safetensors", "model.safetensors"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				paths = append(paths, filepath.Join(dir, name))
				break
			}
		}
		if len(paths) == 0 {
			matches, _ := filepath.Glob(filepath.Join(dir, "*.safetensors"))
			if len(matches) == 1 {
				paths = matches
			}
		}
		if len(paths) == 0 {
			for _, legacy := range []string{"adapter_model.bin", "pytorch_model.bin", "pytorch_model.bin.index.json"} {
				if _, err := os.Stat(filepath.Join(dir, legacy)); err == nil {
					return nil, fmt.Errorf("%s: %w: %s is a pickle; convert it to safetensors first", dir, ErrUnsupported, legacy)
				}
			}
			return nil, fmt.Errorf("%s: %w: no .safetensors file or %s", dir, ErrNotFound, safetensors.IndexFile)
		}
		set, err := safetensors.OpenSet(paths...)
		if err != nil {
			return nil, err
		}
		s.set = set
		s.addShard(filepath.Base(paths[0]), set.Files[0].Header)
	}
	if len(s.set.Files) > 0 {
		s.Metadata = s.set.Files[0].Header.Metadata
	}
	return s, nil
}

func readBounded(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > MaxCarriedFile {
		return nil, fmt.Errorf("%s: %w: %d bytes (limit %d)", path, ErrConfig, st.Size(), MaxCarriedFile)
	}
	return os.ReadFile(path)
}

func (s *Source) addShard(name string, h *safetensors.Header) {
	s.Shards = append(s.Shards, Shard{Name: name, Tensors: h.Tensors})
	s.Tensors = append(s.Tensors, h.Tensors...)
	s.Bytes += h.DataSize
	if s.Metadata == nil {
		s.Metadata = h.Metadata
	}
}

// takeMetadataFiles moves files carried in __metadata__ into Files.
func (s *Source) takeMetadataFiles() {
	for k, v := range s.Metadata {
		if name, ok := strings.CutPrefix(k, FileMetadataPrefix); ok {
			s.Files[name] = []byte(v)
		}
	}
}

// Random reports whether tensors can be read in any order (files, not streams).
func (s *Source) Random() bool { return s.set != nil }

// Info returns the tensor called name. It is safe for concurrent use.
func (s *Source) Info(name string) (safetensors.TensorInfo, bool) {
	s.indexOnce.Do(func() {
		s.index = make(map[string]int, len(s.Tensors))
		for i, t := range s.Tensors {
			s.index[t.Name] = i
		}
	})
	i, ok := s.index[name]
	if !ok {
		return safetensors.TensorInfo{}, false
	}
	return s.Tensors[i], true
}

// Data returns the bytes of one tensor of a file-backed source (a view of
// the mapped file; do not modify).
func (s *Source) Data(name string) ([]byte, error) {
	if s.set == nil {
		return nil, fmt.Errorf("%s: tensor %q: a stream can only be read in order", s.Path, name)
	}
	return s.set.Data(name)
}

// Locate returns where the bytes of a file-backed source's tensor are: a
// ReaderAt over its file and the offset of its first byte. Reading with it
// (pread) does not map the file into memory.
func (s *Source) Locate(name string) (io.ReaderAt, int64, bool) {
	if s.set == nil {
		return nil, 0, false
	}
	t, f, ok := s.set.Info(name)
	if !ok {
		return nil, 0, false
	}
	return f.ReaderAt(), f.DataStart + t.Offsets[0], true
}

// Next returns the next tensor of a stream and a reader of its bytes, which
// must be read before the next call; io.EOF after the last. A stream is
// read once, by Next or by Each.
func (s *Source) Next() (safetensors.TensorInfo, io.Reader, error) {
	if s.stream == nil {
		return safetensors.TensorInfo{}, nil, fmt.Errorf("%s: Next reads streams; read a file or folder with Data", s.Path)
	}
	s.used = true
	return s.stream.Next()
}

// Each calls fn for every tensor in reading order with its bytes, which are
// valid only until fn returns. A stream can be walked once.
func (s *Source) Each(fn func(t safetensors.TensorInfo, data []byte) error) error {
	if s.set != nil {
		for _, t := range s.Tensors {
			data, err := s.set.Data(t.Name)
			if err != nil {
				return err
			}
			if err := fn(t, data); err != nil {
				return err
			}
		}
		return nil
	}
	if s.used {
		return fmt.Errorf("%s: the stream was already read", s.Path)
	}
	s.used = true
	for {
		t, data, err := s.stream.ReadAll()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(t, data); err != nil {
			return err
		}
	}
}

// LoadAll reads every tensor into memory (for adapters and small models).
func (s *Source) LoadAll() (map[string][]byte, error) {
	out := make(map[string][]byte, len(s.Tensors))
	err := s.Each(func(t safetensors.TensorInfo, data []byte) error {
		out[t.Name] = bytes.Clone(data)
		return nil
	})
	return out, err
}

// Config parses the carried config.json with the architecture registry.
func (s *Source) Config() (*arch.Config, error) {
	b, ok := s.Files["config.json"]
	if !ok {
		return nil, fmt.Errorf("%s: %w: no config.json", s.Path, ErrConfig)
	}
	c, err := arch.ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: config.json: %w", s.Path, err)
	}
	return c, nil
}

// adapterSuffixes mark tensors that only PEFT adapters hold.
var adapterMarkers = []string{".lora_A", ".lora_B", ".lora_a", ".lora_b", "lora_embedding_A", "lora_embedding_B",
	"lora_magnitude_vector", ".ia3_l", ".lora_E", "prompt_embeddings", ".hada_w1", ".lokr_w1", ".oft_r"}

// IsAdapter reports whether the source is an adapter: it carries
// adapter_config.json or holds adapter tensors.
func (s *Source) IsAdapter() bool {
	if _, ok := s.Files["adapter_config.json"]; ok {
		return true
	}
	for _, t := range s.Tensors {
		for _, m := range adapterMarkers {
			if strings.Contains(t.Name, m) {
				return true
			}
		}
	}
	return false
}

// IsQuantized reports whether the source is a bitsandbytes 4-bit checkpoint.
func (s *Source) IsQuantized() bool {
	for _, t := range s.Tensors {
		if strings.Contains(t.Name, ".quant_state.bitsandbytes__") {
			return true
		}
	}
	return false
}

// Close releases files and streams.
func (s *Source) Close() error {
	var err error
	if s.set != nil {
		err = s.set.Close()
	}
	if s.closer != nil {
		if cerr := s.closer.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Metadata returns the __metadata__ for a single-file output that carries
// files: "format": "pt" plus one FileMetadataPrefix key per file.
func Metadata(files map[string][]byte) map[string]string {
	md := map[string]string{"format": "pt"}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		// Metadata values are JSON strings: binary files (tokenizer.model) cannot travel.
		if utf8.Valid(files[n]) {
			md[FileMetadataPrefix+n] = string(files[n])
		}
	}
	return md
}
