package e2e

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/gguf"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// TestPyTorchInputs runs every tool on the examples' tiny Llama and LoRA
// saved by torch.save (pkg/torchbin/testdata: the model sharded in two
// with offset views and transposed weights, adapter_model.bin) and on the
// safetensors originals: the outputs are the same bytes (a GGUF model the
// same metadata and tensors; its tensor order follows the input's).
func TestPyTorchInputs(t *testing.T) {
	t.Parallel()
	bins := binDir(t)
	ex := examples(t)
	td := filepath.Join(testbin.Root(t), "pkg", "torchbin", "testdata")
	work := t.TempDir()
	model, lora := filepath.Join(td, "tiny-llama"), filepath.Join(td, "tiny-lora")
	stModel, stLora := filepath.Join(ex, "tiny-llama"), filepath.Join(ex, "tiny-lora")
	data := filepath.Join(ex, "data", "progressions.jsonl")
	out := func(name string) string { return filepath.Join(work, name) }
	pairs := []struct {
		name     string
		bin, st  []string
		outs     [2]string // files the two runs write, compared byte for byte
		sameText bool      // stdout compared too
	}{
		{"merge .bin base and adapter", []string{"lora-merge", "--base", model, "--adapter", lora, "-o", out("m1.safetensors")},
			[]string{"lora-merge", "--base", stModel, "--adapter", stLora, "-o", out("m2.safetensors")}, [2]string{"m1.safetensors", "m2.safetensors"}, false},
		{"merge a .bin adapter", []string{"lora-merge", "--base", stModel, "--adapter", lora, "-o", out("ma.safetensors")},
			[]string{"lora-merge", "--base", stModel, "--adapter", stLora, "-o", out("mb.safetensors")}, [2]string{"ma.safetensors", "mb.safetensors"}, false},
		{"quantize", []string{"lora-quantize", model, "-o", out("q1.safetensors")},
			[]string{"lora-quantize", stModel, "-o", out("q2.safetensors")}, [2]string{"q1.safetensors", "q2.safetensors"}, false},
		{"gguf adapter", []string{"lora-gguf", lora, "--base", model, "-o", out("a1.gguf")},
			[]string{"lora-gguf", stLora, "--base", stModel, "-o", out("a2.gguf")}, [2]string{"a1.gguf", "a2.gguf"}, false},
		{"train", []string{"lora-train", "--base", model, "--data", data, "-o", out("t1"), "--max-steps", "2", "-q"},
			[]string{"lora-train", "--base", stModel, "--data", data, "-o", out("t2"), "--max-steps", "2", "-q"},
			[2]string{"t1/adapter_model.safetensors", "t2/adapter_model.safetensors"}, false},
		{"train --init-from", []string{"lora-train", "--base", model, "--data", data, "-o", out("i1"), "--max-steps", "2", "-q", "--init-from", lora},
			[]string{"lora-train", "--base", stModel, "--data", data, "-o", out("i2"), "--max-steps", "2", "-q", "--init-from", stLora},
			[2]string{"i1/adapter_model.safetensors", "i2/adapter_model.safetensors"}, false},
		{"eval", []string{"lora-train", "eval", "--base", model, "--adapter", lora, "--data", data},
			[]string{"lora-train", "eval", "--base", stModel, "--adapter", stLora, "--data", data}, [2]string{}, true},
		{"combine", []string{"lora-merge", "combine", "--adapter", lora + ":0.7", "--adapter", stLora + ":-0.2", "--method", "ties_svd", "--density", "0.6", "-o", out("c1.safetensors"), "-q"},
			[]string{"lora-merge", "combine", "--adapter", stLora + ":0.7", "--adapter", stLora + ":-0.2", "--method", "ties_svd", "--density", "0.6", "-o", out("c2.safetensors"), "-q"},
			[2]string{"c1.safetensors", "c2.safetensors"}, false},
		{"resize", []string{"lora-merge", "resize", "--adapter", lora, "--energy", "0.8", "-o", out("r1.safetensors"), "-q"},
			[]string{"lora-merge", "resize", "--adapter", stLora, "--energy", "0.8", "-o", out("r2.safetensors"), "-q"},
			[2]string{"r1.safetensors", "r2.safetensors"}, false},
		{"convert an adapter", []string{"lora-merge", "convert", lora, "-o", out("conv"), "-q"}, nil,
			[2]string{"conv/adapter_model.safetensors", filepath.Join(stLora, "adapter_model.safetensors")}, false},
	}
	for _, p := range pairs {
		r1 := run(t, work, bins, nil, p.bin[0], p.bin[1:]...)
		if r1.code != 0 {
			t.Errorf("%s: %v: exit %d\n%s", p.name, p.bin, r1.code, r1.stderr)
			continue
		}
		var r2 result
		if p.st != nil {
			if r2 = run(t, work, bins, nil, p.st[0], p.st[1:]...); r2.code != 0 {
				t.Errorf("%s: %v: exit %d\n%s", p.name, p.st, r2.code, r2.stderr)
				continue
			}
		}
		if p.sameText && (r1.stdout != r2.stdout || r1.stdout == "") {
			t.Errorf("%s: the outputs differ:\n%s\n%s", p.name, r1.stdout, r2.stdout)
		}
		if p.outs[0] == "" {
			continue
		}
		abs := func(p string) string {
			if filepath.IsAbs(p) {
				return p
			}
			return filepath.Join(work, p)
		}
		a, err1 := os.ReadFile(abs(p.outs[0]))
		b, err2 := os.ReadFile(abs(p.outs[1]))
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: %s and %s differ (%v, %v)", p.name, p.outs[0], p.outs[1], err1, err2)
		}
	}

	// A GGUF model lists its tensors in the input's order; the metadata and
	// every tensor are the same.
	for _, args := range [][]string{{model, "-o", out("g1.gguf")}, {stModel, "-o", out("g2.gguf")}} {
		if r := run(t, work, bins, nil, "lora-gguf", append(args, "-q")...); r.code != 0 {
			t.Fatalf("lora-gguf %v: exit %d\n%s", args, r.code, r.stderr)
		}
	}
	g1, g2 := openGGUF(t, out("g1.gguf")), openGGUF(t, out("g2.gguf"))
	if !reflect.DeepEqual(g1.Metadata, g2.Metadata) || len(g1.Tensors) != len(g2.Tensors) {
		t.Error("GGUF models from .bin and safetensors differ in metadata or tensor count")
	}
	for _, ti := range g2.Tensors {
		a, err1 := g1.ReadTensor(ti.Name)
		b, err2 := g2.ReadTensor(ti.Name)
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("GGUF tensor %s differs (%v, %v)", ti.Name, err1, err2)
		}
	}

	r := run(t, work, bins, nil, "lora-inspect", "--json", model, lora)
	if r.code != 0 || !strings.Contains(r.stdout, `"total_params": 106816`) || !strings.Contains(r.stdout, `"trainable_params": 16384`) {
		t.Errorf("lora-inspect: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func openGGUF(t *testing.T, path string) *gguf.File {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestPyTorchRefusals: every tool refuses a malicious, legacy or truncated
// .bin wherever it takes an input, with exit 3 and a message naming the
// file and the forbidden global, and writes nothing.
func TestPyTorchRefusals(t *testing.T) {
	t.Parallel()
	bins := binDir(t)
	ex := examples(t)
	td := filepath.Join(testbin.Root(t), "pkg", "torchbin", "testdata")
	work := t.TempDir()
	model, lora := filepath.Join(ex, "tiny-llama"), filepath.Join(ex, "tiny-lora")
	data := filepath.Join(ex, "data", "progressions.jsonl")
	bad := []struct{ file, says string }{
		{"evil/os_system.bin", "os.system"}, {"evil/eval.bin", "builtins.eval"}, {"evil/newobj_build.bin", "forbidden global"},
		{"evil/reduce_storage.bin", "forbidden global"}, {"legacy.bin", "legacy"}, {"truncated.bin", "truncated"},
	}
	for _, b := range bad {
		// As a model folder's pytorch_model.bin and an adapter folder's adapter_model.bin.
		file := filepath.Join(td, b.file)
		mdir, adir := filepath.Join(work, "m-"+filepath.Base(b.file)), filepath.Join(work, "a-"+filepath.Base(b.file))
		copyTree(t, filepath.Join(model, "config.json"), filepath.Join(mdir, "config.json"))
		copyTree(t, file, filepath.Join(mdir, "pytorch_model.bin"))
		copyTree(t, filepath.Join(lora, "adapter_config.json"), filepath.Join(adir, "adapter_config.json"))
		copyTree(t, file, filepath.Join(adir, "adapter_model.bin"))
		o := filepath.Join(work, "out")
		for _, c := range []struct {
			args  []string
			names string
		}{
			{[]string{"lora-inspect", file}, file},
			{[]string{"lora-inspect", adir}, filepath.Join(adir, "adapter_model.bin")},
			{[]string{"lora-merge", "--base", mdir, "--adapter", lora, "-o", o}, filepath.Join(mdir, "pytorch_model.bin")},
			{[]string{"lora-merge", "--base", model, "--adapter", adir, "-o", o}, filepath.Join(adir, "adapter_model.bin")},
			{[]string{"lora-merge", "convert", file, "-o", o}, file},
			{[]string{"lora-merge", "combine", "--adapter", lora, "--adapter", adir, "--method", "cat", "-o", o}, filepath.Join(adir, "adapter_model.bin")},
			{[]string{"lora-merge", "resize", "--adapter", adir, "--rank", "2", "-o", o}, filepath.Join(adir, "adapter_model.bin")},
			{[]string{"lora-inspect", "diff", lora, adir}, filepath.Join(adir, "adapter_model.bin")},
			{[]string{"lora-quantize", mdir, "-o", o}, filepath.Join(mdir, "pytorch_model.bin")},
			{[]string{"lora-gguf", file, "-o", o + ".gguf"}, file},
			{[]string{"lora-gguf", adir, "--base", model, "-o", o + ".gguf"}, filepath.Join(adir, "adapter_model.bin")},
			{[]string{"lora-train", "--base", mdir, "--data", data, "-o", o, "--max-steps", "1"}, filepath.Join(mdir, "pytorch_model.bin")},
			{[]string{"lora-train", "--base", model, "--data", data, "-o", o, "--max-steps", "1", "--init-from", adir}, filepath.Join(adir, "adapter_model.bin")},
		} {
			r := run(t, work, bins, nil, c.args[0], c.args[1:]...)
			if r.code != 3 || !strings.Contains(r.stderr, c.names) || !strings.Contains(r.stderr, b.says) {
				t.Errorf("%v: exit %d, want 3 naming %s and %q:\n%s", c.args, r.code, c.names, b.says, r.stderr)
			}
			for _, p := range []string{o, o + ".gguf"} {
				if fileExists(p) {
					t.Errorf("%v: left %s behind", c.args, p)
					os.RemoveAll(p)
				}
			}
		}
	}
}

// writeTorchBin writes the tensors of the checkpoint at src as one
// torch.save zip archive (protocol-2 pickle of a dict of
// _rebuild_tensor_v2 calls, one stored entry per storage), as torch does:
// large .bin inputs for the memory test.
func writeTorchBin(t *testing.T, src, dst string) {
	t.Helper()
	in, err := checkpoint.Open(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	storage := map[dtype.DType]string{dtype.F32: "FloatStorage", dtype.BF16: "BFloat16Storage", dtype.F16: "HalfStorage", dtype.I64: "LongStorage"}
	var p bytes.Buffer
	str := func(s string) {
		p.WriteByte('X')
		binary.Write(&p, binary.LittleEndian, uint32(len(s)))
		p.WriteString(s)
	}
	long := func(n int64) { p.Write([]byte{0x8a, 8}); binary.Write(&p, binary.LittleEndian, n) }
	tuple := func(xs []int64) {
		p.WriteByte('(')
		for _, x := range xs {
			long(x)
		}
		p.WriteByte('t')
	}
	p.Write([]byte{0x80, 2, '}', '('})
	for i, ti := range in.Tensors {
		typ, ok := storage[ti.DType]
		if !ok {
			t.Fatalf("%s: no storage type for %s", ti.Name, ti.DType)
		}
		stride := make([]int64, len(ti.Shape))
		s := int64(1)
		for d := len(ti.Shape) - 1; d >= 0; d-- {
			stride[d], s = s, s*ti.Shape[d]
		}
		str(ti.Name)
		p.WriteString("ctorch._utils\n_rebuild_tensor_v2\n((")
		str("storage")
		p.WriteString("ctorch\n" + typ + "\n")
		str(strconv.Itoa(i))
		str("cpu")
		long(ti.NumElements())
		p.WriteString("tQ")
		long(0)
		tuple(ti.Shape)
		tuple(stride)
		p.WriteString("\x89ccollections\nOrderedDict\n)RtR")
	}
	p.WriteString("u.")
	f, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	zw := zip.NewWriter(bw)
	entry := func(name string, b []byte) {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: "archive/" + name, Method: zip.Store})
		if err == nil {
			_, err = w.Write(b)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	entry("data.pkl", p.Bytes())
	i := 0
	err = in.Each(func(_ safetensors.TensorInfo, data []byte) error {
		entry("data/"+strconv.Itoa(i), data)
		i++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	entry("version", []byte("3\n"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
