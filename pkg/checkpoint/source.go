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
	"github.com/lorakit/lorakit/pkg/torchbin"
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

// Format is the file format a Source's tensors are stored in.
type Format int

// Formats.
const (
	FormatSafetensors Format = iota
	// FormatPyTorch is a torch.save zip archive (pytorch_model.bin,
	// adapter_model.bin), read by package torchbin without executing its
	// pickle.
	FormatPyTorch
)

func (f Format) String() string {
	return [...]string{"safetensors", "pytorch"}[f]
}

// Shard is one tensor file of a source and the tensors it holds.
type Shard struct {
	// Name is the file's safetensors name, e.g.
	// model-00001-of-00004.safetensors (a .bin shard's is what a
	// conversion writes: torchbin.SafetensorsName).
	Name    string
	Tensors []safetensors.TensorInfo
}

// Source is an opened checkpoint or adapter: its small files and its tensors.
type Source struct {
	Path string
	Kind Kind
	// Format is the format of the tensor files.
	Format Format
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
	// Skipped lists the values of a PyTorch file that are not tensors
	// (counters, hyper-parameters), by their dotted paths; they are not
	// read.
	Skipped []string

	set       *safetensors.Set
	bin       *torchbin.Set
	stream    *safetensors.StreamReader
	closer    io.Closer
	indexOnce sync.Once
	index     map[string]int
	used      bool
}

// Open opens path: a folder, a .safetensors file (optionally .gz/.zst), a
// PyTorch .bin file, or "-" for a stream on stdin.
//
// A folder holds model.safetensors.index.json and its shards,
// adapter_model.safetensors, model.safetensors or a single other
// .safetensors file; failing those (safetensors wins where both exist, as
// in transformers), pytorch_model.bin.index.json and its shards,
// adapter_model.bin or pytorch_model.bin. A .bin file is read by package
// torchbin: only its zip directory and pickle when opened, tensors on
// demand; a pickle naming a global outside the allow-list is refused
// (torchbin.ErrForbiddenGlobal, naming the file and the global), as is
// the legacy pre-1.6 format. Tensors keep their stored dtype (F64 too): a
// tool that needs another converts them, as it does safetensors tensors.
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
	var head [torchbin.SniffLen]byte
	n, _ := io.ReadFull(f, head[:])
	magic := head[:min(n, 4)]
	if string(magic) == "GGUF" {
		f.Close()
		return nil, fmt.Errorf("%s: %w: a GGUF file, not safetensors", path, ErrUnsupported)
	}
	if len(magic) == 4 && (bytes.HasPrefix(magic, []byte{0x1f, 0x8b}) || bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd})) {
		f.Seek(0, io.SeekStart)
		return openStream(path, f, f)
	}
	f.Close()
	if torchbin.Sniff(head[:n]) != torchbin.FormatUnknown {
		s := &Source{Path: path, Kind: KindFile, Format: FormatPyTorch, Files: map[string][]byte{}}
		// A .bin file cannot carry its configs: one named as transformers
		// and PEFT name theirs takes them from beside it.
		if base := filepath.Base(path); base == "adapter_model.bin" || strings.HasPrefix(base, "pytorch_model") {
			if err := readCarried(filepath.Dir(path), s.Files); err != nil {
				return nil, err
			}
		}
		set, err := torchbin.OpenSet(path)
		if err != nil {
			return nil, err
		}
		s.addBin(set, []string{filepath.Base(path)})
		return s, nil
	}
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
	if err := readCarried(dir, s.Files); err != nil {
		return nil, err
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
			if ok, err := s.openBinFolder(dir); err != nil {
				return nil, err
			} else if ok {
				return s, nil
			}
			return nil, fmt.Errorf("%s: %w: no .safetensors file, %s, %s, adapter_model.bin or pytorch_model.bin",
				dir, ErrNotFound, safetensors.IndexFile, torchbin.IndexFile)
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

// openBinFolder opens the PyTorch checkpoint of a folder that has no
// safetensors file: pytorch_model.bin.index.json and its shards,
// adapter_model.bin or pytorch_model.bin. It reports false when there is
// none.
func (s *Source) openBinFolder(dir string) (bool, error) {
	s.Format = FormatPyTorch
	indexPath := filepath.Join(dir, torchbin.IndexFile)
	if _, err := os.Stat(indexPath); err == nil {
		set, ix, err := torchbin.OpenIndexed(indexPath)
		if err != nil {
			return true, err
		}
		s.addBin(set, ix.Shards())
		return true, nil
	}
	for _, name := range []string{"adapter_model.bin", "pytorch_model.bin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		set, err := torchbin.OpenSet(p)
		if err != nil {
			return true, err
		}
		s.addBin(set, []string{name})
		return true, nil
	}
	return false, nil
}

// addBin takes the tensors of a PyTorch set whose files are named names:
// one shard per file, named as a conversion to safetensors names it, with
// the offsets of the contiguous bytes each tensor reads as.
func (s *Source) addBin(set *torchbin.Set, names []string) {
	s.bin = set
	for i, f := range set.Files {
		s.Skipped = append(s.Skipped, f.Skipped...)
		h := &safetensors.Header{}
		for _, t := range f.Tensors {
			n := t.NumBytes()
			h.Tensors = append(h.Tensors, safetensors.TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape,
				Offsets: [2]int64{h.DataSize, h.DataSize + n}})
			h.DataSize += n
		}
		s.addShard(torchbin.SafetensorsName(names[i]), h)
	}
}

// readCarried reads the CarriedFiles present in dir into files.
func readCarried(dir string, files map[string][]byte) error {
	for _, name := range CarriedFiles {
		b, err := readBounded(filepath.Join(dir, name))
		if err == nil {
			files[name] = b
		} else if !os.IsNotExist(err) {
			return err
		}
	}
	return nil
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
func (s *Source) Random() bool { return s.set != nil || s.bin != nil }

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

// Data returns the bytes of one tensor of a file-backed source: a view of
// the mapped file for safetensors, a new slice for a PyTorch file; do not
// modify them.
func (s *Source) Data(name string) ([]byte, error) {
	switch {
	case s.bin != nil:
		return s.bin.Data(name)
	case s.set == nil:
		return nil, fmt.Errorf("%s: tensor %q: a stream can only be read in order", s.Path, name)
	}
	return s.set.Data(name)
}

// ReadAt fills p with the bytes of tensor name of a file-backed source
// from offset off on, with pread: the file is never mapped, so its pages do
// not count against the process. A PyTorch file's views (offsets, strides,
// shared storages) are resolved into the contiguous bytes Info describes.
func (s *Source) ReadAt(name string, p []byte, off int64) error {
	t, ok := s.Info(name)
	if !ok {
		return fmt.Errorf("%s: %w: %q", s.Path, safetensors.ErrNotFound, name)
	}
	if off < 0 || off+int64(len(p)) > t.NumBytes() {
		return fmt.Errorf("%s: tensor %q: read of [%d, %d) beyond its %d bytes", s.Path, name, off, off+int64(len(p)), t.NumBytes())
	}
	if s.bin != nil {
		bt, f, _ := s.bin.Info(name)
		return f.ReadTensorAt(bt, p, off)
	}
	ra, start, ok := s.Locate(name)
	if !ok {
		return fmt.Errorf("%s: tensor %q: a stream can only be read in order", s.Path, name)
	}
	if n, err := ra.ReadAt(p, start+off); n < len(p) {
		if err == nil || err == io.EOF || err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("%w: %v", safetensors.ErrTruncated, io.ErrUnexpectedEOF)
		}
		return fmt.Errorf("%s: tensor %q: %w", s.Path, name, err)
	}
	return nil
}

// Tied lists the groups of tensors of a PyTorch file that are the same
// elements of one storage under several names (tied weights such as
// embed_tokens and lm_head), in file order; nil for safetensors, which
// cannot share.
func (s *Source) Tied() [][]string {
	if s.bin == nil {
		return nil
	}
	var groups [][]string
	at := map[string]int{}
	for i, f := range s.bin.Files {
		for _, t := range f.Tensors {
			if t.NumElements() == 0 {
				continue
			}
			key := fmt.Sprintf("%d %q %s %d %v %v", i, t.Storage, t.DType, t.Offset, t.Shape, t.Stride)
			g, ok := at[key]
			if !ok {
				g = len(groups)
				at[key] = g
				groups = append(groups, nil)
			}
			groups[g] = append(groups[g], t.Name)
		}
	}
	tied := groups[:0]
	for _, g := range groups {
		if len(g) > 1 {
			tied = append(tied, g)
		}
	}
	return tied
}

// Locate returns where the bytes of a safetensors file's tensor are: a
// ReaderAt over its file and the offset of its first byte (ReadAt reads
// them). It reports false for streams and PyTorch files, whose tensors
// need not be one range of the file.
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
	if s.bin != nil {
		var buf []byte
		for _, t := range s.Tensors {
			n := t.NumBytes()
			if int64(cap(buf)) < n {
				buf = make([]byte, n)
			}
			if err := s.bin.ReadTensor(t.Name, buf[:n]); err != nil {
				return err
			}
			if err := fn(t, buf[:n]); err != nil {
				return err
			}
		}
		return nil
	}
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
	if s.bin != nil {
		err = s.bin.Close()
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
