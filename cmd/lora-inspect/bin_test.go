package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/lorakit/lorakit/internal/cli"
)

// sparseWriter writes to a file, seeking over the bytes written while
// skipping is set: the file gets holes, not data.
type sparseWriter struct {
	f        *os.File
	skipping bool
}

func (w *sparseWriter) Write(p []byte) (int, error) {
	if w.skipping {
		_, err := w.f.Seek(int64(len(p)), io.SeekCurrent)
		return len(p), err
	}
	return w.f.Write(p)
}

// zeros reads as endless zero bytes without touching the buffer (the
// copy's buffer starts zeroed and the writer skips it anyway).
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { return len(p), nil }

// bigPickle is the pickle of {"model.embed_tokens.weight": a side×side
// float32 tensor of storage "0"}, written opcode by opcode (protocol 2).
func bigPickle(side int64) []byte {
	var b bytes.Buffer
	str := func(s string) {
		b.WriteByte('X')
		binary.Write(&b, binary.LittleEndian, uint32(len(s)))
		b.WriteString(s)
	}
	long := func(n int64) { // LONG1: 8 bytes, little-endian two's complement
		b.Write([]byte{0x8a, 8})
		b.Write(binary.LittleEndian.AppendUint64(nil, uint64(n)))
	}
	b.Write([]byte{0x80, 2, '}', '('})
	str("model.embed_tokens.weight")
	b.WriteString("ctorch._utils\n_rebuild_tensor_v2\n(")
	b.WriteByte('(')
	str("storage")
	b.WriteString("ctorch\nFloatStorage\n")
	str("0")
	str("cpu")
	long(side * side)
	b.Write([]byte{'t', 'Q'})
	long(0)
	b.WriteByte('(')
	long(side)
	long(side)
	b.WriteString("t(")
	long(side)
	long(1)
	b.WriteString("t\x89ccollections\nOrderedDict\n)RtRu.")
	return b.Bytes()
}

// readBytes is the bytes this process has read with read and pread so far.
func readBytes(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io to count reads: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "rchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no rchar in /proc/self/io")
	return 0
}

// TestInspectLargeBinReadsHeaderOnly inspects a 16 GiB PyTorch checkpoint
// (a sparse file: one 65536×65536 float32 tensor) and counts the bytes the
// process reads: the zip directory and the pickle, not the data.
func TestInspectLargeBinReadsHeaderOnly(t *testing.T) {
	const side = 65536
	path := filepath.Join(t.TempDir(), "pytorch_model.bin")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	sw := &sparseWriter{f: f}
	zw := zip.NewWriter(sw)
	pkl := bigPickle(side)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "archive/data.pkl", Method: zip.Store})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(pkl)
	const size = 4 * side * side
	w, err = zw.CreateRaw(&zip.FileHeader{Name: "archive/data/0", Method: zip.Store, CompressedSize64: size, UncompressedSize64: size})
	if err != nil {
		t.Fatal(err)
	}
	if err := zw.Flush(); err != nil { // the local header, before the hole
		t.Fatal(err)
	}
	sw.skipping = true
	if _, err := io.CopyBuffer(w, io.LimitReader(zeros{}, size), make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Flush(); err != nil {
		t.Fatal(err)
	}
	sw.skipping = false
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || sys.Blocks*512 > 1<<30 {
		t.Skip("the file system does not keep sparse files sparse")
	}

	before := readBytes(t)
	var so, se bytes.Buffer
	code := cli.Run(tool(), []string{"--tensors", path}, cli.Streams{Stdin: bytes.NewReader(nil), Stdout: &so, Stderr: &se})
	read := readBytes(t) - before
	if code != 0 {
		t.Fatalf("exit %d: %s", code, se.String())
	}
	if !strings.Contains(so.String(), "model.embed_tokens.weight") || !strings.Contains(so.String(), "[65536 65536]") ||
		!strings.Contains(so.String(), "4,294,967,296") {
		t.Errorf("report:\n%s", so.String())
	}
	t.Logf("%d-byte file: %d bytes read", st.Size(), read)
	if read > 1<<20 {
		t.Errorf("inspecting a %d-byte .bin read %d bytes", st.Size(), read)
	}
}
