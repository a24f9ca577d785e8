package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/internal/randmodel"
	"github.com/lorakit/lorakit/pkg/dtype"
)

// TestMemoryBound holds every streaming tool to a peak resident set of at
// most 3 × the largest tensor + 100 MB, on a generated bf16 model of about
// 280 MB whose largest tensor is 5.8 MB (a tool that keeps its input
// resident, as the mapped input once did, exceeds the bound by far). Peak
// RSS is the high-water mark the tool reports with -v (VmHWM of its
// /proc/self/status: mapped file pages included; rusage would also count the
// test process, which ru_maxrss carries across the fork and exec).
func TestMemoryBound(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ru_maxrss in KiB is Linux's")
	}
	if testing.Short() {
		t.Skip("writes a 280 MB model")
	}
	bins := binDir(t)
	dir := t.TempDir()
	c := randmodel.Config{Hidden: 1024, Intermediate: 2816, Layers: 12, Heads: 16, KVHeads: 4, Vocab: 4096,
		DType: dtype.BF16, Shards: 2, Seed: 3, Std: 0.02}
	model, adapter := filepath.Join(dir, "model"), filepath.Join(dir, "adapter")
	if err := c.Write(model); err != nil {
		t.Fatal(err)
	}
	if err := c.Adapter(adapter, 8, 4); err != nil {
		t.Fatal(err)
	}
	var largest int64
	for _, ts := range c.Tensors() {
		largest = max(largest, num.Elements(ts.Shape)*2)
	}
	bound := 3*largest + 100<<20
	if c.Bytes() < 2*bound {
		t.Fatalf("the model (%d bytes) is too small to tell a bounded tool from one that holds its input", c.Bytes())
	}
	single := c
	single.Shards = 1
	stream := filepath.Join(dir, "model.safetensors") // the same model as one file, fed on stdin
	if err := single.Write(stream); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "pytorch_model.bin") // the same model as torch.save writes it
	writeTorchBin(t, model, bin)
	nf4 := filepath.Join(dir, "nf4")
	cases := []struct {
		name  string
		stdin string
		args  []string
	}{
		{"lora-quantize", "", []string{"lora-quantize", model, "-o", nf4}},
		{"lora-quantize stream", stream, []string{"lora-quantize", "-", "-o", filepath.Join(dir, "nf4-stream")}},
		{"lora-quantize --dequantize", "", []string{"lora-quantize", "--dequantize", nf4, "-o", filepath.Join(dir, "bf16")}},
		{"lora-merge", "", []string{"lora-merge", "--base", model, "--adapter", adapter, "-o", filepath.Join(dir, "merged")}},
		{"lora-merge stream", stream, []string{"lora-merge", "--base", "-", "--adapter", adapter, "-o", filepath.Join(dir, "merged-stream")}},
		{"lora-gguf f16", "", []string{"lora-gguf", model, "-o", filepath.Join(dir, "f16.gguf"), "-t", "f16"}},
		{"lora-gguf q8_0", "", []string{"lora-gguf", model, "-o", filepath.Join(dir, "q8.gguf"), "-t", "q8_0"}},
		{"lora-merge convert .bin", "", []string{"lora-merge", "convert", bin, "-o", filepath.Join(dir, "converted")}},
		{"lora-merge convert", "", []string{"lora-merge", "convert", model, "-o", filepath.Join(dir, "converted-st")}},
		{"lora-merge --base .bin", "", []string{"lora-merge", "--base", bin, "--adapter", adapter, "-o", filepath.Join(dir, "merged-bin")}},
		{"lora-quantize .bin", "", []string{"lora-quantize", bin, "-o", filepath.Join(dir, "nf4-bin")}},
	}
	for _, tc := range cases {
		cmd := exec.Command(filepath.Join(bins, tc.args[0]), append(tc.args[1:], "-v")...)
		if tc.stdin != "" {
			f, err := os.Open(tc.stdin)
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stdin = f
			defer f.Close()
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", tc.name, err, stderr.String())
		}
		peak := reportedPeak(t, stderr.String())
		t.Logf("%-28s peak RSS %s (bound %s; input %s)", tc.name, num.Bytes(peak, 1), num.Bytes(bound, 1), num.Bytes(c.Bytes(), 1))
		if peak > bound {
			t.Errorf("%s: peak RSS %s, above 3 × the largest tensor + 100 MB = %s", tc.name, num.Bytes(peak, 1), num.Bytes(bound, 1))
		}
	}
}

// reportedPeak reads "peak RSS 12.3 MiB" from a tool's -v output.
func reportedPeak(t *testing.T, stderr string) int64 {
	t.Helper()
	_, line, ok := strings.Cut(stderr, "peak RSS ")
	if !ok {
		t.Fatalf("no peak RSS in the -v output:\n%s", stderr)
	}
	var v float64
	var unit string
	if _, err := fmt.Sscanf(line, "%g %s", &v, &unit); err != nil {
		t.Fatalf("peak RSS %q: %v", line, err)
	}
	scale := map[string]float64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[unit]
	if scale == 0 {
		t.Fatalf("peak RSS unit %q", unit)
	}
	return int64(v * scale)
}
