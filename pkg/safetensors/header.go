package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/bits"
	"sort"
	"sync"
	"unicode/utf8"

	"github.com/lorakit/lorakit/pkg/dtype"
)

// MetadataKey is the reserved header key holding string metadata.
const MetadataKey = "__metadata__"

// TensorInfo describes one tensor of a header. Offsets are relative to the
// start of the data section, as in the file.
type TensorInfo struct {
	Name    string
	DType   dtype.DType
	Shape   []int64
	Offsets [2]int64
}

// NumElements is the product of the shape (1 for a scalar).
func (t TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// NumBytes is the size of the tensor's data.
func (t TensorInfo) NumBytes() int64 { return t.Offsets[1] - t.Offsets[0] }

// Header is a parsed safetensors header.
type Header struct {
	// Metadata is the __metadata__ map; nil when the file has none.
	Metadata map[string]string
	// Tensors in data (file) order.
	Tensors []TensorInfo
	// DataSize is the length of the data section.
	DataSize int64

	indexOnce sync.Once
	index     map[string]int
}

// Info returns the tensor called name. It is safe for concurrent use.
func (h *Header) Info(name string) (TensorInfo, bool) {
	h.indexOnce.Do(func() {
		h.index = make(map[string]int, len(h.Tensors))
		for i, t := range h.Tensors {
			h.index[t.Name] = i
		}
	})
	i, ok := h.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	return h.Tensors[i], true
}

// Names lists the tensor names in file order.
func (h *Header) Names() []string {
	names := make([]string, len(h.Tensors))
	for i, t := range h.Tensors {
		names[i] = t.Name
	}
	return names
}

// ReadHeader reads the length prefix and the header from r and validates
// it. fileSize is the whole file's size, or -1 when unknown (a stream); when
// known, the data section must end exactly at the end of the file. It returns
// the header and the offset of the data section from the start of the file.
func ReadHeader(r io.Reader, fileSize int64) (*Header, int64, error) {
	var prefix [8]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return nil, 0, fmt.Errorf("%w: header length: %v", ErrHeader, shortRead(err))
	}
	n := binary.LittleEndian.Uint64(prefix[:])
	if n > uint64(MaxHeaderSize) {
		return nil, 0, fmt.Errorf("%w: header length %d exceeds %d bytes (not a safetensors file?)", ErrHeader, n, MaxHeaderSize)
	}
	if n < 2 {
		return nil, 0, fmt.Errorf("%w: header length %d is too small", ErrHeader, n)
	}
	if fileSize >= 0 && int64(n)+8 > fileSize {
		return nil, 0, fmt.Errorf("%w: header length %d exceeds the file size %d", ErrHeader, n, fileSize)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, 0, fmt.Errorf("%w: header: %v", ErrHeader, shortRead(err))
	}
	dataSize := int64(-1)
	if fileSize >= 0 {
		dataSize = fileSize - 8 - int64(n)
	}
	h, err := ParseHeader(buf, dataSize)
	if err != nil {
		return nil, 0, err
	}
	return h, 8 + int64(n), nil
}

func shortRead(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return ErrTruncated
	}
	return err
}

type rawTensor struct {
	DType       string  `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// ParseHeader parses and validates header JSON (without the length prefix;
// trailing space padding is allowed). dataSize is the length of the data
// section, or -1 when unknown.
func ParseHeader(buf []byte, dataSize int64) (*Header, error) {
	if !utf8.Valid(buf) {
		return nil, fmt.Errorf("%w: header is not valid UTF-8", ErrHeader)
	}
	dec := json.NewDecoder(bytes.NewReader(buf))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("%w: header is not a JSON object", ErrHeader)
	}
	h := &Header{}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrHeader, err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("%w: unexpected %v", ErrHeader, tok)
		}
		if seen[name] {
			return nil, fmt.Errorf("%w: duplicate key %q", ErrHeader, name)
		}
		seen[name] = true
		if name == MetadataKey {
			var md map[string]string
			if err := dec.Decode(&md); err != nil {
				return nil, fmt.Errorf("%w: %s must map strings to strings: %v", ErrHeader, MetadataKey, err)
			}
			for k, v := range md {
				if len(v) > MaxMetadataValue {
					return nil, fmt.Errorf("%w: metadata %q is %d bytes (limit %d)", ErrHeader, k, len(v), MaxMetadataValue)
				}
			}
			h.Metadata = md
			continue
		}
		if len(h.Tensors) >= MaxTensors {
			return nil, fmt.Errorf("%w: more than %d tensors", ErrHeader, MaxTensors)
		}
		var rt rawTensor
		if err := dec.Decode(&rt); err != nil {
			return nil, fmt.Errorf("%w: tensor %q: %v", ErrTensor, name, err)
		}
		t, err := checkTensor(name, rt)
		if err != nil {
			return nil, err
		}
		h.Tensors = append(h.Tensors, t)
	}
	if _, err := dec.Token(); err != nil { // closing brace
		return nil, fmt.Errorf("%w: %v", ErrHeader, err)
	}
	rest := buf[dec.InputOffset():]
	if len(bytes.Trim(rest, " \t\r\n\x00")) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes after the header JSON", ErrHeader)
	}
	sort.SliceStable(h.Tensors, func(i, j int) bool { return h.Tensors[i].Offsets[0] < h.Tensors[j].Offsets[0] })
	var end int64
	for _, t := range h.Tensors {
		if t.Offsets[0] != end {
			if t.Offsets[0] < end {
				return nil, fmt.Errorf("%w: tensor %q: data [%d,%d) overlaps the previous tensor", ErrTensor, t.Name, t.Offsets[0], t.Offsets[1])
			}
			return nil, fmt.Errorf("%w: tensor %q: data starts at %d, leaving a gap after %d", ErrTensor, t.Name, t.Offsets[0], end)
		}
		end = t.Offsets[1]
		if dataSize >= 0 && end > dataSize {
			return nil, fmt.Errorf("%w: tensor %q: data [%d,%d) is beyond the end of the file (data section is %d bytes)", ErrTruncated, t.Name, t.Offsets[0], t.Offsets[1], dataSize)
		}
	}
	if dataSize >= 0 && end != dataSize {
		return nil, fmt.Errorf("%w: the tensors cover %d bytes but the data section is %d bytes", ErrHeader, end, dataSize)
	}
	h.DataSize = end
	return h, nil
}

func checkTensor(name string, rt rawTensor) (TensorInfo, error) {
	bad := func(format string, args ...any) (TensorInfo, error) {
		return TensorInfo{}, fmt.Errorf("%w: tensor %q: %s", ErrTensor, name, fmt.Sprintf(format, args...))
	}
	dt, err := dtype.Parse(rt.DType)
	if err != nil || dt.Size() == 0 {
		return bad("unsupported dtype %q", rt.DType)
	}
	if len(rt.Shape) > MaxDims {
		return bad("%d dimensions (limit %d)", len(rt.Shape), MaxDims)
	}
	if len(rt.DataOffsets) != 2 {
		return bad("data_offsets must have two entries, has %d", len(rt.DataOffsets))
	}
	n := uint64(1)
	for _, d := range rt.Shape {
		if d < 0 {
			return bad("negative dimension %d", d)
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return bad("shape %v overflows", rt.Shape)
		}
		n = lo
	}
	hi, size := bits.Mul64(n, uint64(dt.Size()))
	if hi != 0 || size > math.MaxInt64 {
		return bad("shape %v overflows", rt.Shape)
	}
	b, e := rt.DataOffsets[0], rt.DataOffsets[1]
	if b < 0 || e < b {
		return bad("invalid data_offsets [%d,%d]", b, e)
	}
	if uint64(e-b) != size {
		return bad("data_offsets [%d,%d] hold %d bytes but %s%v needs %d", b, e, e-b, dt, rt.Shape, size)
	}
	shape := rt.Shape
	if shape == nil {
		shape = []int64{}
	}
	return TensorInfo{Name: name, DType: dt, Shape: shape, Offsets: [2]int64{b, e}}, nil
}
