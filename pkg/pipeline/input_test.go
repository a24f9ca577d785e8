package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// testTensors returns n tensors of distinct sizes and contents.
func testTensors(n int) map[string]safetensors.Tensor {
	ts := map[string]safetensors.Tensor{}
	for i := range n {
		data := make([]byte, 4*(100+37*i))
		for k := range data {
			data[k] = byte(i*13 + k*7)
		}
		ts[fmt.Sprintf("t%02d", i)] = safetensors.Tensor{DType: dtype.F32, Shape: []int64{int64(len(data) / 4)}, Data: data}
	}
	return ts
}

func encode(t *testing.T, ts map[string]safetensors.Tensor) []byte {
	var b bytes.Buffer
	if err := safetensors.Encode(&b, map[string]string{"format": "pt"}, ts); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestInputStream reads a stream's tensors backwards, concurrently and in
// pieces: with a tiny memory bound they go to the spill file, with a large
// one they stay in memory; either way the bytes are right, Done frees
// them, and the spill file is not visible in the folder.
func TestInputStream(t *testing.T) {
	ts := testTensors(12)
	raw := encode(t, ts)
	for _, mem := range []int64{1, 1 << 20} {
		dir := t.TempDir()
		src, err := checkpoint.Open("-", bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		in := NewInput(src, InputOptions{TempDir: dir, Memory: mem})
		var wg sync.WaitGroup
		errs := make(chan error, 2*len(ts))
		for i := len(ts) - 1; i >= 0; i-- {
			name := fmt.Sprintf("t%02d", i)
			want := ts[name].Data
			wg.Go(func() {
				half := len(want) / 2
				a, b := make([]byte, half), make([]byte, len(want)-half)
				if err := in.ReadAt(name, b, int64(half)); err != nil {
					errs <- err
					return
				}
				if err := in.ReadAt(name, a, 0); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(append(a, b...), want) {
					errs <- fmt.Errorf("%s: bytes differ", name)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("memory %d: %v", mem, err)
		}
		spilled := in.spill != nil
		if spilled != (mem == 1) {
			t.Errorf("memory %d: spilled %v", mem, spilled)
		}
		if es, _ := os.ReadDir(dir); len(es) != 0 {
			t.Errorf("the spill file is visible: %v", es)
		}
		in.Done("t03")
		in.Done("t11")
		if err := in.ReadAt("t03", make([]byte, 4), 0); err == nil {
			t.Error("a tensor read after Done")
		}
		if mem > 1 && in.mem != int64(len(raw))-int64(len(ts["t03"].Data)+len(ts["t11"].Data))-headerLen(raw) {
			t.Errorf("%d bytes kept in memory after Done", in.mem)
		}
		if _, err := in.Read("nope"); !errors.Is(err, safetensors.ErrNotFound) {
			t.Errorf("missing tensor: %v", err)
		}
		in.Close()
		src.Close()
	}
}

func headerLen(raw []byte) int64 {
	n := int64(raw[0]) | int64(raw[1])<<8 | int64(raw[2])<<16
	return 8 + n
}

// TestInputSkip: a tensor declared done before it is read is skipped, not
// kept.
func TestInputSkip(t *testing.T) {
	ts := testTensors(4)
	src, err := checkpoint.Open("-", bytes.NewReader(encode(t, ts)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	in := NewInput(src, InputOptions{})
	defer in.Close()
	in.Done("t01")
	if got, err := in.Read("t03"); err != nil || !bytes.Equal(got, ts["t03"].Data) {
		t.Fatal(err)
	}
	if _, ok := in.kept["t01"]; ok {
		t.Error("a skipped tensor was kept")
	}
	if _, err := in.Read("t01"); err == nil {
		t.Error("a skipped tensor was read")
	}
}

// TestInputStreamTruncated: a stream that ends early is ErrTruncated.
func TestInputStreamTruncated(t *testing.T) {
	raw := encode(t, testTensors(3))
	src, err := checkpoint.Open("-", bytes.NewReader(raw[:len(raw)-10]))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	in := NewInput(src, InputOptions{})
	defer in.Close()
	if _, err := in.Read("t02"); !errors.Is(err, safetensors.ErrTruncated) {
		t.Fatalf("err %v", err)
	}
}

// TestInputFile reads a file with pread, in any order.
func TestInputFile(t *testing.T) {
	ts := testTensors(5)
	path := filepath.Join(t.TempDir(), "m.safetensors")
	os.WriteFile(path, encode(t, ts), 0o644)
	src, err := checkpoint.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	in := NewInput(src, InputOptions{})
	for _, name := range []string{"t04", "t00", "t02"} {
		got, err := in.Read(name)
		if err != nil || !bytes.Equal(got, ts[name].Data) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if err := in.ReadAt("t01", make([]byte, 8), int64(len(ts["t01"].Data))-4); err == nil {
		t.Error("a read past the tensor's end")
	}
}
