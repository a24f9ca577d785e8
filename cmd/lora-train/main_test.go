package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/internal/randmodel"
	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/internal/teststream"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// run runs lora-train in-process and fails the test unless it exits 0.
func run(t *testing.T, stdin []byte, args ...string) (stdout, stderr string) {
	t.Helper()
	code, stdout, stderr := runCode(t, stdin, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, stderr)
	}
	return stdout, stderr
}

// runCode runs lora-train in-process and returns its exit code and output.
func runCode(t *testing.T, stdin []byte, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var so, se bytes.Buffer
	code = cli.Run(tool(), args, cli.Streams{Stdin: bytes.NewReader(stdin), Stdout: &so, Stderr: &se})
	return code, so.String(), se.String()
}

// TestStreams: data from the given stdin, the adapter to the given stdout
// (the summary then on stderr); eval and bench JSON start with "schema".
func TestStreams(t *testing.T) {
	data := []byte("{\"input_ids\": [1, 5, 9, 13, 17, 21]}\n{\"input_ids\": [2, 4, 6, 8, 10, 12]}\n")
	out, summary := run(t, data, "--base", "../../examples/tiny-llama", "--data", "-", "-o", "-", "--max-steps", "2",
		"--batch", "2", "--seq", "16", "--device", "cpu", "--threads", "1")
	if _, _, err := safetensors.ReadHeader(strings.NewReader(out), int64(len(out))); err != nil {
		t.Fatalf("stdout is not an adapter: %v", err)
	}
	if !strings.Contains(summary, "trained 2 updates") {
		t.Errorf("summary %q", summary)
	}
	path := filepath.Join(t.TempDir(), "data.jsonl")
	os.WriteFile(path, data, 0o644)
	if out, _ = run(t, teststream.Stream(t, "../../examples/tiny-llama"), "eval", "--base", "-", "--data", path, "--json"); !testbin.StartsWithSchema(out) {
		t.Errorf("eval: %s", out)
	}
	if out, _ = run(t, nil, "bench", "--shape", "../../examples/tiny-llama/config.json", "--seq", "16", "--steps", "1", "--json"); !testbin.StartsWithSchema(out) {
		t.Errorf("bench: %s", out)
	}
}

// TestPlot: lora-train plot writes a PNG or an SVG of the requested size
// with the run's title and prints a summary; a bad log exits 3 naming its
// line, an empty one exits 3 saying so, and nothing is written for either.
func TestPlot(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log.jsonl")
	os.WriteFile(log, []byte(`{"run":{"base":"Qwen2.5-0.5B","model_type":"qwen2","data":"d.jsonl","method":"dora","rank":8,"alpha":16,"targets":["q_proj"],"steps":3}}
{"step":1,"loss":2.25}
{"step":2,"loss":1.5,"eval_loss":1.75}
{"step":3,"loss":1.0}
`), 0o644)
	image := filepath.Join(dir, "loss.png")
	code, out, errs := runCode(t, nil, "plot", log, "-o", image, "--width", "500", "--height", "300", "--smooth", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"Qwen2.5-0.5B (qwen2): DoRA r=8 α=16, 3 steps", "loss 2.2500 ", " 1.0000 (lowest 1.0000 at step 3), eval loss 1.7500 at step 2",
		"plot written to " + image} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout has no %q:\n%s", want, out)
		}
	}
	f, err := os.Open(image)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(f)
	f.Close()
	if err != nil || cfg.Width != 500 || cfg.Height != 300 {
		t.Errorf("PNG %+v %v, want 500x300", cfg, err)
	}
	svg := filepath.Join(dir, "loss.svg")
	if code, _, errs = runCode(t, nil, "plot", log, "-o", svg, "--log-y", "--title", "rot13 <run>", "-q"); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	b, _ := os.ReadFile(svg)
	for _, want := range []string{`<svg width="720pt" height="405pt"`, ">rot13 &lt;run&gt;</text>", ">step</text>", ">loss (log scale)</text>",
		">evaluation loss</text>", ">3</text>", ">2</text>"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the SVG has no %q", want)
		}
	}

	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte("{\"step\":1,\"loss\":2}\n{\"step\":2,\"loss\":\"high\"}\n"), 0o644)
	empty := filepath.Join(dir, "empty.jsonl")
	os.WriteFile(empty, nil, 0o644)
	zero := filepath.Join(dir, "zero.jsonl")
	os.WriteFile(zero, []byte("{\"step\":1,\"loss\":1}\n{\"step\":2,\"loss\":0}\n"), 0o644)
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"plot", bad, "-o", filepath.Join(dir, "bad.png")}, 3, "bad.jsonl: line 2: train: invalid training log: json: cannot unmarshal string"},
		{[]string{"plot", empty, "-o", filepath.Join(dir, "empty.png")}, 3, "empty.jsonl: train: invalid training log: no updates in it"},
		{[]string{"plot", zero, "--log-y"}, 3, "zero.jsonl: plot: step 2 has a loss or an eval loss of 0 or below"},
		{[]string{"plot", filepath.Join(dir, "missing.jsonl"), "-o", filepath.Join(dir, "m.png")}, 1, "no such file"},
		{[]string{"plot", log, "-o", filepath.Join(dir, "loss.jpg")}, 2, "must end in .png or .svg"},
		{[]string{"plot", log, "-o", filepath.Join(dir, "x.png"), "--format", "gif"}, 2, "--format"},
		{[]string{"plot", log, "-o", filepath.Join(dir, "x.png"), "--width", "50"}, 2, "size 50x540"},
	} {
		code, _, errs := runCode(t, nil, c.args...)
		if code != c.code || !strings.Contains(errs, c.msg) {
			t.Errorf("%v: exit %d, want %d; stderr %q (want %q)", c.args, code, c.code, errs, c.msg)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 6 {
		t.Errorf("files in the folder: %v", entries)
	}
}

func TestSparkline(t *testing.T) {
	loss := []float64{6, 5, 3, 2, 1, 0.5, 0.1}
	if sp := []rune(sparkline(loss, 60)); len(sp) != len(loss) || sp[0] != '█' || sp[len(sp)-1] != '▁' {
		t.Errorf("sparkline %q", string(sp))
	}
	long := make([]float64, 1000)
	for i := range long {
		long[i] = float64(1000 - i)
	}
	if sp := []rune(sparkline(long, 40)); len(sp) != 40 || sp[0] != '█' || sp[39] != '▁' {
		t.Errorf("1000 values in 40 columns: %q", string(sp))
	}
	if sp := sparkline([]float64{2, 2}, 10); sp != "▁▁" {
		t.Errorf("flat: %q", sp)
	}
}

// TestBias: --bias lora_only trains the biases of the adapted projections of
// a Qwen2 model (q/k/v have biases) and saves them under PEFT's keys;
// --bias none (the default) saves none, and a bad value is a usage error.
func TestBias(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "qwen2")
	if err := randmodel.Tiny("qwen2", 3).Write(base); err != nil {
		t.Fatal(err)
	}
	data := []byte("{\"input_ids\": [1, 5, 9, 13, 17, 21]}\n{\"input_ids\": [2, 4, 6, 8, 10, 12]}\n")
	keys := func(args ...string) []string {
		out := filepath.Join(dir, "a.safetensors")
		run(t, data, append([]string{"--base", base, "--data", "-", "-o", out, "--max-steps", "1", "--seq", "8",
			"--device", "cpu", "--threads", "1", "-q"}, args...)...)
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		st, _ := f.Stat()
		h, _, err := safetensors.ReadHeader(f, st.Size())
		if err != nil {
			t.Fatal(err)
		}
		var biases []string
		for _, e := range h.Tensors {
			if strings.HasSuffix(e.Name, ".bias") {
				biases = append(biases, e.Name)
			}
		}
		return biases
	}
	if b := keys(); len(b) != 0 {
		t.Errorf("--bias none saved %v", b)
	}
	b := keys("--bias", "lora_only", "--targets", "q_proj,v_proj")
	if len(b) == 0 || !slices.ContainsFunc(b, func(k string) bool {
		return strings.HasSuffix(k, "self_attn.q_proj.base_layer.bias") || strings.HasSuffix(k, "self_attn.q_proj.bias")
	}) {
		t.Errorf("--bias lora_only saved %v, want the q_proj and v_proj biases", b)
	}
	for _, k := range b {
		if strings.Contains(k, "k_proj") {
			t.Errorf("--bias lora_only saved %s, a bias of a projection without LoRA", k)
		}
	}
	if code, _, errs := runCode(t, data, "--base", base, "--data", "-", "-o", filepath.Join(dir, "x"), "--bias", "some"); code != 2 || !strings.Contains(errs, "--bias") {
		t.Errorf("--bias some: exit %d: %s", code, errs)
	}
}
