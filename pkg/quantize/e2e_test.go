package quantize

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/quantize/internal/synth"
)

// TestEndToEnd runs the built lora-quantize: the golden outputs, the
// report on the right stream, and exit codes with nothing left behind.
func TestEndToEnd(t *testing.T) {
	bin := testbin.Build(t, "lora-quantize")
	fx := testbin.Fixtures(t)
	tiny := filepath.Join(fx, "peft", "tiny")
	dir := t.TempDir()
	f64 := writeModel(t, filepath.Join(dir, "f64"), dtype.F32, llamaConfig("float32"), []testTensor{
		{name: "model.layers.0.self_attn.q_proj.weight", shape: []int64{8, 8}, vals: randn(1, 64, 1), dt: dtype.F64}})
	corrupt := filepath.Join(dir, "corrupt.safetensors")
	os.WriteFile(corrupt, readFile(t, filepath.Join(tiny, "model.safetensors"))[:3000], 0o644)

	for _, tc := range goldenCases {
		out := filepath.Join(dir, tc.dir)
		args := []string{tiny, "-o", out}
		if !tc.dq {
			args = append(args, "--no-double-quant")
		}
		r := testbin.Run(t, nil, bin, args...)
		if r.Code != 0 || r.Stderr != "" || !strings.Contains(r.Stdout, "14 4-bit weights") {
			t.Fatalf("%v: exit %d\nstdout %s\nstderr %s", args, r.Code, r.Stdout, r.Stderr)
		}
		for _, f := range []string{"model.safetensors", "config.json"} {
			if !sameFile(t, filepath.Join(out, f), filepath.Join(fx, "bnb", tc.dir, f)) {
				t.Errorf("%s: %s differs from the fixture", tc.dir, f)
			}
		}
		// Dequantizing the fixture gives its dequantized weights.
		back := filepath.Join(dir, tc.dir+"-back.safetensors")
		r = testbin.Run(t, nil, bin, "--dequantize", filepath.Join(fx, "bnb", tc.dir), "-o", back, "--json")
		var rep Report
		if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &rep) != nil || rep.Mode != "dequantize" || rep.Version != 1 {
			t.Fatalf("dequantize: exit %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
		}
		got, want := readST(t, back), readST(t, filepath.Join(fx, "bnb", tc.dir, "dequantized.safetensors"))
		for _, n := range want.names() {
			if !bytes.Equal(got.data(t, n), want.data(t, n)) {
				t.Errorf("%s: dequantized %s differs", tc.dir, n)
			}
		}
	}

	// -o - piped into lora-inspect: the data on stdout, the report on stderr.
	r := testbin.Run(t, nil, bin, tiny, "-o", "-", "--json")
	var rep Report
	if r.Code != 0 || json.Unmarshal([]byte(r.Stderr), &rep) != nil || rep.Quantized.Tensors != 14 {
		t.Fatalf("-o -: exit %d, stderr %s", r.Code, r.Stderr)
	}
	inspect := testbin.Build(t, "lora-inspect")
	ir := testbin.Run(t, []byte(r.Stdout), inspect, "--json", "-")
	var info struct {
		Kind        string `json:"kind"`
		QuantType   string `json:"quant_type"`
		DoubleQuant bool   `json:"double_quant"`
		Quantized   int64  `json:"quantized_params"`
		Total       int64  `json:"total_params"`
	}
	if ir.Code != 0 || json.Unmarshal([]byte(ir.Stdout), &info) != nil {
		t.Fatalf("lora-inspect: exit %d\n%s\n%s", ir.Code, ir.Stdout, ir.Stderr)
	}
	if info.Kind != "quantized-model" || info.QuantType != "nf4" || !info.DoubleQuant || info.Quantized != 73728 || info.Total != 106816 {
		t.Errorf("lora-inspect sees %+v", info)
	}
	// The stream quantized again is refused; dequantized it is tiny again.
	r2 := testbin.Run(t, []byte(r.Stdout), bin, "-", "-o", filepath.Join(dir, "again"))
	if r2.Code != 3 || !strings.Contains(r2.Stderr, "already quantized") {
		t.Errorf("requantize: exit %d, %s", r2.Code, r2.Stderr)
	}
	r2 = testbin.Run(t, []byte(r.Stdout), bin, "--dequantize", "-", "-o", filepath.Join(dir, "again"), "-q")
	if r2.Code != 0 || r2.Stdout != "" || r2.Stderr != "" {
		t.Errorf("dequantize stream: exit %d, %q %q", r2.Code, r2.Stdout, r2.Stderr)
	}

	// Refusals: exit code, one line on stderr naming the problem, nothing written.
	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"already quantized", []string{filepath.Join(fx, "bnb", "tiny-nf4")}, 3, "already quantized"},
		{"f64 weight", []string{f64}, 3, "F64"},
		{"corrupt", []string{corrupt}, 3, corrupt},
		{"block size", []string{tiny, "--blocksize", "48"}, 2, "power of two"},
		{"block size too big", []string{tiny, "--blocksize", "8192"}, 2, "8192"},
		{"type", []string{tiny, "--type", "int4"}, 2, "int4"},
		{"dtype without dequantize", []string{tiny, "--dtype", "bf16"}, 2, "--dequantize"},
		{"quantize flags with dequantize", []string{"--dequantize", filepath.Join(fx, "bnb", "tiny-nf4"), "--blocksize", "64"}, 2, "--dequantize"},
		{"dequantize dtype", []string{"--dequantize", filepath.Join(fx, "bnb", "tiny-nf4"), "--dtype", "int8"}, 2, "int8"},
		{"dequantize plain", []string{"--dequantize", tiny}, 3, "no 4-bit weights"},
		{"bad skip", []string{tiny, "--skip", "a(b"}, 2, "--skip"},
		{"adapter", []string{filepath.Join(fx, "peft", "lora")}, 3, "adapter"},
	}
	for _, c := range cases {
		for _, out := range []string{"out", "out.safetensors"} {
			o := filepath.Join(dir, "refused", out)
			os.MkdirAll(filepath.Dir(o), 0o755)
			r := testbin.Run(t, nil, bin, append(c.args, "-o", o)...)
			if r.Code != c.code || !strings.Contains(r.Stderr, c.msg) || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 && c.code == 3 {
				t.Errorf("%s: exit %d (want %d), stderr %q (want %q)", c.name, r.Code, c.code, r.Stderr, c.msg)
			}
			if strings.Contains(r.Stderr, "goroutine") || strings.Contains(r.Stderr, "panic") {
				t.Errorf("%s: stack trace", c.name)
			}
			if entries, _ := os.ReadDir(filepath.Dir(o)); len(entries) != 0 {
				t.Errorf("%s: left behind %v", c.name, entries)
			}
		}
	}
	if r := testbin.Run(t, nil, bin, tiny); r.Code != 2 {
		t.Errorf("missing -o: exit %d", r.Code)
	}
	if r := testbin.Run(t, nil, bin, "--help"); r.Code != 0 || !strings.Contains(r.Stdout, "Exit codes:") {
		t.Errorf("--help: exit %d", r.Code)
	}
}

// TestInterrupt: SIGINT during a run exits 130 and leaves no output, no
// temporary folder and no spool (or, if the run won the race, a complete
// output).
func TestInterrupt(t *testing.T) {
	bin := testbin.Build(t, "lora-quantize")
	dir := t.TempDir()
	c := synth.Config{Hidden: 512, Intermediate: 1536, Layers: 6, Heads: 8, KVHeads: 2, Vocab: 1000, DType: dtype.BF16, Seed: 2}
	model := filepath.Join(dir, "m.safetensors")
	if err := c.Write(model); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "work")
	os.Mkdir(work, 0o755)
	cmd := exec.Command(bin, "-", "-o", filepath.Join(work, "out"))
	f, err := os.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdin = f // a stream: spooled first, so the signal lands mid-run
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Signal mid-run: a little after the run has begun writing (its spool
	// appears). Before that, a loaded machine may not have installed the
	// handler yet.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if entries, _ := os.ReadDir(work); len(entries) > 0 {
			break
		}
	}
	time.Sleep(20 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	err = cmd.Wait()
	entries, _ := os.ReadDir(work)
	if ee, ok := err.(*exec.ExitError); ok {
		if ee.ExitCode() != 130 {
			t.Fatalf("exit %d: %s", ee.ExitCode(), stderr.String())
		}
		if len(entries) != 0 {
			t.Fatalf("interrupted run left %v", entries)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the run finished before the signal")
	if len(entries) != 1 || entries[0].Name() != "out" {
		t.Fatalf("left %v", entries)
	}
}
