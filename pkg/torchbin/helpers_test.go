package torchbin

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"math"
	"testing"
)

// pkl writes pickle opcodes for tests (protocol 2), like testdata/make.py.
type pkl struct{ b []byte }

func newPkl() *pkl { return &pkl{b: []byte{opProto, 2}} }

func (p *pkl) op(raw ...byte) *pkl { p.b = append(p.b, raw...); return p }

func (p *pkl) global(module, name string) *pkl {
	p.b = append(p.b, opGlobal)
	p.b = append(p.b, module+"\n"+name+"\n"...)
	return p
}

func (p *pkl) str(s string) *pkl {
	p.b = append(p.b, opBinUnicode)
	p.b = binary.LittleEndian.AppendUint32(p.b, uint32(len(s)))
	p.b = append(p.b, s...)
	return p
}

func (p *pkl) int(n int) *pkl {
	p.b = append(p.b, opBinInt)
	p.b = binary.LittleEndian.AppendUint32(p.b, uint32(int32(n)))
	return p
}

func (p *pkl) ints(xs ...int) *pkl {
	p.op(opMark)
	for _, x := range xs {
		p.int(x)
	}
	return p.op(opTuple)
}

func (p *pkl) storage(typ, key string, numel int) *pkl {
	p.op(opMark).str("storage").global("torch", typ).str(key).str("cpu").int(numel).op(opTuple)
	return p.op(opBinPersID)
}

// tensor writes _rebuild_tensor_v2(storage, offset, shape, stride, False, OrderedDict()).
func (p *pkl) tensor(typ, key string, numel, offset int, shape, stride []int) *pkl {
	p.global("torch._utils", "_rebuild_tensor_v2").op(opMark).storage(typ, key, numel).int(offset)
	p.ints(shape...).ints(stride...).op(opNewFalse)
	p.global("collections", "OrderedDict").op(opEmptyTuple, opReduce)
	return p.op(opTuple, opReduce)
}

func (p *pkl) bytes() []byte { return append(append([]byte(nil), p.b...), opStop) }

// zipEntry is one entry of a test archive.
type zipEntry struct {
	name    string
	data    []byte
	deflate bool
}

// makeZip writes entries (names relative to folder) into a zip archive.
func makeZip(t testing.TB, folder string, entries ...zipEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: folder + "/" + e.name, Method: zip.Store}
		if e.deflate {
			h.Method = zip.Deflate
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// f32Seq encodes float32 values 0, 1, 2, ... n-1.
func f32Seq(n int) []byte {
	b := make([]byte, 0, 4*n)
	for i := range n {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(i)))
	}
	return b
}

// stateDict builds the pickle of {name: tensor} for one F32 storage "0"
// of numel elements with the given views.
type view struct {
	name          string
	offset        int
	shape, stride []int
}

func stateDict(numel int, views ...view) []byte {
	p := newPkl().op(opEmptyDict, opMark)
	for _, v := range views {
		p.str(v.name).tensor("FloatStorage", "0", numel, v.offset, v.shape, v.stride)
	}
	return p.op(opSetItems).bytes()
}

// archive wraps a pickle and storage "0" into a checkpoint archive.
func archive(t testing.TB, pickle, storage0 []byte) []byte {
	return makeZip(t, "archive", zipEntry{name: "data.pkl", data: pickle},
		zipEntry{name: "data/0", data: storage0}, zipEntry{name: "version", data: []byte("3\n")})
}

func openBytes(t testing.TB, b []byte) (*File, error) {
	t.Helper()
	return NewReader(bytes.NewReader(b), int64(len(b)), "test.bin")
}
