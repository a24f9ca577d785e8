package torchbin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lorakit/lorakit/pkg/safetensors"
)

const testdata = "testdata"

// compareRef checks that the tensors listed by names (read through read)
// are the reference file's, in order, name by name and byte for byte.
func compareRef(t *testing.T, refPath string, infos []TensorInfo, read func(TensorInfo) ([]byte, error)) {
	t.Helper()
	ref, err := safetensors.Open(filepath.Join(testdata, refPath))
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	want := ref.Header.Tensors
	if len(infos) != len(want) {
		t.Fatalf("%d tensors, want %d: %v", len(infos), len(want), names(infos))
	}
	for i, w := range want {
		got := infos[i]
		if got.Name != w.Name || got.DType != w.DType || !slices.Equal(got.Shape, w.Shape) {
			t.Errorf("tensor %d: %s %s %v, want %s %s %v", i, got.Name, got.DType, got.Shape, w.Name, w.DType, w.Shape)
			continue
		}
		if got.NumBytes() != w.NumBytes() {
			t.Errorf("%s: NumBytes %d, want %d", got.Name, got.NumBytes(), w.NumBytes())
		}
		data, err := read(got)
		if err != nil {
			t.Errorf("%s: %v", got.Name, err)
			continue
		}
		wantData, err := ref.TensorData(w)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, wantData) {
			t.Errorf("%s: bytes differ from the reference\n got %x\nwant %x", got.Name, data, wantData)
		}
	}
}

func names(ts []TensorInfo) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return out
}

func TestReferenceFiles(t *testing.T) {
	for _, tc := range []struct {
		file, ref, folder string
		skipped           []string
		bigEndian         bool
	}{
		{file: "plain.bin", ref: "plain.ref.safetensors", folder: "archive"},
		{file: "dtypes.bin", ref: "dtypes.ref.safetensors", folder: "dtypes"},
		{file: "views.bin", ref: "views.ref.safetensors", folder: "views"},
		{file: "nested.bin", ref: "nested.ref.safetensors", folder: "nested", skipped: []string{
			"epoch", "global_step", "pytorch-lightning_version", "optimizer_states", "lr_schedulers", "hyper_parameters"}},
		{file: "tree.bin", ref: "tree.ref.safetensors", folder: "tree", skipped: []string{"step"}},
		{file: "renamed.bin", ref: "renamed.ref.safetensors", folder: "other_name"},
		{file: "proto4.bin", ref: "proto4.ref.safetensors", folder: "proto4"},
		{file: "adapter/adapter_model.bin", ref: "adapter.ref.safetensors", folder: "adapter_model"},
		{file: "bigendian.bin", ref: "bigendian.ref.safetensors", folder: "archive", bigEndian: true},
		{file: "torch2.bin", ref: "torch2.ref.safetensors", folder: "archive", skipped: []string{"bytes", "size", "device", "set"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f, err := Open(filepath.Join(testdata, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Folder != tc.folder || f.BigEndian != tc.bigEndian {
				t.Errorf("folder %q big-endian %v, want %q %v", f.Folder, f.BigEndian, tc.folder, tc.bigEndian)
			}
			if !slices.Equal(f.Skipped, tc.skipped) {
				t.Errorf("skipped %q, want %q", f.Skipped, tc.skipped)
			}
			compareRef(t, tc.ref, f.Tensors, f.TensorData)
			// Each, ReadTensor and Data agree with TensorData.
			var i int
			err = f.Each(func(ti TensorInfo, data []byte) error {
				want, err := f.Data(ti.Name)
				if err != nil {
					return err
				}
				if ti.Name != f.Tensors[i].Name || !bytes.Equal(data, want) {
					t.Errorf("Each: tensor %d (%s) differs from Data", i, ti.Name)
				}
				dst := make([]byte, len(data))
				if err := f.ReadTensor(ti.Name, dst); err != nil || !bytes.Equal(dst, data) {
					t.Errorf("ReadTensor %s: %v", ti.Name, err)
				}
				i++
				return nil
			})
			if err != nil || i != len(f.Tensors) {
				t.Fatalf("Each: %v after %d tensors", err, i)
			}
		})
	}
}

func TestViewsLayout(t *testing.T) {
	f, err := Open(filepath.Join(testdata, "views.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tc := range []struct {
		name       string
		storage    string
		offset     int64
		stride     []int64
		contiguous bool
	}{
		{"base", "0", 0, []int64{8, 1}, true},
		{"row_slice", "0", 16, []int64{8, 1}, true},
		{"col_slice", "0", 2, []int64{8, 1}, false},
		{"transposed", "0", 0, []int64{1, 8}, false},
		{"step", "0", 1, []int64{5}, false},
		{"element", "0", 28, []int64{}, true},
		{"embed.weight", "1", 0, []int64{4, 1}, true},
		{"lm_head.weight", "1", 0, []int64{4, 1}, true},
		{"broadcast", "3", 0, []int64{1, 0}, false},
	} {
		ti, ok := f.Info(tc.name)
		if !ok {
			t.Fatalf("no tensor %q", tc.name)
		}
		if ti.Storage != tc.storage || ti.Offset != tc.offset || !slices.Equal(ti.Stride, tc.stride) || ti.Contiguous() != tc.contiguous {
			t.Errorf("%s: storage %q offset %d stride %v contiguous %v, want %q %d %v %v", tc.name,
				ti.Storage, ti.Offset, ti.Stride, ti.Contiguous(), tc.storage, tc.offset, tc.stride, tc.contiguous)
		}
	}
	embed, _ := f.Info("embed.weight")
	head, _ := f.Info("lm_head.weight")
	base, _ := f.Info("base")
	rows, _ := f.Info("row_slice")
	if !embed.SameView(head) || embed.SameView(base) || base.SameView(rows) {
		t.Error("SameView: tied weights are the only alias")
	}
	var sum int64
	for _, ti := range f.Tensors {
		sum += ti.NumBytes()
	}
	if f.DataSize() != sum || sum != 48*4+16*4+18*4+48*4+10*4+4+0+2*40*4+12*8+15*4+4*4+9*2+15*2 {
		t.Errorf("DataSize %d, sum %d", f.DataSize(), sum)
	}
}

func TestShardedSet(t *testing.T) {
	s, ix, err := OpenIndexed(filepath.Join(testdata, "sharded", IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(s.Files) != 2 || len(ix.WeightMap) != 4 {
		t.Fatalf("%d files, %d index entries", len(s.Files), len(ix.WeightMap))
	}
	var infos []TensorInfo
	for _, n := range s.Names() {
		ti, f, ok := s.Info(n)
		if !ok || filepath.Base(f.Path) != ix.WeightMap[n] {
			t.Fatalf("%s: in %v, index says %s", n, f, ix.WeightMap[n])
		}
		infos = append(infos, ti)
	}
	compareRef(t, "sharded.ref.safetensors", infos, func(ti TensorInfo) ([]byte, error) { return s.Data(ti.Name) })
	var n int
	if err := s.Each(func(TensorInfo, []byte) error { n++; return nil }); err != nil || n != 4 {
		t.Errorf("Each: %v after %d tensors", err, n)
	}
	if _, err := s.Data("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Data(nope): %v", err)
	}
	f32, err := s.Float32("lm_head.weight")
	if err != nil || len(f32) != 32 {
		t.Errorf("Float32: %d values, %v", len(f32), err)
	}
}

func TestShardedIndexMismatch(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"} {
		b, err := os.ReadFile(filepath.Join(testdata, "sharded", name))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	for _, tc := range []struct{ name, index string }{
		{"wrong shard", `{"weight_map": {"lm_head.weight": "pytorch_model-00001-of-00002.bin",
			"model.embed_tokens.weight": "pytorch_model-00001-of-00002.bin",
			"model.layers.0.mlp.up_proj.weight": "pytorch_model-00001-of-00002.bin",
			"model.layers.0.mlp.down_proj.weight": "pytorch_model-00002-of-00002.bin"}}`},
		{"missing tensor", `{"weight_map": {"lm_head.weight": "pytorch_model-00002-of-00002.bin",
			"model.embed_tokens.weight": "pytorch_model-00001-of-00002.bin",
			"model.layers.0.mlp.down_proj.weight": "pytorch_model-00002-of-00002.bin"}}`},
		{"path outside", `{"weight_map": {"lm_head.weight": "../x.bin"}}`},
	} {
		p := filepath.Join(dir, IndexFile)
		os.WriteFile(p, []byte(tc.index), 0o644)
		if _, _, err := OpenIndexed(p); !errors.Is(err, safetensors.ErrIndex) {
			t.Errorf("%s: %v, want safetensors.ErrIndex", tc.name, err)
		}
	}
}

func TestOpenSetDuplicate(t *testing.T) {
	p := filepath.Join(testdata, "plain.bin")
	if _, err := OpenSet(p, p); !errors.Is(err, safetensors.ErrIndex) {
		t.Errorf("the same file twice: %v, want safetensors.ErrIndex", err)
	}
}

// Malicious pickles are refused naming the file and the global.
func TestMalicious(t *testing.T) {
	for _, tc := range []struct {
		file   string
		err    error
		naming string
	}{
		{"os_system.bin", ErrForbiddenGlobal, "os.system"},
		{"posix_system.bin", ErrForbiddenGlobal, "posix.system"},
		{"nt_system.bin", ErrForbiddenGlobal, "nt.system"},
		{"eval.bin", ErrForbiddenGlobal, "builtins.eval"},
		{"newobj_build.bin", ErrForbiddenGlobal, "__main__.Exploit"},
		{"inst.bin", ErrForbiddenGlobal, "subprocess.Popen"},
		{"ext.bin", ErrForbiddenGlobal, "extension code 1"},
		{"obj.bin", ErrForbiddenGlobal, "OBJ of collections.OrderedDict"},
		{"reduce_storage.bin", ErrForbiddenGlobal, "torch.FloatStorage"},
		{"persid.bin", ErrPickle, `persistent id of kind "module"`},
	} {
		path := filepath.Join(testdata, "evil", tc.file)
		f, err := Open(path)
		if err == nil {
			f.Close()
			t.Errorf("%s: opened", tc.file)
			continue
		}
		if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.naming) || !strings.HasPrefix(err.Error(), path+": ") {
			t.Errorf("%s: %v; want %v naming %q and the file", tc.file, err, tc.err, tc.naming)
		}
	}
}

func TestRefused(t *testing.T) {
	for _, tc := range []struct {
		file string
		err  error
	}{
		{"legacy.bin", ErrLegacyFormat},
		{"torchscript.pt", ErrUnsupported},
		{"truncated.bin", ErrTruncated},
		{"collide.bin", ErrStateDict},
		{"plain.ref.safetensors", ErrNotZip},
		{"make.py", ErrNotZip},
	} {
		f, err := Open(filepath.Join(testdata, tc.file))
		if err == nil {
			f.Close()
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.file, err, tc.err)
		}
	}
	if _, err := Open(testdata); !errors.Is(err, ErrNotZip) {
		t.Errorf("a folder: %v", err)
	}
	if _, err := Open(filepath.Join(testdata, "absent.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
}

// Every prefix of a checkpoint is refused as truncated.
func TestTruncatedEverywhere(t *testing.T) {
	for _, name := range []string{"plain.bin", "torch2.bin"} {
		b, err := os.ReadFile(filepath.Join(testdata, name))
		if err != nil {
			t.Fatal(err)
		}
		for n := range len(b) {
			f, err := openBytes(t, b[:n])
			if err == nil {
				f.Close()
				t.Fatalf("%s cut at %d: opened", name, n)
			}
			want := ErrTruncated
			if n < 4 {
				want = ErrNotZip
			}
			if !errors.Is(err, want) {
				t.Fatalf("%s cut at %d: %v, want %v", name, n, err, want)
			}
		}
	}
}

// A zip directory that survives while a storage's bytes are gone: the
// reading, not the opening, fails.
func TestTruncatedStorage(t *testing.T) {
	pickle := stateDict(1024, view{"w", 0, []int{1024}, []int{1}})
	b := archive(t, pickle, f32Seq(1024))
	// Zero the bytes of data/0's local header signature: the entry's data
	// offset can no longer be found.
	i := bytes.Index(b, []byte("archive/data/0"))
	copy(b[i-30:], "XXXX")
	f, err := openBytes(t, b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Data("w"); !errors.Is(err, ErrArchive) || !strings.Contains(err.Error(), `tensor "w"`) {
		t.Errorf("damaged local header: %v", err)
	}
}

func TestStorageErrors(t *testing.T) {
	long := func(n int) []int { return []int{n} }
	for _, tc := range []struct {
		name   string
		pickle []byte
		data   []byte
		err    error
	}{
		{"view beyond storage", stateDict(8, view{"w", 4, long(5), long(1)}), f32Seq(8), ErrStorage},
		{"stride beyond storage", stateDict(8, view{"w", 0, []int{2, 2}, []int{7, 1}}), f32Seq(8), ErrStorage},
		{"negative stride", stateDict(8, view{"w", 0, long(2), long(-1)}), f32Seq(8), ErrStorage},
		{"negative size", stateDict(8, view{"w", 0, long(-2), long(1)}), f32Seq(8), ErrStorage},
		{"rank mismatch", stateDict(8, view{"w", 0, []int{2, 4}, long(1)}), f32Seq(8), ErrStorage},
		{"overflowing size", stateDict(8, view{"w", 0, []int{1 << 30, 1 << 30, 1 << 30, 1 << 30}, []int{0, 0, 0, 0}}), f32Seq(8), ErrStorage},
		{"expanded too far", stateDict(1, view{"w", 0, []int{100}, []int{0}}), f32Seq(1), ErrStorage},
		{"short entry", stateDict(16, view{"w", 0, long(8), long(1)}), f32Seq(8), ErrStorage},
		{"numel beyond file", stateDict(1<<40, view{"w", 0, long(8), long(1)}), f32Seq(8), ErrStorage},
		{"missing entry", newPkl().op(opEmptyDict).str("w").tensor("FloatStorage", "7", 8, 0, long(8), long(1)).op(opSetItem).bytes(), f32Seq(8), ErrStorage},
		{"two types for a key", newPkl().op(opEmptyDict, opMark).
			str("a").tensor("FloatStorage", "0", 8, 0, long(8), long(1)).
			str("b").tensor("IntStorage", "0", 8, 0, long(8), long(1)).op(opSetItems).bytes(), f32Seq(8), ErrStorage},
		{"complex storage", newPkl().op(opEmptyDict).str("w").tensor("ComplexFloatStorage", "0", 8, 0, long(1), long(1)).op(opSetItem).bytes(), f32Seq(8), ErrUnsupported},
		{"a bare tensor", newPkl().tensor("FloatStorage", "0", 8, 0, long(8), long(1)).bytes(), f32Seq(8), ErrStateDict},
		{"a list of ints", newPkl().op(opEmptyList).bytes(), f32Seq(8), nil},
	} {
		f, err := openBytes(t, archive(t, tc.pickle, tc.data))
		if tc.err == nil {
			if err != nil || len(f.Tensors) != 0 {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
}

// A transposed view of a deflated storage: read by inflating the span.
func TestDeflatedViews(t *testing.T) {
	pickle := stateDict(12, view{"t", 1, []int{3, 3}, []int{1, 4}}, view{"all", 0, []int{12}, []int{1}})
	b := makeZip(t, "archive", zipEntry{name: "data.pkl", data: pickle, deflate: true},
		zipEntry{name: "data/0", data: f32Seq(12), deflate: true})
	f, err := openBytes(t, b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Float32("t")
	if want := []float32{1, 5, 9, 2, 6, 10, 3, 7, 11}; err != nil || !slices.Equal(got, want) {
		t.Errorf("t = %v, %v; want %v", got, err, want)
	}
	all, err := f.Data("all")
	if err != nil || !bytes.Equal(all, f32Seq(12)) {
		t.Errorf("all: %v", err)
	}
}

// A stored storage whose bytes were altered fails its CRC when read whole.
func TestStorageCRC(t *testing.T) {
	pickle := stateDict(4, view{"w", 0, []int{4}, []int{1}}, view{"part", 1, []int{2}, []int{1}})
	b := archive(t, pickle, f32Seq(4))
	i := bytes.Index(b, f32Seq(4))
	b[i+15] ^= 0x40
	f, err := openBytes(t, b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Data("w"); !errors.Is(err, ErrStorage) || !strings.Contains(err.Error(), "CRC") {
		t.Errorf("corrupt storage: %v", err)
	}
	if _, err := f.Data("part"); err != nil { // a partial read cannot check the CRC
		t.Errorf("partial read: %v", err)
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

// Opening reads the directory and the pickle, not the tensor data; reading
// one tensor reads about its bytes.
func TestOpenIsLazy(t *testing.T) {
	const numel = 1 << 20 // 4 MiB of float32
	pickle := stateDict(numel, view{"big", 0, []int{1024, 1024}, []int{1024, 1}},
		view{"row", 1024 * 7, []int{1024}, []int{1}})
	b := archive(t, pickle, f32Seq(numel))
	cr := &countingReader{r: bytes.NewReader(b)}
	f, err := NewReader(cr, int64(len(b)), "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if n := cr.n.Load(); n > 64<<10 {
		t.Errorf("Open read %d bytes of a %d-byte file", n, len(b))
	}
	before := cr.n.Load()
	row, err := f.Float32("row")
	if err != nil || row[0] != 1024*7 || row[1023] != 1024*8-1 {
		t.Fatalf("row: %v", err)
	}
	if n := cr.n.Load() - before; n > 4096+1024 {
		t.Errorf("reading a 4 KiB tensor read %d bytes", n)
	}
}

// ReadTensorAt of random views, at random pieces (whole elements or not),
// agrees with indexing the storage element by element: contiguous views,
// slices, transposes, steps and broadcasts, with spans both within and far
// beyond the over-reading bounds.
func TestReadTensorAt(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const numel = 1 << 20 // 4 MiB: large views take the row and element paths
	storage := f32Seq(numel)
	for iter := range 300 {
		rank := rng.IntN(4)
		shape := make([]int64, rank)
		stride := make([]int64, rank)
		last := int64(0)
		for i := range shape {
			shape[i] = int64(1 + rng.IntN(6))
			stride[i] = int64(rng.IntN(9))
			if iter%3 == 0 { // wide steps: spans far beyond the pieces
				stride[i] *= int64(1 + rng.IntN(20000))
			}
			last += (shape[i] - 1) * stride[i]
		}
		if iter%5 == 0 && rank > 0 { // a big contiguous or transposed matrix
			shape[0], shape[rank-1] = 700, 500
			stride[rank-1] = []int64{1, 700}[iter%2]
			stride[0] = []int64{500, 1}[iter%2]
			for i := 1; i < rank-1; i++ {
				shape[i], stride[i] = 1, 0
			}
			last = 699*stride[0] + 499*stride[rank-1]
		}
		offset := int64(rng.IntN(int(numel - last)))
		ishape, istride := make([]int, rank), make([]int, rank)
		for i := range shape {
			ishape[i], istride[i] = int(shape[i]), int(stride[i])
		}
		f, err := openBytes(t, archive(t, stateDict(numel, view{"v", int(offset), ishape, istride}), storage))
		if err != nil {
			t.Fatalf("iteration %d: %v", iter, err)
		}
		ti, _ := f.Info("v")
		want := make([]byte, 0, ti.NumBytes())
		idx := make([]int64, rank)
		for range ti.NumElements() {
			off := offset
			for i := range idx {
				off += idx[i] * stride[i]
			}
			want = append(want, storage[off*4:off*4+4]...)
			for d := rank - 1; d >= 0; d-- {
				if idx[d]++; idx[d] < shape[d] {
					break
				}
				idx[d] = 0
			}
		}
		whole, err := f.Data("v")
		if err != nil || !bytes.Equal(whole, want) {
			t.Fatalf("iteration %d: shape %v stride %v: Data differs (%v)", iter, shape, stride, err)
		}
		for range 4 {
			off := rng.Int64N(int64(len(want)) + 1)
			n := rng.Int64N(int64(len(want)) - off + 1)
			got := make([]byte, n)
			if err := f.ReadTensorAt(ti, got, off); err != nil {
				t.Fatalf("iteration %d: %v", iter, err)
			}
			if !bytes.Equal(got, want[off:off+n]) {
				t.Fatalf("iteration %d: shape %v stride %v: bytes [%d, %d) differ", iter, shape, stride, off, off+n)
			}
		}
		if err := f.ReadTensorAt(ti, make([]byte, 4), int64(len(want))); err == nil {
			t.Fatalf("iteration %d: a read beyond the tensor succeeded", iter)
		}
	}
}

func TestConcurrentReadsAndClose(t *testing.T) {
	f, err := Open(filepath.Join(testdata, "views.bin"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for _, ti := range f.Tensors {
		want[ti.Name], _ = f.TensorData(ti)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for _, ti := range f.Tensors {
				got, err := f.TensorData(ti)
				if err != nil || !bytes.Equal(got, want[ti.Name]) {
					t.Errorf("%s: %v", ti.Name, err)
				}
			}
		})
	}
	wg.Wait()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Data("base"); !errors.Is(err, os.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	other, _ := Open(filepath.Join(testdata, "plain.bin"))
	defer other.Close()
	if err := other.ReadTensorInfo(f.Tensors[0], make([]byte, f.Tensors[0].NumBytes())); !errors.Is(err, ErrNotFound) {
		t.Errorf("a tensor of another file: %v", err)
	}
	if err := other.ReadTensor("0.bias", make([]byte, 3)); err == nil {
		t.Error("a buffer of the wrong size was accepted")
	}
}

func TestSniff(t *testing.T) {
	for _, tc := range []struct {
		file string
		want Format
	}{
		{"plain.bin", FormatZip}, {"legacy.bin", FormatLegacy}, {"plain.ref.safetensors", FormatUnknown},
	} {
		b, err := os.ReadFile(filepath.Join(testdata, tc.file))
		if err != nil {
			t.Fatal(err)
		}
		if got := Sniff(b[:SniffLen]); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.file, got, tc.want)
		}
	}
	if Sniff(nil) != FormatUnknown || Sniff([]byte("PK")) != FormatUnknown {
		t.Error("short input")
	}
}

func TestSafetensorsName(t *testing.T) {
	for in, want := range map[string]string{
		"adapter_model.bin":                "adapter_model.safetensors",
		"pytorch_model.bin":                "model.safetensors",
		"pytorch_model-00001-of-00002.bin": "model-00001-of-00002.safetensors",
		"pytorch_model.bin.index.json":     "model.safetensors.index.json",
		"checkpoint.pt":                    "checkpoint.safetensors",
		"weights.pth":                      "weights.safetensors",
		"pytorch_model_lora.bin":           "pytorch_model_lora.safetensors",
	} {
		if got := SafetensorsName(in); got != want {
			t.Errorf("SafetensorsName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAllowList(t *testing.T) {
	allowed := AllowedGlobals()
	for _, want := range []string{"collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
		"torch._utils._rebuild_parameter", "torch.FloatStorage", "torch.BFloat16Storage", "torch.bfloat16"} {
		if !slices.Contains(allowed, want) {
			t.Errorf("%s is not allowed", want)
		}
	}
	for _, g := range allowed {
		module, _, _ := strings.Cut(g, ".")
		if module != "torch" && module != "collections" && module != "builtins" && module != "_codecs" {
			t.Errorf("%s: a module outside torch, collections, builtins and _codecs", g)
		}
		if strings.HasPrefix(g, "builtins.") && !slices.Contains([]string{"builtins.set", "builtins.bytearray", "builtins.complex"}, g) {
			t.Errorf("%s is allowed", g)
		}
	}
}

// make.py reproduces the committed files byte for byte.
func TestMakeScriptIsDeterministic(t *testing.T) {
	if testing.Short() {
		t.Skip("runs torch")
	}
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import torch").Run(); err != nil {
		t.Skipf("needs Debian's python3-torch at %s: %v", python, err)
	}
	dir := t.TempDir()
	out, err := exec.Command(python, filepath.Join(testdata, "make.py"), dir).CombinedOutput()
	if err != nil {
		t.Fatalf("make.py: %v\n%s", err, out)
	}
	var n int
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		got, _ := os.ReadFile(p)
		want, err := os.ReadFile(filepath.Join(testdata, rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: differs from the committed file (%v)", rel, err)
		}
		n++
		return nil
	})
	if err != nil || n < 30 {
		t.Fatalf("%d files: %v", n, err)
	}
}

// BenchmarkOpen parses the pickle of a 2000-tensor state dict.
func BenchmarkOpen(b *testing.B) {
	views := make([]view, 2000)
	for i := range views {
		views[i] = view{fmt.Sprintf("model.layers.%d.mlp.up_proj.weight", i), i, []int{1}, []int{1}}
	}
	data := archive(b, stateDict(2000, views...), f32Seq(2000))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := NewReader(bytes.NewReader(data), int64(len(data)), "bench.bin"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadTransposed reads a transposed 4096×4096 float32 view in
// 1 MiB pieces, as the streaming engine copies it.
func BenchmarkReadTransposed(b *testing.B) {
	const n = 4096
	data := archive(b, stateDict(n*n, view{"t", 0, []int{n, n}, []int{1, n}}), f32Seq(n*n))
	f, err := NewReader(bytes.NewReader(data), int64(len(data)), "bench.bin")
	if err != nil {
		b.Fatal(err)
	}
	ti, _ := f.Info("t")
	piece := make([]byte, 1<<20)
	b.SetBytes(ti.NumBytes())
	for b.Loop() {
		for off := int64(0); off < ti.NumBytes(); off += int64(len(piece)) {
			if err := f.ReadTensorAt(ti, piece, off); err != nil {
				b.Fatal(err)
			}
		}
	}
}
