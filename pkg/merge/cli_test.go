package merge

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

// buildBinaries compiles lora-merge and lora-inspect into a temporary folder.
func buildBinaries(t *testing.T) (merge, inspect string) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not available")
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	dir := t.TempDir()
	for _, name := range []string{"lora-merge", "lora-inspect"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), "./cmd/"+name)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", name, err, out)
		}
	}
	return filepath.Join(dir, "lora-merge"), filepath.Join(dir, "lora-inspect")
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestCLI runs `lora-merge ... -o - | lora-inspect --json -` through a pipe
// and checks the exit codes and one-line errors of bad invocations.
func TestCLI(t *testing.T) {
	fx := fixtures(t)
	merge, inspect := buildBinaries(t)
	tiny, lora := filepath.Join(fx, "peft/tiny"), filepath.Join(fx, "peft/lora")

	// A real pipe. lora-inspect reads only the header of a model and exits;
	// lora-merge may then die of SIGPIPE, as any producer in a Unix pipe.
	m := exec.Command(merge, "--base", tiny, "--adapter", lora, "-o", "-")
	i := exec.Command(inspect, "--json", "-")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var mErr, iOut, iErr bytes.Buffer
	m.Stdout, i.Stdin = pw, pr
	m.Stderr, i.Stdout, i.Stderr = &mErr, &iOut, &iErr
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := i.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	pw.Close()
	iErrRun := i.Wait()
	mErrRun := m.Wait()
	if iErrRun != nil {
		t.Fatalf("lora-inspect: %v\n%s", iErrRun, iErr.String())
	}
	if mErrRun != nil && !strings.Contains(mErrRun.Error(), "broken pipe") {
		t.Fatalf("lora-merge: %v\n%s", mErrRun, mErr.String())
	}
	var rep struct {
		Kind, Source, Architecture string
		TotalParams                int64 `json:"total_params"`
	}
	if err := json.Unmarshal(iOut.Bytes(), &rep); err != nil {
		t.Fatalf("%v\n%s", err, iOut.String())
	}
	if rep.Kind != "model" || rep.Source != "stream" || rep.TotalParams != 106816 || rep.Architecture != "LlamaForCausalLM" {
		t.Errorf("lora-inspect of the merged stream: %+v", rep)
	}

	// The whole stream: self-describing, the same tensors as PEFT's merge;
	// the report went to stderr.
	full := exec.Command(merge, "--base", tiny, "--adapter", lora, "-o", "-")
	var fo, fe bytes.Buffer
	full.Stdout, full.Stderr = &fo, &fe
	if err := full.Run(); err != nil {
		t.Fatalf("%v\n%s", err, fe.String())
	}
	if !strings.Contains(fe.String(), "merged 1 adapter(s)") {
		t.Errorf("report not on stderr: %q", fe.String())
	}
	src, err := checkpoint.Open("-", bytes.NewReader(fo.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, ok := src.Files["config.json"]; !ok {
		t.Error("the stream does not carry config.json")
	}
	want, _ := tensorsOf(t, filepath.Join(fx, "peft/lora-merged"))
	n := 0
	if err := src.Each(func(ti safetensors.TensorInfo, data []byte) error {
		v := make([]float32, ti.NumElements())
		dtype.ToF32(v, data, ti.DType)
		if !equalF32(v, want[ti.Name]) {
			t.Errorf("stream tensor %s differs from PEFT's merge", ti.Name)
		}
		n++
		return nil
	}); err != nil || n != len(want) {
		t.Errorf("stream: %d tensors (%v), want %d", n, err, len(want))
	}

	// The streamed file equals the folder output's model.safetensors apart
	// from the carried files in its metadata; check the JSON summary too.
	dir := t.TempDir()
	out := filepath.Join(dir, "merged")
	cmd := exec.Command(merge, "--base", tiny, "--adapter", lora, "-o", out, "--json")
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s", err, se.String())
	}
	var sum Summary
	if err := json.Unmarshal(so.Bytes(), &sum); err != nil || sum.Schema != Schema || sum.Tensors.Merged != 14 || sum.Base.Kind != "float" {
		t.Errorf("--json summary %+v (%v)\n%s", sum, err, so.String())
	}
	got, _ := os.ReadFile(filepath.Join(out, "model.safetensors"))
	wantB, _ := os.ReadFile(filepath.Join(fx, "peft/lora-merged/model.safetensors"))
	if !bytes.Equal(got, wantB) {
		t.Error("CLI output differs from PEFT's merge")
	}

	mismatch := filepath.Join(fx, "peft/dora")
	for _, c := range []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"model as adapter", []string{"--base", tiny, "--adapter", filepath.Join(fx, "bnb/tiny-nf4"), "-o", filepath.Join(dir, "x")}, 3, "not an adapter"},
		{"adapter as base", []string{"--base", lora, "--adapter", lora, "-o", filepath.Join(dir, "x")}, 3, "an adapter, not a model"},
		{"weights", []string{"--base", tiny, "--adapter", lora, "--adapter", mismatch, "--weight", "1", "-o", filepath.Join(dir, "x")}, 2, "--weight"},
		{"two stdins", []string{"--base", "-", "--adapter", "-", "-o", filepath.Join(dir, "x")}, 2, "stdin"},
		{"json to stdout", []string{"--base", tiny, "--adapter", lora, "-o", "-", "--json"}, 2, "--json"},
		{"bad dtype", []string{"--base", tiny, "--adapter", lora, "-o", filepath.Join(dir, "x"), "--dtype", "f8"}, 2, "dtype"},
		{"help", []string{"--help"}, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(merge, c.args...)
			var so, se bytes.Buffer
			cmd.Stdout, cmd.Stderr = &so, &se
			code := exitCode(cmd.Run())
			if code != c.code || !strings.Contains(se.String(), c.err) {
				t.Fatalf("exit %d, want %d; stderr %q", code, c.code, se.String())
			}
			if c.code == 3 && strings.Count(strings.TrimSpace(se.String()), "\n") != 0 {
				t.Errorf("error is not one line: %q", se.String())
			}
			if c.code == 0 && !strings.Contains(so.String(), "Exit codes:") {
				t.Errorf("help lacks the exit codes: %s", so.String())
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); !os.IsNotExist(err) {
		t.Error("a failed merge left an output")
	}
}
