package torchbin

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/lorakit/lorakit/pkg/dtype"
)

// Format is what the first bytes of a file say it is.
type Format int

// Formats Sniff tells apart.
const (
	FormatUnknown Format = iota // neither of the below
	FormatZip                   // a zip archive: PyTorch ≥ 1.6 (or another zip)
	FormatLegacy                // PyTorch's pre-1.6 pickle format
)

func (f Format) String() string {
	return [...]string{"unknown", "zip", "legacy PyTorch"}[f]
}

// legacyMagic is how the pre-1.6 format starts after the PROTO opcode: the
// pickled magic number 0x1950a86a20f9469cfc6c as a LONG1.
var legacyMagic = []byte{0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19}

// SniffLen is how many leading bytes Sniff needs.
const SniffLen = 14

// Sniff classifies a file by its first SniffLen bytes (fewer are fine for
// short files).
func Sniff(head []byte) Format {
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")), bytes.HasPrefix(head, []byte("PK\x05\x06")):
		return FormatZip
	case len(head) >= 2+len(legacyMagic) && head[0] == opProto && bytes.HasPrefix(head[2:], legacyMagic):
		return FormatLegacy
	}
	return FormatUnknown
}

// storage is one storage of the archive: the entry <folder>/data/<key>.
type storage struct {
	key    string
	dtype  dtype.DType // element type its persistent id names; "" if unreadable
	what   string      // what an unreadable storage holds, for messages
	nbytes int64       // the bytes the persistent id declares
	entry  *zip.File

	once    sync.Once
	dataOff int64 // archive offset of a stored entry's bytes
	err     error
}

// File is an open PyTorch zip checkpoint. Opening reads the zip directory
// and data.pkl; tensor bytes are read on demand. Its methods are safe for
// concurrent use.
type File struct {
	Path string
	// Size is the archive's size in bytes.
	Size int64
	// Folder is the archive's top folder ("archive" for torch 2.x).
	Folder string
	// Tensors lists the tensors in the order the pickle holds them (the
	// state dict's order), with flattened names.
	Tensors []TensorInfo
	// Skipped lists the dotted paths of values that are not tensors.
	Skipped []string
	// BigEndian is set when the archive's byteorder record says "big"; the
	// bytes handed out are converted to little-endian.
	BigEndian bool

	r        io.ReaderAt
	closer   io.Closer
	mu       sync.RWMutex
	closed   bool
	index    map[string]int
	storages map[string]*storage
	entries  map[string]*zip.File
}

// Open opens the checkpoint at path, reading its directory and pickle.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: %w: not a regular file", path, ErrNotZip)
	}
	tf, err := NewReader(f, st.Size(), path)
	if err != nil {
		f.Close()
		return nil, err
	}
	tf.closer = f
	return tf, nil
}

// NewReader reads a checkpoint of size bytes from r; name is used in
// messages. Close does not close r.
func NewReader(r io.ReaderAt, size int64, name string) (*File, error) {
	f := &File{Path: name, Size: size, r: r, storages: map[string]*storage{}}
	if err := f.open(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return f, nil
}

func (f *File) open() error {
	head := make([]byte, SniffLen)
	n, err := f.r.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return err
	}
	switch Sniff(head[:n]) {
	case FormatLegacy:
		return fmt.Errorf("%w: saved by torch < 1.6 or with _use_new_zipfile_serialization=False; "+
			"only the zip format can be read without running its pickle (re-save it with torch.save in a current torch)", ErrLegacyFormat)
	case FormatUnknown:
		return fmt.Errorf("%w: the file does not start like a zip archive", ErrNotZip)
	}
	zr, err := zip.NewReader(f.r, f.Size)
	if err != nil && !(errors.Is(err, zip.ErrInsecurePath) && zr != nil) {
		if errors.Is(err, zip.ErrFormat) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: the zip directory is missing or damaged (%v); was the download cut short?", ErrTruncated, err)
		}
		return fmt.Errorf("%w: %v", ErrArchive, err)
	}
	if len(zr.File) > MaxEntries {
		return fmt.Errorf("%w: %d entries (limit %d)", ErrArchive, len(zr.File), MaxEntries)
	}
	if len(zr.File) == 0 {
		return fmt.Errorf("%w: an empty zip archive", ErrArchive)
	}
	// The top folder is the first entry's, as torch's reader decides it.
	folder, _, ok := strings.Cut(zr.File[0].Name, "/")
	if !ok || folder == "" {
		return fmt.Errorf("%w: the first entry %q is not inside a folder", ErrArchive, zr.File[0].Name)
	}
	f.Folder = folder
	f.entries = make(map[string]*zip.File)
	for _, e := range zr.File {
		rest, ok := strings.CutPrefix(e.Name, folder+"/")
		if !ok {
			continue
		}
		if _, dup := f.entries[rest]; dup {
			return fmt.Errorf("%w: entry %q occurs twice", ErrArchive, e.Name)
		}
		f.entries[rest] = e
	}
	if _, ok := f.entries["constants.pkl"]; ok {
		return fmt.Errorf("%w: a TorchScript archive (torch.jit.save), not a torch.save checkpoint; save the model's state_dict() instead", ErrUnsupported)
	}
	pklEntry, ok := f.entries["data.pkl"]
	if !ok {
		return fmt.Errorf("%w: no %s/data.pkl in the archive", ErrArchive, folder)
	}
	if e, ok := f.entries["byteorder"]; ok {
		b, err := f.readSmall(e, 16)
		if err != nil {
			return err
		}
		switch string(b) {
		case "little":
		case "big":
			f.BigEndian = true
		default:
			return fmt.Errorf("%w: byteorder %q", ErrArchive, b)
		}
	}
	pkl, err := f.readSmall(pklEntry, MaxPickleSize)
	if err != nil {
		return err
	}
	u := &unpickler{data: pkl, persistent: f.persistentLoad}
	root, err := u.load()
	if err != nil {
		return fmt.Errorf("%s/data.pkl: %w", folder, err)
	}
	named, skipped, err := flattenStateDict(root, 4*len(pkl)+1024)
	if err != nil {
		return err
	}
	f.Skipped = skipped
	f.Tensors = make([]TensorInfo, len(named))
	f.index = make(map[string]int, len(named))
	for i, nt := range named {
		t := nt.t
		f.Tensors[i] = TensorInfo{Name: nt.name, DType: t.dtype, Shape: t.shape, Storage: t.st.key,
			Offset: t.offset, Stride: t.stride, st: t.st}
		f.index[nt.name] = i
	}
	return nil
}

// checkEntry bounds an entry's sizes by the archive's real size.
func (f *File) checkEntry(e *zip.File) error {
	// Where the bytes start is known only from the entry's local header,
	// read when the entry is; here its size must fit in the file.
	if e.CompressedSize64 > uint64(f.Size) {
		return fmt.Errorf("%w: entry %q: %d bytes in a %d-byte file", ErrTruncated, e.Name, e.CompressedSize64, f.Size)
	}
	switch e.Method {
	case zip.Store:
		if e.CompressedSize64 != e.UncompressedSize64 {
			return fmt.Errorf("%w: stored entry %q: sizes %d and %d differ", ErrArchive, e.Name, e.CompressedSize64, e.UncompressedSize64)
		}
	case zip.Deflate:
		// Deflate expands at most 1032-fold.
		if e.UncompressedSize64/1032 > e.CompressedSize64 {
			return fmt.Errorf("%w: deflated entry %q: %d bytes cannot inflate to %d", ErrArchive, e.Name, e.CompressedSize64, e.UncompressedSize64)
		}
	default:
		return fmt.Errorf("%w: entry %q uses compression method %d (torch writes entries stored)", ErrUnsupported, e.Name, e.Method)
	}
	return nil
}

// readSmall reads a whole entry of at most limit bytes, checking its CRC.
func (f *File) readSmall(e *zip.File, limit int64) ([]byte, error) {
	if err := f.checkEntry(e); err != nil {
		return nil, err
	}
	if e.UncompressedSize64 > uint64(limit) {
		return nil, fmt.Errorf("%w: entry %q is %d bytes (limit %d)", ErrArchive, e.Name, e.UncompressedSize64, limit)
	}
	rc, err := e.Open()
	if err != nil {
		return nil, fmt.Errorf("%w: entry %q: %v", ErrArchive, e.Name, err)
	}
	defer rc.Close()
	b := make([]byte, e.UncompressedSize64)
	if _, err := io.ReadFull(rc, b); err != nil {
		return nil, entryError(e, err)
	}
	var one [1]byte
	if _, err := rc.Read(one[:]); err != io.EOF { // EOF is where the CRC is checked
		return nil, entryError(e, err)
	}
	return b, nil
}

func entryError(e *zip.File, err error) error {
	switch {
	case err == nil:
		return fmt.Errorf("%w: entry %q holds more than its declared %d bytes", ErrArchive, e.Name, e.UncompressedSize64)
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return fmt.Errorf("%w: entry %q ends early", ErrTruncated, e.Name)
	case errors.Is(err, zip.ErrChecksum):
		return fmt.Errorf("%w: entry %q: CRC-32 mismatch (corrupt file)", ErrArchive, e.Name)
	}
	return fmt.Errorf("%w: entry %q: %v", ErrArchive, e.Name, err)
}

// persistentLoad resolves the persistent id torch.save gives a storage:
// ("storage", storage_type, key, location, numel).
func (f *File) persistentLoad(pid any) (any, error) {
	t, ok := pid.(pyTuple)
	if !ok || len(t) == 0 {
		return nil, fmt.Errorf("%w: a persistent id that is a %s, not a storage tuple", ErrPickle, typeName(pid))
	}
	if tag := asciiString(t[0]); tag != "storage" {
		return nil, fmt.Errorf("%w: a persistent id of kind %q; only storages may be loaded", ErrPickle, tag)
	}
	if len(t) != 5 {
		return nil, fmt.Errorf("%w: a storage persistent id with %d fields, want 5", ErrPickle, len(t))
	}
	typ, ok := t[1].(*pyGlobal)
	if !ok || typ.kind != gStorage {
		return nil, fmt.Errorf("%w: a storage persistent id whose type is %s", ErrPickle, describe(t[1]))
	}
	key := asciiString(t[2])
	numel, ok := t[4].(int64)
	if key == "" || strings.ContainsAny(key, "/\\") || len(key) > 256 || !ok || numel < 0 {
		return nil, fmt.Errorf("%w: a malformed storage persistent id (key %q, numel %v)", ErrPickle, key, t[4])
	}
	size := int64(1)
	if typ.dtype != "" {
		size = int64(typ.dtype.Size())
	}
	if numel > f.Size/size {
		return nil, fmt.Errorf("%w: storage %q: %d elements of %s do not fit in the %d-byte file", ErrStorage, key, numel, typ.name, f.Size)
	}
	nbytes := numel * size
	if st, ok := f.storages[key]; ok {
		if st.nbytes != nbytes || st.dtype != typ.dtype {
			return nil, fmt.Errorf("%w: storage %q is named with two types or sizes", ErrStorage, key)
		}
		return &storageRef{st: st}, nil
	}
	e, ok := f.entries["data/"+key]
	if !ok {
		return nil, fmt.Errorf("%w: storage %q: no entry %s/data/%s in the archive", ErrStorage, key, f.Folder, key)
	}
	if err := f.checkEntry(e); err != nil {
		return nil, err
	}
	if e.UncompressedSize64 < uint64(nbytes) {
		return nil, fmt.Errorf("%w: storage %q: entry holds %d bytes, the pickle declares %d", ErrStorage, key, e.UncompressedSize64, nbytes)
	}
	st := &storage{key: key, dtype: typ.dtype, what: typ.what, nbytes: nbytes, entry: e}
	f.storages[key] = st
	return &storageRef{st: st}, nil
}

// asciiString reads a str, or bytes as ASCII (Python 2 pickles).
func asciiString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case pyBytes:
		return latin1(v)
	}
	return ""
}

// Names lists the tensor names in file order.
func (f *File) Names() []string {
	names := make([]string, len(f.Tensors))
	for i, t := range f.Tensors {
		names[i] = t.Name
	}
	return names
}

// Info returns the tensor called name.
func (f *File) Info(name string) (TensorInfo, bool) {
	i, ok := f.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Tensors[i], true
}

// DataSize is the total of the tensors' contiguous sizes (what reading
// every tensor yields; shared storages count once per tensor).
func (f *File) DataSize() int64 {
	var n int64
	for _, t := range f.Tensors {
		n += t.NumBytes()
	}
	return n
}

// Data returns the contiguous little-endian bytes of tensor name in a new
// slice.
func (f *File) Data(name string) ([]byte, error) {
	t, ok := f.Info(name)
	if !ok {
		return nil, fmt.Errorf("%s: %w: %q", f.Path, ErrNotFound, name)
	}
	return f.TensorData(t)
}

// TensorData returns the bytes of t, which must come from this file.
func (f *File) TensorData(t TensorInfo) ([]byte, error) {
	buf := make([]byte, t.NumBytes())
	if err := f.ReadTensorInfo(t, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// ReadTensor reads the contiguous little-endian bytes of tensor name into
// dst, which must be exactly its NumBytes long.
func (f *File) ReadTensor(name string, dst []byte) error {
	t, ok := f.Info(name)
	if !ok {
		return fmt.Errorf("%s: %w: %q", f.Path, ErrNotFound, name)
	}
	return f.ReadTensorInfo(t, dst)
}

// ReadTensorInfo is ReadTensor for a TensorInfo of this file.
func (f *File) ReadTensorInfo(t TensorInfo, dst []byte) error {
	if t.st == nil || f.storages[t.Storage] != t.st {
		return fmt.Errorf("%s: %w: tensor %q is not from this file", f.Path, ErrNotFound, t.Name)
	}
	if int64(len(dst)) != t.NumBytes() {
		return fmt.Errorf("%s: tensor %q: a %d-byte buffer for %d bytes", f.Path, t.Name, len(dst), t.NumBytes())
	}
	if err := f.read(t, dst); err != nil {
		return fmt.Errorf("%s: tensor %q: %w", f.Path, t.Name, err)
	}
	return nil
}

func (f *File) read(t TensorInfo, dst []byte) error { return f.readAt(t, dst, 0) }

// ReadTensorAt fills p with the bytes of t's contiguous little-endian form
// from byte off on: a piece of what ReadTensorInfo reads, for readers that
// copy a large tensor in parts with bounded memory. A contiguous tensor is
// read with one pread of its entry; a strided view reads the span of its
// storage the piece covers when that is at most a few times the piece, and
// otherwise row by row (or element by element for a row much wider than
// its elements, such as a column of a transposed matrix).
func (f *File) ReadTensorAt(t TensorInfo, p []byte, off int64) error {
	if t.st == nil || f.storages[t.Storage] != t.st {
		return fmt.Errorf("%s: %w: tensor %q is not from this file", f.Path, ErrNotFound, t.Name)
	}
	if off < 0 || off+int64(len(p)) > t.NumBytes() {
		return fmt.Errorf("%s: tensor %q: read of [%d, %d) beyond its %d bytes", f.Path, t.Name, off, off+int64(len(p)), t.NumBytes())
	}
	if err := f.readAt(t, p, off); err != nil {
		return fmt.Errorf("%s: tensor %q: %w", f.Path, t.Name, err)
	}
	return nil
}

// readAt is ReadTensorAt without the checks.
func (f *File) readAt(t TensorInfo, p []byte, off int64) error {
	if len(p) == 0 {
		return nil
	}
	size := int64(t.DType.Size())
	contiguous := t.Contiguous()
	if contiguous && !f.BigEndian {
		return f.readStorage(t.st, p, t.Offset*size+off)
	}
	// Whole elements: a piece that cuts one goes through a copy.
	lo := off / size * size
	hi := (off + int64(len(p)) + size - 1) / size * size
	buf := p
	if lo != off || hi != off+int64(len(p)) {
		buf = make([]byte, hi-lo)
	}
	var err error
	if contiguous {
		err = f.readStorage(t.st, buf, t.Offset*size+lo)
	} else {
		err = f.gatherRange(t, buf, lo/size)
	}
	if err != nil {
		return err
	}
	if f.BigEndian {
		swapBytes(buf, int(size))
	}
	if len(buf) != len(p) {
		copy(p, buf[off-lo:])
	}
	return nil
}

// Over-reading bounds of gatherRange: the span of storage read for a piece
// (or a row) may exceed the bytes it yields by this factor, or by the
// minimum below.
const (
	overRead    = 4
	minSpanRead = 4 << 20
	minRowRead  = 64 << 10
)

// gatherRange fills dst with elements e0, e0+1, ... (row-major) of the
// strided view t.
func (f *File) gatherRange(t TensorInfo, dst []byte, e0 int64) error {
	size := int64(t.DType.Size())
	n := int64(len(dst)) / size
	if len(t.Shape) == 0 {
		return f.readStorage(t.st, dst, t.Offset*size)
	}
	last := len(t.Shape) - 1
	inner, step := t.Shape[last], t.Stride[last]
	// The piece is a run of segments of rows along the last dimension:
	// segment i holds elements [c0, c1) of row r.
	type segment struct{ first, count int64 } // storage index of the first element, elements
	var segs []segment
	lowest, highest := int64(-1), int64(0)
	for e := e0; e < e0+n; {
		r, c0 := e/inner, e%inner
		c1 := min(inner, c0+(e0+n-e))
		first := t.Offset + c0*step
		for d := last - 1; d >= 0; d-- { // unravel the row index
			first += (r % t.Shape[d]) * t.Stride[d]
			r /= t.Shape[d]
		}
		end := first + (c1-c0-1)*step // strides are non-negative
		if lowest < 0 || first < lowest {
			lowest = first
		}
		highest = max(highest, end)
		segs = append(segs, segment{first, c1 - c0})
		e += c1 - c0
	}
	pick := func(span []byte, base int64, s segment, out []byte) {
		if step == 1 {
			copy(out[:s.count*size], span[(s.first-base)*size:])
			return
		}
		for j := range s.count {
			at := (s.first + j*step - base) * size
			copy(out[j*size:(j+1)*size], span[at:at+size])
		}
	}
	if span := (highest - lowest + 1) * size; span <= max(overRead*int64(len(dst)), minSpanRead) {
		buf := make([]byte, span)
		if err := f.readStorage(t.st, buf, lowest*size); err != nil {
			return err
		}
		out := dst
		for _, s := range segs {
			pick(buf, lowest, s, out)
			out = out[s.count*size:]
		}
		return nil
	}
	rowWise := true
	for _, s := range segs {
		rowWise = rowWise && ((s.count-1)*step+1)*size <= max(overRead*s.count*size, minRowRead)
	}
	var buf []byte
	grow := func(n int64) []byte {
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		return buf[:n]
	}
	if rowWise {
		out := dst
		for _, s := range segs {
			b := grow(((s.count-1)*step + 1) * size)
			if err := f.readStorage(t.st, b, s.first*size); err != nil {
				return err
			}
			pick(b, s.first, s, out)
			out = out[s.count*size:]
		}
		return nil
	}
	// Rows far wider than their elements (a transposed matrix): column j
	// of every row at once, whose elements usually lie close together.
	starts := make([]int64, len(segs)) // each segment's first element in dst
	var widest, at int64
	for i, s := range segs {
		starts[i], at = at, at+s.count
		widest = max(widest, s.count)
	}
	for j := range widest {
		lo, hi, k := int64(-1), int64(0), int64(0)
		for _, s := range segs {
			if j < s.count {
				e := s.first + j*step
				if lo < 0 || e < lo {
					lo = e
				}
				hi = max(hi, e)
				k++
			}
		}
		span := (hi - lo + 1) * size
		var b []byte
		if span <= max(overRead*k*size, minRowRead) {
			b = grow(span)
			if err := f.readStorage(t.st, b, lo*size); err != nil {
				return err
			}
		}
		for i, s := range segs {
			if j >= s.count {
				continue
			}
			e, o := s.first+j*step, (starts[i]+j)*size
			if b != nil {
				copy(dst[o:o+size], b[(e-lo)*size:])
			} else if err := f.readStorage(t.st, dst[o:o+size], e*size); err != nil {
				return err
			}
		}
	}
	return nil
}

// readStorage fills p with the bytes of st from byte off on.
func (f *File) readStorage(st *storage, p []byte, off int64) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return os.ErrClosed
	}
	e := st.entry
	whole := off == 0 && uint64(len(p)) == e.UncompressedSize64
	if e.Method == zip.Store {
		st.once.Do(func() {
			o, err := e.DataOffset()
			switch {
			case err != nil:
				st.err = fmt.Errorf("%w: storage %q: %v", ErrArchive, st.key, err)
			case o < 0 || uint64(o) > uint64(f.Size)-e.CompressedSize64:
				st.err = fmt.Errorf("%w: storage %q: entry data at %d runs beyond the end of the file", ErrTruncated, st.key, o)
			}
			st.dataOff = o
		})
		if st.err != nil {
			return st.err
		}
		if n, err := f.r.ReadAt(p, st.dataOff+off); n < len(p) {
			if err == nil || err == io.EOF {
				err = ErrTruncated
			}
			return fmt.Errorf("storage %q: %w", st.key, err)
		}
		if whole && e.CRC32 != 0 && crc32.ChecksumIEEE(p) != e.CRC32 {
			return fmt.Errorf("%w: storage %q: CRC-32 mismatch (corrupt file)", ErrStorage, st.key)
		}
		return nil
	}
	rc, err := e.Open()
	if err != nil {
		return fmt.Errorf("%w: storage %q: %v", ErrArchive, st.key, err)
	}
	defer rc.Close()
	if _, err := io.CopyN(io.Discard, rc, off); err != nil {
		return entryError(e, err)
	}
	if _, err := io.ReadFull(rc, p); err != nil {
		return entryError(e, err)
	}
	if whole {
		var one [1]byte
		if _, err := rc.Read(one[:]); err != io.EOF {
			return entryError(e, err)
		}
	}
	return nil
}

// swapBytes reverses the bytes of each size-byte element.
func swapBytes(b []byte, size int) {
	if size == 1 {
		return
	}
	for i := 0; i+size <= len(b); i += size {
		for l, r := i, i+size-1; l < r; l, r = l+1, r-1 {
			b[l], b[r] = b[r], b[l]
		}
	}
}

// Float32 returns tensor name converted to float32 (a new slice).
func (f *File) Float32(name string) ([]float32, error) {
	t, ok := f.Info(name)
	if !ok {
		return nil, fmt.Errorf("%s: %w: %q", f.Path, ErrNotFound, name)
	}
	data, err := f.TensorData(t)
	if err != nil {
		return nil, err
	}
	out := make([]float32, t.NumElements())
	if err := dtype.ToF32(out, data, t.DType); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.Path, name, err)
	}
	return out, nil
}

// Each calls fn for every tensor in file order with its bytes, which are
// valid only until fn returns: one buffer, as large as the largest tensor,
// serves every call. Tensors sharing a storage are each read in full.
func (f *File) Each(fn func(t TensorInfo, data []byte) error) error {
	var buf []byte
	return f.each(fn, &buf)
}

func (f *File) each(fn func(t TensorInfo, data []byte) error, buf *[]byte) error {
	for _, t := range f.Tensors {
		n := t.NumBytes()
		if int64(cap(*buf)) < n {
			*buf = make([]byte, n)
		}
		data := (*buf)[:n]
		if err := f.ReadTensorInfo(t, data); err != nil {
			return err
		}
		if err := fn(t, data); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the file (when Open opened it). Reads after Close fail.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	if f.closer != nil {
		return f.closer.Close()
	}
	return nil
}
