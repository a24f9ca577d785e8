package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/dtype"
)

// fixtures locates ../shared/fixtures above the package directory.
func fixtures(t testing.TB) string {
	t.Helper()
	return testbin.Fixtures(t)
}

func fixtureFiles(t testing.TB) []string {
	var out []string
	filepath.WalkDir(fixtures(t), func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".safetensors") {
			out = append(out, p)
		}
		return nil
	})
	if len(out) < 10 {
		t.Fatalf("found only %d fixture files", len(out))
	}
	return out
}

// rewrite reads a file and writes it back through the reference layout.
func rewrite(t *testing.T, path string) []byte {
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, f.Header.Metadata, f.Header.Tensors)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range w.Order() {
		data, err := f.Data(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteTensor(ti.Name, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTripFixturesByteIdentical(t *testing.T) {
	for _, p := range fixtureFiles(t) {
		want, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := rewrite(t, p); !bytes.Equal(got, want) {
			t.Errorf("%s: rewritten file differs (%d vs %d bytes)", p, len(got), len(want))
		}
	}
}

func TestStreamReaderMatchesFile(t *testing.T) {
	for _, p := range fixtureFiles(t) {
		f, err := Open(p)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := os.ReadFile(p)
		s, err := NewStreamReader(iotestOneByte(bytes.NewReader(raw)), p)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for i := 0; ; i++ {
			var ti TensorInfo
			var data []byte
			if i%2 == 0 {
				ti, data, err = s.ReadAll()
			} else {
				ti, _, err = s.Next() // skip without reading
				data = nil
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			n++
			if data != nil {
				want, _ := f.Data(ti.Name)
				if !bytes.Equal(data, want) {
					t.Errorf("%s: tensor %s differs", p, ti.Name)
				}
			}
		}
		if n != len(f.Header.Tensors) {
			t.Errorf("%s: streamed %d tensors, want %d", p, n, len(f.Header.Tensors))
		}
		f.Close()
	}
}

// iotestOneByte returns a reader that yields at most 7 bytes per read, to
// exercise short reads.
func iotestOneByte(r io.Reader) io.Reader { return &smallReader{r} }

type smallReader struct{ r io.Reader }

func (s *smallReader) Read(p []byte) (int, error) {
	if len(p) > 7 {
		p = p[:7]
	}
	return s.r.Read(p)
}

func TestFloat32FromBF16Fixture(t *testing.T) {
	dir := fixtures(t)
	a, err := Open(filepath.Join(dir, "peft/tiny/model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(filepath.Join(dir, "peft/tiny-bf16/model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	name := "model.layers.0.self_attn.q_proj.weight"
	x, err := a.Float32(name)
	if err != nil {
		t.Fatal(err)
	}
	y, err := b.Float32(name)
	if err != nil {
		t.Fatal(err)
	}
	for i := range x {
		if dtype.BF16ToF32(dtype.F32ToBF16(x[i])) != y[i] {
			t.Fatalf("element %d: bf16(%v) != %v", i, x[i], y[i])
		}
	}
}

func header(js string) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(js)))
	b.WriteString(js)
	return b.Bytes()
}

func TestHostileHeaders(t *testing.T) {
	cases := []struct {
		name string
		file []byte
		want error
	}{
		{"empty", nil, ErrHeader},
		{"short prefix", []byte{1, 2, 3}, ErrHeader},
		{"huge length", func() []byte { b := make([]byte, 16); binary.LittleEndian.PutUint64(b, 1<<40); return b }(), ErrHeader},
		{"length beyond file", func() []byte { b := make([]byte, 16); binary.LittleEndian.PutUint64(b, 100); return b }(), ErrHeader},
		{"not json", header("hello world!"), ErrHeader},
		{"array", header("[1,2,3]"), ErrHeader},
		{"bad utf8", header("{\"\xff\":1}"), ErrHeader},
		{"dup", append(header(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`), 1, 2), ErrHeader},
		{"metadata not strings", header(`{"__metadata__":{"a":1}}`), ErrHeader},
		{"unknown dtype", append(header(`{"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}`), 0), ErrTensor},
		{"negative dim", header(`{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}`), ErrTensor},
		{"overflow", header(`{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`), ErrTensor},
		{"size mismatch", append(header(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`), 0, 0, 0, 0), ErrTensor},
		{"one offset", header(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[0]}}`), ErrTensor},
		{"reversed offsets", header(`{"a":{"dtype":"U8","shape":[0],"data_offsets":[1,0]}}`), ErrTensor},
		{"overlap", append(header(`{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}`), 0, 0, 0), ErrTensor},
		{"gap", append(header(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`), 0, 0), ErrTensor},
		{"beyond file", append(header(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`), 0, 0), ErrTruncated},
		{"trailing data", append(header(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`), 0, 0), ErrHeader},
		{"trailing json", header(`{} {}`), ErrHeader},
		{"too many dims", header(`{"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}}`), ErrTensor},
		{"float dim", header(`{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}`), ErrTensor},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.safetensors")
			os.WriteFile(p, c.file, 0o644)
			f, err := Open(p)
			if err == nil {
				f.Close()
				t.Fatal("Open accepted a bad file")
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file", err)
			}
			if _, err := NewStreamReader(bytes.NewReader(c.file), "-"); err == nil && c.want != ErrTruncated && c.name != "trailing data" && c.name != "length beyond file" {
				t.Errorf("stream reader accepted a bad header")
			}
		})
	}
}

func TestStreamTruncatedData(t *testing.T) {
	file := append(header(`{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}`), 1, 2)
	s, err := NewStreamReader(bytes.NewReader(file), "-")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ReadAll(); !errors.Is(err, ErrTruncated) {
		t.Fatalf("got %v, want ErrTruncated", err)
	}
}

func TestWriterOrderAndMisuse(t *testing.T) {
	infos := []TensorInfo{
		{Name: "z", DType: dtype.U8, Shape: []int64{1}},
		{Name: "b", DType: dtype.F32, Shape: []int64{2}},
		{Name: "a", DType: dtype.BF16, Shape: []int64{1}},
		{Name: "c", DType: dtype.I64, Shape: []int64{1}},
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, map[string]string{"z": "1", "format": "pt"}, infos)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ti := range w.Order() {
		got = append(got, ti.Name)
	}
	if strings.Join(got, ",") != "b,c,a,z" {
		t.Fatalf("order %v", got)
	}
	if err := w.WriteTensor("c", make([]byte, 8)); !errors.Is(err, ErrWrite) {
		t.Fatalf("out-of-order write accepted: %v", err)
	}
	if err := w.WriteTensor("b", make([]byte, 7)); !errors.Is(err, ErrWrite) {
		t.Fatalf("wrong size accepted: %v", err)
	}
	if err := w.WriteTensor("b", make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); !errors.Is(err, ErrWrite) {
		t.Fatalf("Close with missing tensors: %v", err)
	}
	// Write across boundaries with io.Copy semantics.
	buf.Reset()
	w, _ = NewWriter(&buf, nil, infos)
	if _, err := w.Write(make([]byte, 8+8+2+1)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte{0}); !errors.Is(err, ErrWrite) {
		t.Fatalf("extra byte accepted: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	h, _, err := ReadHeader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if h.Metadata != nil || len(h.Tensors) != 4 {
		t.Fatalf("bad header %+v", h)
	}
	if (len(buf.Bytes())-8-int(h.DataSize))%8 != 0 {
		t.Fatal("header not padded to 8 bytes")
	}
}

// TestWriterLargeAndSmallWrites: writes below and above the size that
// bypasses the buffer, mixed and across tensor boundaries, give the bytes
// of Encode.
func TestWriterLargeAndSmallWrites(t *testing.T) {
	sizes := []int64{3, 3 * directBytes / 2, 10, 5 * directBytes}
	tensors := map[string]Tensor{}
	var infos []TensorInfo
	for i, n := range sizes {
		name := string(rune('a' + i))
		data := make([]byte, n)
		for k := range data {
			data[k] = byte(k*7 + i)
		}
		tensors[name] = Tensor{DType: dtype.U8, Shape: []int64{n}, Data: data}
		infos = append(infos, TensorInfo{Name: name, DType: dtype.U8, Shape: []int64{n}})
	}
	var want bytes.Buffer
	if err := Encode(&want, nil, tensors); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	w, err := NewWriter(&got, nil, infos)
	if err != nil {
		t.Fatal(err)
	}
	var all []byte
	for _, ti := range w.Order() {
		all = append(all, tensors[ti.Name].Data...)
	}
	for i := 0; len(all) > 0; i++ {
		step := []int{1, directBytes + 5, 100, 2 * directBytes, directBytes - 1}[i%5]
		k := min(step, len(all))
		if _, err := w.Write(all[:k]); err != nil {
			t.Fatal(err)
		}
		all = all[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatal("mixed writes differ from Encode")
	}
}

func TestHeaderEscaping(t *testing.T) {
	md := map[string]string{"config": "{\"a\": \"\\u00e9\\n\"}\n\t\x01é<>&\u2028"}
	var buf bytes.Buffer
	if err := Encode(&buf, md, map[string]Tensor{"x": {DType: dtype.U8, Shape: []int64{}, Data: []byte{7}}}); err != nil {
		t.Fatal(err)
	}
	h, _, err := ReadHeader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if h.Metadata["config"] != md["config"] {
		t.Fatalf("metadata %q", h.Metadata["config"])
	}
	if !bytes.Contains(buf.Bytes(), []byte(`\n\t\u0001é<>&`+"\u2028")) {
		t.Fatalf("escaping differs from serde_json: %q", buf.Bytes())
	}
}

func TestCompressionRoundTrip(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(fixtures(t), "peft/lora/adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []Compression{None, Gzip, Zstd} {
		var buf bytes.Buffer
		w, err := Compress(&buf, c)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(raw)
		w.Close()
		r, got, err := Decompress(&buf)
		if err != nil || got != c {
			t.Fatalf("compression %d: detected %d, %v", c, got, err)
		}
		back, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(back, raw) {
			t.Fatalf("compression %d: round trip differs: %v", c, err)
		}
	}
	if CompressionFor("a.safetensors.zst") != Zstd || CompressionFor("a.gz") != Gzip || CompressionFor("a") != None {
		t.Fatal("CompressionFor")
	}
}

func TestShardedSet(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, ts map[string]Tensor) {
		f, _ := os.Create(filepath.Join(dir, name))
		defer f.Close()
		if err := Encode(f, map[string]string{"format": "pt"}, ts); err != nil {
			t.Fatal(err)
		}
	}
	write("model-00001-of-00002.safetensors", map[string]Tensor{"a": {dtype.F32, []int64{1}, []byte{0, 0, 128, 63}}})
	write("model-00002-of-00002.safetensors", map[string]Tensor{"b": {dtype.F32, []int64{1}, []byte{0, 0, 0, 64}}})
	idx := `{"metadata":{"total_size":8},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}`
	os.WriteFile(filepath.Join(dir, IndexFile), []byte(idx), 0o644)
	s, ix, err := OpenIndexed(filepath.Join(dir, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(ix.Shards()) != 2 || len(s.Names()) != 2 {
		t.Fatalf("shards %v names %v", ix.Shards(), s.Names())
	}
	v, err := s.Float32("b")
	if err != nil || v[0] != 2 {
		t.Fatalf("b = %v, %v", v, err)
	}
	// An index naming a tensor that is not in its shard is refused.
	bad := strings.Replace(idx, `"b":"model-00002`, `"c":"model-00002`, 1)
	os.WriteFile(filepath.Join(dir, IndexFile), []byte(bad), 0o644)
	if _, _, err := OpenIndexed(filepath.Join(dir, IndexFile)); !errors.Is(err, ErrIndex) {
		t.Fatalf("mismatched index accepted: %v", err)
	}
	os.WriteFile(filepath.Join(dir, IndexFile), []byte(`{"weight_map":{"a":"../x.safetensors"}}`), 0o644)
	if _, _, err := OpenIndexed(filepath.Join(dir, IndexFile)); !errors.Is(err, ErrIndex) {
		t.Fatalf("path escape accepted: %v", err)
	}
}

// TestOpenReadsOnlyTheHeader opens a sparse multi-gigabyte file: Open must
// not touch the data (it would take seconds and gigabytes otherwise).
func TestOpenReadsOnlyTheHeader(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.safetensors")
	const n = 4 << 30 // 4 GiB of bf16

	hdr, _, _ := EncodeHeader(map[string]string{"format": "pt"}, []TensorInfo{{Name: "w", DType: dtype.BF16, Shape: []int64{n / 2}}})

	f, _ := os.Create(p)
	binary.Write(f, binary.LittleEndian, uint64(len(hdr)))
	f.Write(hdr)
	if err := f.Truncate(int64(8 + len(hdr) + n)); err != nil {
		t.Skip("sparse files unsupported:", err)
	}
	f.Close()
	st, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if ti, _ := st.Info("w"); ti.NumBytes() != n {
		t.Fatalf("size %d", ti.NumBytes())
	}
}

func FuzzReadHeader(f *testing.F) {
	for _, p := range fixtureFiles(f) {
		b, _ := os.ReadFile(p)
		if len(b) > 4096 {
			f.Add(b[:4096])
		} else {
			f.Add(b)
		}
	}
	f.Add(header(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, start, err := ReadHeader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		var end int64
		for _, ti := range h.Tensors {
			if ti.Offsets[0] != end || ti.NumBytes() != ti.NumElements()*int64(ti.DType.Size()) {
				t.Fatalf("inconsistent tensor accepted: %+v", ti)
			}
			end = ti.Offsets[1]
		}
		if start+end != int64(len(b)) {
			t.Fatalf("data section does not end the file")
		}
		// A valid header re-encodes to something that parses the same.
		hdr, _, err := EncodeHeader(h.Metadata, h.Tensors)
		if err != nil {
			t.Fatal(err)
		}
		h2, err := ParseHeader(hdr, h.DataSize)
		if err != nil || len(h2.Tensors) != len(h.Tensors) {
			t.Fatalf("re-encoded header does not parse: %v", err)
		}
	})
}

// TestStreamHugeDeclaredTensor: a stream header declaring 8 GiB followed by
// a few bytes fails with ErrTruncated without allocating the declared size.
func TestStreamHugeDeclaredTensor(t *testing.T) {
	file := append(header(`{"a":{"dtype":"U8","shape":[8589934592],"data_offsets":[0,8589934592]}}`), 1, 2, 3)
	s, err := NewStreamReader(bytes.NewReader(file), "-")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ReadAll(); !errors.Is(err, ErrTruncated) {
		t.Fatalf("got %v, want ErrTruncated", err)
	}
}
