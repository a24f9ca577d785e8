package torchbin

import (
	"archive/zip"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sentinels are the errors every failure must wrap (the tools map them to
// exit code 3).
var sentinels = []error{ErrNotZip, ErrLegacyFormat, ErrArchive, ErrTruncated, ErrForbiddenGlobal,
	ErrPickle, ErrStorage, ErrUnsupported, ErrStateDict}

func classified(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// seedFiles lists the committed checkpoints (and the refused ones).
func seedFiles(t testing.TB) []string {
	var out []string
	err := filepath.WalkDir(testdata, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".bin") || strings.HasSuffix(p, ".pt")) {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readAll reads every tensor of f and checks the sizes it hands out are
// bounded by the archive's size.
func readAll(t *testing.T, f *File) {
	for _, ti := range f.Tensors {
		if n := ti.NumBytes(); n > MaxExpansion*f.Size {
			t.Fatalf("%s: %d bytes from a %d-byte file", ti.Name, n, f.Size)
		}
		if _, err := f.TensorData(ti); err != nil && !classified(err) {
			t.Fatalf("%s: unclassified error %v", ti.Name, err)
		}
	}
}

// FuzzOpen feeds whole files to the zip reader and the unpickler.
func FuzzOpen(f *testing.F) {
	for _, p := range seedFiles(f) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(archive(f, stateDict(12, view{"t", 1, []int{3, 3}, []int{1, 4}}), f32Seq(12)))
	f.Add(makeZip(f, "archive", zipEntry{name: "data.pkl", data: stateDict(4, view{"w", 0, []int{4}, []int{1}}), deflate: true},
		zipEntry{name: "data/0", data: f32Seq(4), deflate: true}))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := NewReader(bytes.NewReader(b), int64(len(b)), "fuzz.bin")
		if err != nil {
			if !classified(err) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		readAll(t, file)
	})
}

// FuzzUnpickle runs arbitrary pickles against an archive holding four
// 64-byte storages: whatever the pickle builds must be readable or refused.
func FuzzUnpickle(f *testing.F) {
	for _, p := range seedFiles(f) {
		zr, err := zip.OpenReader(p)
		if err != nil {
			continue // the legacy and truncated files
		}
		for _, e := range zr.File {
			if strings.HasSuffix(e.Name, "/data.pkl") {
				rc, _ := e.Open()
				b, _ := io.ReadAll(rc)
				rc.Close()
				f.Add(b)
			}
		}
		zr.Close()
	}
	f.Add(stateDict(16, view{"a", 3, []int{2, 2}, []int{1, 5}}, view{"b", 0, []int{4, 4}, []int{0, 1}}))
	f.Add(newPkl().global("torch._utils", "_rebuild_tensor_v3").op(opMark).storage("UntypedStorage", "1", 64).
		int(0).ints(8).ints(1).op(opNewFalse, opNone).global("torch", "float16").op(opTuple, opReduce).bytes())
	storages := make([]zipEntry, 0, 5)
	for _, key := range []string{"0", "1", "2", "3"} {
		storages = append(storages, zipEntry{name: "data/" + key, data: f32Seq(16)})
	}
	f.Fuzz(func(t *testing.T, pickle []byte) {
		b := makeZip(t, "archive", append([]zipEntry{{name: "data.pkl", data: pickle}}, storages...)...)
		file, err := NewReader(bytes.NewReader(b), int64(len(b)), "fuzz.bin")
		if err != nil {
			if !classified(err) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		for _, ti := range file.Tensors {
			if _, err := file.TensorData(ti); err != nil {
				t.Fatalf("%s: a tensor the pickle validated cannot be read: %v", ti.Name, err)
			}
		}
	})
}
