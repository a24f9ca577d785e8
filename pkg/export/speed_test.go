package export

// Throughput: BenchmarkWrite (in memory) and TestSpeedVsCp, which generates a
// Llama-shaped bf16 model of about 1.5 GB and times lora-gguf against cp of the
// same bytes. The latter runs only with LORAKIT_SPEED=1 (it writes ~6 GB to disk).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
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

	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/gguf"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// genShape describes a generated Llama-shaped model.
type genShape struct {
	layers, hidden, ff, heads, kv, vocab int
}

func (s genShape) config() []byte {
	return fmt.Appendf(nil, `{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": %d,
  "intermediate_size": %d, "num_hidden_layers": %d, "num_attention_heads": %d, "num_key_value_heads": %d,
  "vocab_size": %d, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
  "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
  "original_max_position_embeddings": 8192}, "tie_word_embeddings": false, "torch_dtype": "bfloat16"}`,
		s.hidden, s.ff, s.layers, s.heads, s.kv, s.vocab)
}

func (s genShape) tensors(dt dtype.DType) []safetensors.TensorInfo {
	hd := s.hidden / s.heads
	D, F, V := int64(s.hidden), int64(s.ff), int64(s.vocab)
	var ts []safetensors.TensorInfo
	add := func(name string, shape ...int64) {
		ts = append(ts, safetensors.TensorInfo{Name: name, DType: dt, Shape: shape})
	}
	add("model.embed_tokens.weight", V, D)
	add("model.norm.weight", D)
	add("lm_head.weight", V, D)
	for l := range s.layers {
		p := "model.layers." + strconv.Itoa(l) + "."
		add(p+"input_layernorm.weight", D)
		add(p+"post_attention_layernorm.weight", D)
		add(p+"self_attn.q_proj.weight", int64(s.heads*hd), D)
		add(p+"self_attn.k_proj.weight", int64(s.kv*hd), D)
		add(p+"self_attn.v_proj.weight", int64(s.kv*hd), D)
		add(p+"self_attn.o_proj.weight", D, int64(s.heads*hd))
		add(p+"mlp.gate_proj.weight", F, D)
		add(p+"mlp.up_proj.weight", F, D)
		add(p+"mlp.down_proj.weight", D, F)
	}
	return ts
}

// generate writes config.json and model.safetensors of shape s (values: a cheap
// pseudo-random pattern of small bf16/f16 numbers) into dir, streaming.
func (s genShape) generate(t testing.TB, dir string, dt dtype.DType) int64 {
	t.Helper()
	writeFile(t, filepath.Join(dir, "config.json"), s.config())
	f, err := os.Create(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := safetensors.NewWriter(f, map[string]string{"format": "pt"}, s.tensors(dt))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	x := uint32(12345)
	for i := 0; i < len(buf); i += 2 {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		v := (float32(x>>8)/float32(1<<24) - 0.5) * 0.1
		var h uint16
		if dt == dtype.BF16 {
			h = dtype.F32ToBF16(v)
		} else {
			h = dtype.F32ToF16(v)
		}
		binary.LittleEndian.PutUint16(buf[i:], h)
	}
	var total int64
	for _, ti := range w.Order() {
		n := ti.NumBytes()
		total += n
		for n > 0 {
			k := min(n, int64(len(buf)))
			if _, err := w.Write(buf[:k]); err != nil {
				t.Fatal(err)
			}
			n -= k
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return total
}

// BenchmarkWrite exports a generated 2-layer model held in the page cache to
// io.Discard: MB/s of GGUF output.
func BenchmarkWrite(b *testing.B) {
	dir := b.TempDir()
	s := genShape{layers: 2, hidden: 1024, ff: 2816, heads: 16, kv: 4, vocab: 8192}
	s.generate(b, dir, dtype.BF16)
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
	s := genShape{layers: 14, hidden: 2048, ff: 5632, heads: 16, kv: 4, vocab: 32000}
	start := time.Now()
	size := s.generate(t, in, dtype.BF16)
	t.Logf("generated %s (%d tensors, %.2f GB of bf16 data) in %.1f s", in, len(s.tensors(dtype.BF16)), float64(size)/1e9, time.Since(start).Seconds())
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
