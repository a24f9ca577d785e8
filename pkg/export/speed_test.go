package export

// Throughput: BenchmarkWrite (in memory) and TestSpeedVsCp, which generates a
// Llama-shaped bf16 model of about 1.5 GB and times lora-gguf against cp of the
// same bytes. The latter runs only with LORAKIT_SPEED=1 (it writes ~6 GB to disk).

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lorakit/lorakit/internal/randmodel"
	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/gguf"
)

// generate writes a random model (internal/randmodel) of that shape into dir and
// returns the bytes of its tensor data.
func generate(t testing.TB, dir string, c randmodel.Config) int64 {
	t.Helper()
	c.DType, c.Seed, c.Std = dtype.BF16, 1, 0.02
	if err := c.Write(dir); err != nil {
		t.Fatal(err)
	}
	return c.Bytes()
}

// BenchmarkWrite exports a generated 2-layer model held in the page cache to
// io.Discard: MB/s of GGUF output.
func BenchmarkWrite(b *testing.B) {
	dir := b.TempDir()
	generate(b, dir, randmodel.Config{Layers: 2, Hidden: 1024, Intermediate: 2816, Heads: 16, KVHeads: 4, Vocab: 8192})
	for _, typ := range []gguf.Type{gguf.TypeBF16, gguf.TypeF16, gguf.TypeF32, gguf.TypeQ8_0, gguf.TypeQ4_0} {
		b.Run(typ.String(), func(b *testing.B) {
			var size int64
			for b.Loop() {
				src, err := checkpoint.Open(dir, nil)
				if err != nil {
					b.Fatal(err)
				}
				p, err := PlanModel(src, ModelOptions{Type: typ})
				if err != nil {
					b.Fatal(err)
				}
				st, err := p.Write(context.Background(), io.Discard, WriteOptions{})
				if err != nil {
					b.Fatal(err)
				}
				size = st.Bytes
				src.Close()
			}
			b.SetBytes(size)
		})
	}
}

// TestSpeedVsCp times lora-gguf on a ~1.5 GB bf16 model against cp, side by side.
func TestSpeedVsCp(t *testing.T) {
	if os.Getenv("LORAKIT_SPEED") == "" {
		t.Skip("set LORAKIT_SPEED=1 to run (writes ~6 GB)")
	}
	bin := testbin.Build(t, "lora-gguf")
	dir := os.Getenv("LORAKIT_SPEED_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	in := filepath.Join(dir, "in")
	os.MkdirAll(in, 0o755)
	start := time.Now()
	size := generate(t, in, randmodel.Config{Layers: 14, Hidden: 2048, Intermediate: 5632, Heads: 16, KVHeads: 4, Vocab: 32000})
	t.Logf("generated %s (%.2f GB of bf16 data) in %.1f s", in, float64(size)/1e9, time.Since(start).Seconds())
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("load average before: %s", bytes.TrimSpace(load))

	src := filepath.Join(in, "model.safetensors")
	out := filepath.Join(dir, "out")
	// run times a command and samples its anonymous resident memory (RssAnon: the
	// mmapped input's page-cache pages, counted in VmRSS, are not the tool's memory).
	run := func(name string, args ...string) (time.Duration, int64) {
		os.Remove(out)
		cmd := exec.Command(name, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		st := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var peak int64
		status := filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "status")
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case err := <-done:
				el := time.Since(st)
				if err != nil {
					t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
				}
				return el, peak
			case <-tick.C:
				if b, err := os.ReadFile(status); err == nil {
					for _, line := range bytes.Split(b, []byte("\n")) {
						if v, ok := bytes.CutPrefix(line, []byte("RssAnon:")); ok {
							kb, _ := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(v), []byte("kB")))), 10, 64)
							peak = max(peak, kb<<10)
						}
					}
				}
			}
		}
	}
	cases := []struct {
		name string
		bin  string
		args []string
	}{
		{"cp", "cp", []string{src, out}},
		{"cp + sync", "sh", []string{"-c", `cp "$0" "$1" && sync "$1"`, src, out}},
		{"lora-gguf bf16", bin, []string{in, "-o", out, "-t", "bf16", "-q"}},
		{"lora-gguf f16", bin, []string{in, "-o", out, "-t", "f16", "-q"}},
		{"lora-gguf q8_0", bin, []string{in, "-o", out, "-t", "q8_0", "-q"}},
		// To stdout redirected to a file: no fsync, like cp.
		{"bf16 -o - >file", "sh", []string{"-c", `exec "$0" "$1" -o - -t bf16 -q > "$2"`, bin, in, out}},
		{"f16 -o - >file", "sh", []string{"-c", `exec "$0" "$1" -o - -t f16 -q > "$2"`, bin, in, out}},
	}
	run("cat", src) // warm the page cache
	times := map[string][]time.Duration{}
	rss := map[string]int64{}
	const rounds = 5
	for range rounds {
		for _, c := range cases {
			el, r := run(c.bin, c.args...)
			times[c.name] = append(times[c.name], el)
			rss[c.name] = max(rss[c.name], r)
		}
	}
	os.Remove(out)
	med := func(d []time.Duration) time.Duration {
		d = append([]time.Duration(nil), d...)
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	base := med(times["cp"])
	var rep bytes.Buffer
	bw := bufio.NewWriter(&rep)
	fmt.Fprintf(bw, "\n%-17s %8s %6s %8s %8s  %-32s %s\n", "", "median s", "min s", "× cp", "in MB/s", "runs (s)", "peak RssAnon")
	for _, c := range cases {
		m := med(times[c.name])
		var runs []string
		for _, d := range times[c.name] {
			runs = append(runs, fmt.Sprintf("%.2f", d.Seconds()))
		}
		fmt.Fprintf(bw, "%-17s %8.2f %6.2f %8.2f %8.0f  %-32s %d MB\n", c.name, m.Seconds(), slices.Min(times[c.name]).Seconds(),
			m.Seconds()/base.Seconds(), float64(size)/m.Seconds()/1e6, strings.Join(runs, " "), rss[c.name]>>20)
	}
	bw.Flush()
	load, _ = os.ReadFile("/proc/loadavg")
	t.Logf("%s\nload average after: %s", rep.String(), bytes.TrimSpace(load))
	// The atomic output is fsynced: compare it with cp + sync.
	for _, name := range []string{"lora-gguf bf16", "lora-gguf f16"} {
		if r := med(times[name]).Seconds() / med(times["cp + sync"]).Seconds(); r > 1.5 {
			t.Errorf("%s takes %.2f× cp + sync", name, r)
		}
	}
}
