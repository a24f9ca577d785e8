package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMakefile runs examples/Makefile in a temporary copy of the examples:
// a full build, then a second make that has nothing to do, then a touched
// data file that retrains and rebuilds what depends on it but does not
// quantize again.
func TestMakefile(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	t.Parallel()
	bins := binDir(t)
	ex := examples(t)
	dir := t.TempDir()
	copyTree(t, filepath.Join(ex, "Makefile"), filepath.Join(dir, "Makefile"))
	copyTree(t, filepath.Join(ex, "tiny-llama"), filepath.Join(dir, "tiny-llama"))
	copyTree(t, filepath.Join(ex, "data", "progressions.jsonl"), filepath.Join(dir, "data", "progressions.jsonl"))
	mk := func(args ...string) result {
		t.Helper()
		return run(t, dir, bins, nil, "make", append([]string{"-C", dir, "BIN=" + bins, "STEPS=5"}, args...)...)
	}

	r := mk()
	if r.code != 0 {
		t.Fatalf("make: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, tool := range tools {
		if !strings.Contains(r.stdout, tool) {
			t.Errorf("first make did not run %s:\n%s", tool, r.stdout)
		}
	}
	report, err := os.ReadFile(filepath.Join(dir, "out", "report.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"quantized-model", "adapter", "model", "gguf", "16,384"} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}

	// Nothing to do the second time: make -q says up to date, and make runs nothing.
	if r := mk("-q"); r.code != 0 {
		t.Errorf("make -q after a build: exit %d, want 0 (up to date)", r.code)
	}
	if r := mk(); r.code != 0 || !strings.Contains(r.stdout, "Nothing to be done") || strings.Contains(r.stdout, "lora-") {
		t.Errorf("second make: exit %d, want nothing done:\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Age every file by an hour (equal times are up to date), then make the
	// data newer than the adapter, as `touch` would, without sleeping.
	old := time.Now().Add(-time.Hour)
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil {
			os.Chtimes(p, old, old)
		}
		return nil
	})
	data := filepath.Join(dir, "data", "progressions.jsonl")
	if err := os.Chtimes(data, old.Add(time.Minute), old.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if r := mk("-q"); r.code != 1 {
		t.Errorf("make -q after touching the data: exit %d, want 1 (out of date)", r.code)
	}
	r = mk()
	if r.code != 0 {
		t.Fatalf("make after touching the data: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, tool := range []string{"lora-train", "lora-merge", "lora-gguf", "lora-inspect"} {
		if !strings.Contains(r.stdout, tool) {
			t.Errorf("make after touching the data did not run %s:\n%s", tool, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "lora-quantize") {
		t.Errorf("make after touching the data quantized again:\n%s", r.stdout)
	}
	st, err := os.Stat(filepath.Join(dir, "out", "nf4", "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if !st.ModTime().Equal(old) {
		t.Errorf("NF4 base rewritten (mtime %v, want %v)", st.ModTime(), old)
	}
	for _, f := range []string{"adapter/adapter_model.safetensors", "merged/model.safetensors", "model.gguf", "report.txt"} {
		st, err := os.Stat(filepath.Join(dir, "out", f))
		if err != nil {
			t.Fatal(err)
		}
		if !st.ModTime().After(old.Add(time.Minute)) {
			t.Errorf("%s not rebuilt after touching the data", f)
		}
	}
	if r := mk("-q"); r.code != 0 {
		t.Errorf("make -q after the rebuild: exit %d, want 0", r.code)
	}
}

// TestMakefileFailure checks that a failing step fails the build, leaves no
// target behind and is retried by the next make.
func TestMakefileFailure(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	t.Parallel()
	bins := binDir(t)
	ex := examples(t)
	dir := t.TempDir()
	copyTree(t, filepath.Join(ex, "Makefile"), filepath.Join(dir, "Makefile"))
	copyTree(t, filepath.Join(ex, "tiny-llama"), filepath.Join(dir, "tiny-llama"))
	data := filepath.Join(dir, "data", "progressions.jsonl")
	if err := os.MkdirAll(filepath.Dir(data), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, []byte("{\"input_ids\": [1, 2,\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, dir, bins, nil, "make", "-C", dir, "BIN="+bins, "STEPS=2")
	if r.code == 0 {
		t.Fatalf("make with bad data succeeded:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "progressions.jsonl") {
		t.Errorf("error does not name the data file:\n%s", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "out", "nf4", "model.safetensors")); err != nil {
		t.Errorf("quantize step before the failure: %v", err)
	}
	if got := entries(t, filepath.Join(dir, "out")); strings.Join(got, " ") != "nf4" {
		t.Errorf("out/ after a failed train holds %v, want only nf4", got)
	}
	copyTree(t, filepath.Join(ex, "data", "progressions.jsonl"), data)
	if r := run(t, dir, bins, nil, "make", "-C", dir, "BIN="+bins, "STEPS=2"); r.code != 0 || strings.Contains(r.stdout, "lora-quantize") {
		t.Errorf("make after fixing the data: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestPipelineScript runs examples/pipeline.sh (streams between merge and
// gguf, merge and inspect) into a temporary folder.
func TestPipelineScript(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	t.Parallel()
	bins := binDir(t)
	out := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command("bash", filepath.Join(examples(t), "pipeline.sh"), out)
	cmd.Env = append(pathEnv(bins), "BIN="+bins, "STEPS=5")
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pipeline.sh: %v\n%s", err, b)
	}
	gguf, err := os.ReadFile(filepath.Join(out, "model.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if len(gguf) < 1000 || string(gguf[:4]) != "GGUF" {
		t.Errorf("model.gguf: %d bytes, magic %q", len(gguf), gguf[:min(4, len(gguf))])
	}
	js, err := os.ReadFile(filepath.Join(out, "merged.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Kind, Source string
		TotalParams  int64 `json:"total_params"`
	}
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatalf("merged.json: %v\n%s", err, js)
	}
	if rep.Kind != "model" || rep.Source != "stream" || rep.TotalParams != 106816 {
		t.Errorf("merged stream report = %+v, want a 106,816-parameter model from a stream", rep)
	}
	if !strings.Contains(string(b), "16,384") || !strings.Contains(string(b), "gguf") {
		t.Errorf("pipeline report:\n%s", b)
	}

	// A broken input fails the script (set -e / pipefail), and nothing is exported.
	out2 := filepath.Join(t.TempDir(), "run")
	cmd = exec.Command("bash", filepath.Join(examples(t), "pipeline.sh"), out2)
	cmd.Env = append(pathEnv(bins), "BIN="+bins, "STEPS=2", "DATA="+filepath.Join(out2, "missing.jsonl"))
	if b, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("pipeline.sh with missing data succeeded:\n%s", b)
	}
	if _, err := os.Stat(filepath.Join(out2, "model.gguf")); err == nil {
		t.Error("pipeline.sh with missing data exported a model")
	}
}
