package quantize

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/lorakit/lorakit/internal/randmodel"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/tool"
)

// TestDeterministic: the same input gives byte-identical outputs and
// reports whatever the number of workers, GOMAXPROCS and the memory budget
// (which changes how far the workers run ahead), for quantize and
// dequantize.
func TestDeterministic(t *testing.T) {
	dir := t.TempDir()
	c := randmodel.Config{Hidden: 320, Intermediate: 700, Layers: 2, Heads: 5, KVHeads: 1, Vocab: 100, DType: dtype.BF16, Shards: 2, Seed: 11, ZeroRows: 3, Std: 0.02}
	in := filepath.Join(dir, "in")
	if err := c.Write(in); err != nil {
		t.Fatal(err)
	}
	runs := []struct {
		procs, workers int
		budget         int64
	}{{1, 1, 0}, {2, 2, 0}, {4, 7, 1}, {2, 3, 100_000}, {1, 16, 1 << 30}}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	var first map[string][]byte
	var firstRep, firstDeq []byte
	for i, r := range runs {
		runtime.GOMAXPROCS(r.procs)
		opts := DefaultOptions()
		opts.Threads, opts.Budget = r.workers, r.budget
		out := filepath.Join(dir, "q", string(rune('a'+i)))
		os.MkdirAll(filepath.Dir(out), 0o755)
		rep, err := Quantize(context.Background(), open(t, in), out, opts)
		if err != nil {
			t.Fatal(err)
		}
		back := filepath.Join(dir, "d", string(rune('a'+i)))
		os.MkdirAll(filepath.Dir(back), 0o755)
		drep, err := Dequantize(context.Background(), open(t, out), back, Options{Env: tool.Env{Threads: r.workers}, Budget: r.budget, DType: dtype.F16})
		if err != nil {
			t.Fatal(err)
		}
		files := map[string][]byte{} // "q/config.json", "d/model-00001-of-00002.safetensors", ...
		for _, d := range []string{out, back} {
			entries, _ := os.ReadDir(d)
			for _, e := range entries {
				files[filepath.Base(filepath.Dir(d))+"/"+e.Name()] = readFile(t, filepath.Join(d, e.Name()))
			}
		}
		rep.Output, drep.Input, drep.Output = "", "", ""
		rj, _ := json.Marshal(rep)
		dj, _ := json.Marshal(drep)
		if first == nil {
			first, firstRep, firstDeq = files, rj, dj
			if len(first) != 8 { // config, index and 2 shards, twice
				t.Fatalf("%d output files", len(first))
			}
			continue
		}
		if len(files) != len(first) {
			t.Errorf("run %+v: %d files", r, len(files))
		}
		for k, v := range files {
			if !bytes.Equal(first[k], v) {
				t.Errorf("run %+v: %s differs from the first run", r, k)
			}
		}
		if !bytes.Equal(rj, firstRep) || !bytes.Equal(dj, firstDeq) {
			t.Errorf("run %+v: report differs:\n%s\n%s", r, rj, firstRep)
		}
	}
}

// TestStreamEqualsFile: a streamed input (quantized while it is read, then
// written from the spool) gives the same output and report as the file.
func TestStreamEqualsFile(t *testing.T) {
	dir := t.TempDir()
	c := randmodel.Config{Hidden: 256, Intermediate: 640, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 300, DType: dtype.F16, Seed: 4, ZeroRows: 1, Std: 0.02}
	one := filepath.Join(dir, "m.safetensors")
	if err := c.Write(one); err != nil {
		t.Fatal(err)
	}
	for _, dq := range []bool{true, false} {
		opts := DefaultOptions()
		opts.DoubleQuant, opts.Type = dq, nf4.FP4
		a, ra := quantizeDir(t, one, opts)
		src, err := checkpoint.Open("-", bytes.NewReader(readFile(t, one)))
		if err != nil {
			t.Fatal(err)
		}
		b := filepath.Join(dir, "s")
		rb, err := Quantize(context.Background(), src, b, opts)
		src.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"model.safetensors", "config.json"} {
			if !sameFile(t, filepath.Join(a, f), filepath.Join(b, f)) {
				t.Errorf("dq=%v: %s differs between file and stream input", dq, f)
			}
		}
		ra.Input, rb.Input, ra.Output, rb.Output = "", "", "", ""
		ja, _ := json.Marshal(ra)
		jb, _ := json.Marshal(rb)
		if !bytes.Equal(ja, jb) {
			t.Errorf("dq=%v: reports differ", dq)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 2 {
			t.Errorf("left behind: %v", entries)
		}
		os.RemoveAll(b)
	}
}
