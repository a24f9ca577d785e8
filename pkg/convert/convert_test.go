package convert

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tool"
	"github.com/lorakit/lorakit/pkg/torchbin"
)

const torchData = "../torchbin/testdata"

// saveFile is what safetensors.torch.save_file(state_dict,
// metadata={"format": "pt"}) writes for the tensors of a reference file:
// the reference layout of package safetensors, which its
// TestRoundTripFixturesByteIdentical holds to files written by the real
// save_file (transformers and PEFT fixtures). The torchbin reference files
// themselves are not in that layout: make.py writes them by hand in the
// state dict's order, without metadata.
func saveFile(t *testing.T, ref string) []byte {
	t.Helper()
	f, err := safetensors.Open(ref)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ts := map[string]safetensors.Tensor{}
	for _, ti := range f.Header.Tensors {
		b, err := f.Data(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		ts[ti.Name] = safetensors.Tensor{DType: ti.DType, Shape: ti.Shape, Data: bytes.Clone(b)}
	}
	return encodePT(t, ts)
}

// encodePT is save_file(ts, metadata={"format": "pt"}).
func encodePT(t *testing.T, ts map[string]safetensors.Tensor) []byte {
	var buf bytes.Buffer
	if err := safetensors.Encode(&buf, map[string]string{"format": "pt"}, ts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestByteIdenticalToSaveFile converts every torch.save test file (views,
// shared and big-endian storages, every dtype, nested dicts, shards, an
// adapter) and compares the bytes with save_file's for the same cloned,
// contiguous state dict.
func TestByteIdenticalToSaveFile(t *testing.T) {
	for _, name := range []string{"plain", "dtypes", "views", "nested", "renamed", "proto4", "bigendian", "torch2", "tree", "sharded", "adapter"} {
		t.Run(name, func(t *testing.T) {
			in := filepath.Join(torchData, name+".bin")
			if _, err := os.Stat(in); err != nil {
				in = filepath.Join(torchData, name)
			}
			out := filepath.Join(t.TempDir(), "out.safetensors")
			r, err := Run(t.Context(), in, out, Options{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			want := saveFile(t, filepath.Join(torchData, name+".ref.safetensors"))
			if name == "adapter" || name == "sharded" { // a folder: its files travel in the metadata
				src, err := checkpoint.Open(out, nil)
				if err != nil {
					t.Fatal(err)
				}
				src.Close()
				if name == "adapter" && src.Files["adapter_config.json"] == nil {
					t.Error("adapter_config.json was not carried")
				}
				dir := filepath.Join(t.TempDir(), "dir")
				if _, err := Run(t.Context(), in, dir, Options{}); err != nil {
					t.Fatal(err)
				}
				file := "adapter_model.safetensors"
				if name == "sharded" {
					got = concatShards(t, dir)
					want = saveShards(t, in)
				} else if got, err = os.ReadFile(filepath.Join(dir, file)); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, want) {
				t.Errorf("the output differs from save_file's (%d and %d bytes)", len(got), len(want))
			}
			if r.Format != "pytorch" || r.Tensors == 0 {
				t.Errorf("report %+v", r)
			}
		})
	}
}

// concatShards is the bytes of a converted sharded folder's two shards.
func concatShards(t *testing.T, dir string) []byte {
	var all []byte
	for _, s := range []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"} {
		b, err := os.ReadFile(filepath.Join(dir, s))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	if _, err := os.Stat(filepath.Join(dir, safetensors.IndexFile)); err != nil {
		t.Error(err)
	}
	return all
}

// saveShards is save_file of each .bin shard of a sharded folder.
func saveShards(t *testing.T, dir string) []byte {
	var all []byte
	for _, s := range []string{"pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"} {
		f, err := torchbin.Open(filepath.Join(dir, s))
		if err != nil {
			t.Fatal(err)
		}
		ts := map[string]safetensors.Tensor{}
		for _, ti := range f.Tensors {
			b, err := f.Data(ti.Name)
			if err != nil {
				t.Fatal(err)
			}
			ts[ti.Name] = safetensors.Tensor{DType: ti.DType, Shape: ti.Shape, Data: b}
		}
		f.Close()
		all = append(all, encodePT(t, ts)...)
	}
	return all
}

// TestAdapterStaysPEFT: adapter_model.bin converts to the very bytes PEFT
// wrote as adapter_model.safetensors for the same adapter, beside its
// config, and opens as an adapter.
func TestAdapterStaysPEFT(t *testing.T) {
	out := filepath.Join(t.TempDir(), "a")
	r, err := Run(t.Context(), filepath.Join(torchData, "tiny-lora"), out, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(out, "adapter_model.safetensors"))
	want, _ := os.ReadFile("../../examples/tiny-lora/adapter_model.safetensors")
	if len(want) == 0 || !bytes.Equal(got, want) {
		t.Error("converted adapter_model.bin differs from PEFT's adapter_model.safetensors")
	}
	cfg, _ := os.ReadFile(filepath.Join(out, "adapter_config.json"))
	wantCfg, _ := os.ReadFile("../../examples/tiny-lora/adapter_config.json")
	if !bytes.Equal(cfg, wantCfg) {
		t.Error("adapter_config.json was not carried unchanged")
	}
	a, err := model.OpenAdapter(out, nil, model.AdapterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	if r.Kind != "adapter" || len(r.Carried) != 1 {
		t.Errorf("report %+v", r)
	}
}

// TestRoundTrip: the sharded tiny Llama (offset views, transposed weights)
// converts to the tensors of the safetensors original, as a folder, a
// file and a stream; converting the output again changes nothing.
func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	folder := filepath.Join(dir, "m")
	if _, err := Run(t.Context(), filepath.Join(torchData, "tiny-llama"), folder, Options{}); err != nil {
		t.Fatal(err)
	}
	want := load(t, "../../examples/tiny-llama")
	if got := load(t, folder); !equal(got, want) {
		t.Fatal("converted tensors differ from the original's")
	}
	for _, f := range []string{"config.json", "generation_config.json"} {
		a, _ := os.ReadFile(filepath.Join(folder, f))
		b, _ := os.ReadFile(filepath.Join("../../examples/tiny-llama", f))
		if !bytes.Equal(a, b) {
			t.Errorf("%s not carried", f)
		}
	}
	again := filepath.Join(dir, "again")
	if _, err := Run(t.Context(), folder, again, Options{}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", safetensors.IndexFile} {
		a, _ := os.ReadFile(filepath.Join(folder, s))
		b, _ := os.ReadFile(filepath.Join(again, s))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s changed on a second conversion", s)
		}
	}
	file := filepath.Join(dir, "m.safetensors")
	if _, err := Run(t.Context(), filepath.Join(torchData, "tiny-llama"), file, Options{}); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	if _, err := Run(t.Context(), filepath.Join(torchData, "tiny-llama"), "-", Options{Env: tool.Env{Stdout: &stdout}}); err != nil {
		t.Fatal(err)
	}
	fb, _ := os.ReadFile(file)
	if !bytes.Equal(fb, stdout.Bytes()) {
		t.Error("stdout differs from the file output")
	}
	if got := load(t, file); !equal(got, want) {
		t.Fatal("single-file conversion differs")
	}
	// A stream in (the file just written), a folder out.
	in, _ := os.Open(file)
	defer in.Close()
	if _, err := Run(t.Context(), "-", filepath.Join(dir, "from-stream"), Options{Env: tool.Env{Stdin: in}}); err != nil {
		t.Fatal(err)
	}
	if got := load(t, filepath.Join(dir, "from-stream")); !equal(got, want) {
		t.Fatal("stream conversion differs")
	}
}

func load(t *testing.T, path string) map[string][]byte {
	t.Helper()
	src, err := checkpoint.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	m, err := src.LoadAll()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func equal(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestRefusals: forbidden globals and damaged files are invalid input
// naming the file, and nothing is written.
func TestRefusals(t *testing.T) {
	for _, c := range []struct {
		file string
		err  error
	}{
		{"evil/os_system.bin", torchbin.ErrForbiddenGlobal}, {"evil/reduce_storage.bin", torchbin.ErrForbiddenGlobal},
		{"legacy.bin", torchbin.ErrLegacyFormat}, {"truncated.bin", torchbin.ErrTruncated},
	} {
		out := filepath.Join(t.TempDir(), "out")
		_, err := Run(t.Context(), filepath.Join(torchData, c.file), out, Options{})
		if !errors.Is(err, c.err) || errclass.Of(err) != errclass.Invalid {
			t.Errorf("%s: %v", c.file, err)
		}
		if _, serr := os.Stat(out); serr == nil {
			t.Errorf("%s: output written", c.file)
		}
	}
}
