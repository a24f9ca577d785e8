package checkpoint

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/torchbin"
)

const torchData = "../torchbin/testdata"

// refTensors reads a torchbin X.ref.safetensors file: the tensors, in
// state-dict order, contiguous.
func refTensors(t *testing.T, name string) (*safetensors.File, []safetensors.TensorInfo) {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(torchData, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, f.Header.Tensors
}

// TestOpenBin: every torch.save file of pkg/torchbin/testdata opens as a
// source whose tensors (names, order, dtypes, shapes) and bytes (Data,
// Each, ReadAt in pieces) are those of its reference file.
func TestOpenBin(t *testing.T) {
	cases := []struct{ path, ref string }{
		{"plain.bin", "plain.ref.safetensors"}, {"dtypes.bin", "dtypes.ref.safetensors"},
		{"views.bin", "views.ref.safetensors"}, {"nested.bin", "nested.ref.safetensors"},
		{"renamed.bin", "renamed.ref.safetensors"}, {"proto4.bin", "proto4.ref.safetensors"},
		{"bigendian.bin", "bigendian.ref.safetensors"}, {"torch2.bin", "torch2.ref.safetensors"},
		{"tree.bin", "tree.ref.safetensors"}, {"sharded", "sharded.ref.safetensors"},
		{"adapter", "adapter.ref.safetensors"}, {"adapter/adapter_model.bin", "adapter.ref.safetensors"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			src, err := Open(filepath.Join(torchData, c.path), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			ref, want := refTensors(t, c.ref)
			if src.Format != FormatPyTorch || !src.Random() {
				t.Fatalf("format %v, random %v", src.Format, src.Random())
			}
			if len(src.Tensors) != len(want) {
				t.Fatalf("%d tensors, want %d", len(src.Tensors), len(want))
			}
			var total int64
			for i, ti := range src.Tensors {
				w := want[i]
				if ti.Name != w.Name || ti.DType != w.DType || !slices.Equal(ti.Shape, w.Shape) {
					t.Fatalf("tensor %d: %s %s %v, want %s %s %v", i, ti.Name, ti.DType, ti.Shape, w.Name, w.DType, w.Shape)
				}
				if ti.Offsets[1]-ti.Offsets[0] != ti.NumBytes() {
					t.Fatalf("%s: offsets %v for %d bytes", ti.Name, ti.Offsets, ti.NumBytes())
				}
				total += ti.NumBytes()
				wb, _ := ref.Data(w.Name)
				got, err := src.Data(ti.Name)
				if err != nil || !bytes.Equal(got, wb) {
					t.Fatalf("%s: Data differs (%v)", ti.Name, err)
				}
				// Pieces of every size from 1 byte: views, strides and
				// big-endian storages read in parts.
				for _, piece := range []int{1, 3, 8, 64} {
					buf := make([]byte, 0, len(wb))
					for off := 0; off < len(wb); off += piece {
						p := make([]byte, min(piece, len(wb)-off))
						if err := src.ReadAt(ti.Name, p, int64(off)); err != nil {
							t.Fatal(err)
						}
						buf = append(buf, p...)
					}
					if !bytes.Equal(buf, wb) {
						t.Fatalf("%s: ReadAt in %d-byte pieces differs", ti.Name, piece)
					}
				}
			}
			if src.Bytes != total {
				t.Errorf("Bytes %d, want %d", src.Bytes, total)
			}
			n := 0
			err = src.Each(func(ti safetensors.TensorInfo, data []byte) error {
				wb, _ := ref.Data(want[n].Name)
				if ti.Name != want[n].Name || !bytes.Equal(data, wb) {
					t.Errorf("Each: tensor %d (%s) differs", n, ti.Name)
				}
				n++
				return nil
			})
			if err != nil || n != len(want) {
				t.Fatalf("Each: %v after %d tensors", err, n)
			}
			if err := src.ReadAt(want[0].Name, make([]byte, 1), want[0].Offsets[1]-want[0].Offsets[0]); err == nil {
				t.Error("a read beyond a tensor succeeded")
			}
			if _, _, ok := src.Locate(want[0].Name); ok {
				t.Error("Locate found a .bin tensor's bytes as one range")
			}
		})
	}
}

// TestBinFolders: the shards of a sharded .bin folder are named as a
// conversion names them; an adapter folder carries its config; a folder
// with both safetensors and .bin files reads the safetensors (as
// transformers does); a .bin model folder keeps its small files.
func TestBinFolders(t *testing.T) {
	src, err := Open(filepath.Join(torchData, "sharded"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Kind != KindFolder || len(src.Shards) != 2 || src.Shards[0].Name != "model-00001-of-00002.safetensors" ||
		src.Shards[1].Name != "model-00002-of-00002.safetensors" || src.Metadata != nil {
		t.Fatalf("sharded: kind %v, shards %+v", src.Kind, src.Shards)
	}
	a, err := Open(filepath.Join(torchData, "adapter"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if !a.IsAdapter() || a.Files["adapter_config.json"] == nil || a.Shards[0].Name != "adapter_model.safetensors" {
		t.Fatalf("adapter: %v %v", a.IsAdapter(), a.Shards[0].Name)
	}
	// adapter_model.bin given as a file takes the config beside it.
	af, err := Open(filepath.Join(torchData, "adapter", "adapter_model.bin"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer af.Close()
	if af.Kind != KindFile || af.Files["adapter_config.json"] == nil {
		t.Fatalf("adapter_model.bin as a file: kind %v, files %v", af.Kind, len(af.Files))
	}
	m, err := Open(filepath.Join(torchData, "tiny-llama"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Files["config.json"] == nil || m.Files["generation_config.json"] == nil || len(m.Tensors) != 21 {
		t.Fatalf("tiny-llama: %d files, %d tensors", len(m.Files), len(m.Tensors))
	}

	dir := t.TempDir()
	for _, f := range []string{"adapter_config.json", "adapter_model.bin"} {
		copyFile(t, filepath.Join(torchData, "adapter", f), filepath.Join(dir, f))
	}
	copyFile(t, filepath.Join(fixtures(t), "peft/lora/adapter_model.safetensors"), filepath.Join(dir, "adapter_model.safetensors"))
	both, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer both.Close()
	if both.Format != FormatSafetensors {
		t.Error("a folder with adapter_model.safetensors and adapter_model.bin read the .bin")
	}

	// training_args.bin (a pickled object) is never picked up by a folder.
	empty := t.TempDir()
	copyFile(t, filepath.Join(torchData, "evil", "os_system.bin"), filepath.Join(empty, "training_args.bin"))
	if _, err := Open(empty, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("folder with training_args.bin only: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBinRefused: malicious, legacy, truncated and TorchScript files are
// refused as invalid input (exit 3) with the file and the reason, whether
// given as a file or found in a folder.
func TestBinRefused(t *testing.T) {
	cases := []struct {
		file   string
		err    error
		inText []string
	}{
		{"evil/os_system.bin", torchbin.ErrForbiddenGlobal, []string{"os_system.bin", "os.system"}},
		{"evil/eval.bin", torchbin.ErrForbiddenGlobal, []string{"eval.bin", "builtins.eval"}},
		{"evil/posix_system.bin", torchbin.ErrForbiddenGlobal, []string{"posix_system.bin", "posix.system"}},
		{"legacy.bin", torchbin.ErrLegacyFormat, []string{"legacy.bin", "torch < 1.6"}},
		{"truncated.bin", torchbin.ErrTruncated, []string{"truncated.bin"}},
		{"torchscript.pt", torchbin.ErrUnsupported, []string{"torchscript.pt", "TorchScript"}},
	}
	for _, c := range cases {
		for _, asFolder := range []bool{false, true} {
			path := filepath.Join(torchData, c.file)
			if asFolder {
				dir := t.TempDir()
				path = filepath.Join(dir, "pytorch_model.bin")
				copyFile(t, filepath.Join(torchData, c.file), path)
				path = dir
			}
			_, err := Open(path, nil)
			if !errors.Is(err, c.err) || errclass.Of(err) != errclass.Invalid {
				t.Errorf("%s (folder %v): %v, want %v", c.file, asFolder, err, c.err)
				continue
			}
			for i, s := range c.inText {
				if i == 0 && asFolder {
					s = "pytorch_model.bin"
				}
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%s: %q does not name %q", c.file, err, s)
				}
			}
		}
	}
}

// TestTied: tensors that are the same view of one storage are reported.
func TestTied(t *testing.T) {
	src, err := Open(filepath.Join(torchData, "views.bin"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if got := src.Tied(); len(got) != 1 || !slices.Equal(got[0], []string{"embed.weight", "lm_head.weight"}) {
		t.Errorf("tied %v", got)
	}
	st, err := Open(filepath.Join(fixtures(t), "peft/lora"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.Tied() != nil || st.Format != FormatSafetensors {
		t.Error("a safetensors source reports tied tensors")
	}
}
