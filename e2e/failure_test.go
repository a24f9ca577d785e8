package e2e

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lorakit/lorakit/pkg/safetensors"
)

// modelStream is the self-describing safetensors stream of the tiny Llama
// merged with its adapter (config.json in the metadata), as lora-merge -o -
// writes it.
func modelStream(t *testing.T, bins string) []byte {
	t.Helper()
	ex := examples(t)
	r := run(t, t.TempDir(), bins, nil, "lora-merge", "--base", filepath.Join(ex, "tiny-llama"),
		"--adapter", filepath.Join(ex, "tiny-lora"), "-o", "-", "-q")
	if r.code != 0 || len(r.stdout) < 100_000 {
		t.Fatalf("lora-merge -o -: exit %d, %d bytes\n%s", r.code, len(r.stdout), r.stderr)
	}
	return []byte(r.stdout)
}

// pending reports how many entries dir holds and the bytes of the regular
// files under it.
func pending(dir string) (n int, size int64) {
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || p == dir {
			return nil
		}
		n++
		if info.Mode().IsRegular() {
			size += info.Size()
		}
		return nil
	})
	return n, size
}

// TestInterrupt sends SIGINT or SIGTERM to a tool in the middle of writing
// its output: the input is a stream on a pipe the test holds, fed until the
// tool's temporary output holds data (or, for lora-quantize, which spools a
// streamed input before its two passes, until the spool does) and never to
// its last byte, so the tool cannot finish first. The tool must exit 130 and
// leave nothing in the output folder.
func TestInterrupt(t *testing.T) {
	t.Parallel()
	bins := binDir(t)
	stream := modelStream(t, bins)
	adapter := filepath.Join(examples(t), "tiny-lora")
	cases := []struct {
		name string
		args []string // the output path is appended
		out  string
	}{
		{"merge-file", []string{"lora-merge", "--base", "-", "--adapter", adapter, "-o"}, "merged.safetensors"},
		{"merge-folder", []string{"lora-merge", "--base", "-", "--adapter", adapter, "-o"}, "merged"},
		{"quantize", []string{"lora-quantize", "-", "-o"}, "nf4.safetensors"},
		{"gguf", []string{"lora-gguf", "-", "-q", "-o"}, "model.gguf"},
	}
	for _, c := range cases {
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
			t.Run(c.name+"/"+sig.String(), func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				pr, pw, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer pw.Close()
				cmd := exec.Command(filepath.Join(bins, c.args[0]), append(c.args[1:], filepath.Join(dir, c.out))...)
				var so, se bytes.Buffer
				cmd.Stdin, cmd.Stdout, cmd.Stderr = pr, &so, &se
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				pr.Close()
				exited := make(chan error, 1)
				go func() { exited <- cmd.Wait() }()

				// Feed until the temporary output holds bytes; all but the
				// last byte at most, then wait for the output to appear.
				off, last := 0, len(stream)-1
				deadline := time.Now().Add(15 * time.Second)
				var fed time.Time
				for {
					n, size := pending(dir)
					if size > 0 || (n > 0 && !fed.IsZero() && time.Since(fed) > 300*time.Millisecond) {
						t.Logf("signalled after %d of %d input bytes; temporary output: %d entries, %d bytes", off, len(stream), n, size)
						break
					}
					if time.Now().After(deadline) {
						cmd.Process.Kill()
						t.Fatalf("no temporary output after %d input bytes", off)
					}
					select {
					case err := <-exited:
						t.Fatalf("exited before the signal: %v\n%s", err, se.String())
					default:
					}
					if off < last {
						k := min(4096, last-off)
						pw.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
						w, _ := pw.Write(stream[off : off+k])
						off += w
						if off == last {
							fed = time.Now()
						}
					} else {
						time.Sleep(5 * time.Millisecond)
					}
				}
				if err := cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
				var werr error
				select {
				case werr = <-exited:
				case <-time.After(15 * time.Second):
					cmd.Process.Kill()
					t.Fatalf("still running 15 s after %v", sig)
				}
				r := exitOf(t, werr, so.String(), se.String())
				if r.code != 130 {
					t.Errorf("exit %d (signal %v), want 130\n%s", r.code, r.sig, r.stderr)
				}
				if !strings.Contains(r.stderr, "interrupted") {
					t.Errorf("stderr does not say interrupted:\n%s", r.stderr)
				}
				if left := entries(t, dir); len(left) != 0 {
					t.Errorf("left behind: %v", left)
				}
			})
		}
	}
}

// TestDiskFull writes each tool's output to a 32 KiB tmpfs (mounting needs
// root; skipped otherwise): the tool must fail with exit 1 and an error
// saying the disk is full, and leave nothing on it.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	bins := binDir(t)
	dir := filepath.Join(t.TempDir(), "full")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root): %v %s", err, bytes.TrimSpace(b))
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	ex := examples(t)
	base, adapter := filepath.Join(ex, "tiny-llama"), filepath.Join(ex, "tiny-lora")
	data := filepath.Join(ex, "data", "progressions.jsonl")
	out := func(name string) string { return filepath.Join(dir, name) }
	cases := []struct {
		name string
		args []string
	}{
		{"quantize-file", []string{"lora-quantize", base, "-o", out("nf4.safetensors")}},
		{"quantize-folder", []string{"lora-quantize", base, "-o", out("nf4")}},
		{"merge-file", []string{"lora-merge", "--base", base, "--adapter", adapter, "-o", out("merged.safetensors")}},
		{"merge-folder", []string{"lora-merge", "--base", base, "--adapter", adapter, "-o", out("merged")}},
		{"gguf", []string{"lora-gguf", base, "-q", "-o", out("model.gguf")}},
		{"gguf-adapter", []string{"lora-gguf", adapter, "--base", base, "-o", out("adapter.gguf")}},
		{"train", []string{"lora-train", "--base", base, "--data", data, "--max-steps", "1", "-o", out("adapter")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, t.TempDir(), bins, nil, c.args[0], c.args[1:]...)
			if r.code != 1 {
				t.Errorf("exit %d, want 1\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, "no space left on device") {
				t.Errorf("stderr does not say the disk is full:\n%s", r.stderr)
			}
			if left := entries(t, dir); len(left) != 0 {
				t.Errorf("left on the full disk: %v", left)
			}
		})
	}
}

// TestStdoutFull writes each tool's stream to /dev/full: exit 1 with an
// error saying so.
func TestStdoutFull(t *testing.T) {
	t.Parallel()
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip("no /dev/full")
	}
	defer full.Close()
	bins := binDir(t)
	ex := examples(t)
	base, adapter := filepath.Join(ex, "tiny-llama"), filepath.Join(ex, "tiny-lora")
	for _, args := range [][]string{
		{"lora-quantize", base, "-o", "-"},
		{"lora-merge", "--base", base, "--adapter", adapter, "-o", "-"},
		{"lora-gguf", base, "-q", "-o", "-"},
	} {
		t.Run(args[0], func(t *testing.T) {
			cmd := exec.Command(filepath.Join(bins, args[0]), args[1:]...)
			var se bytes.Buffer
			cmd.Stdout, cmd.Stderr = full, &se
			r := exitOf(t, cmd.Run(), "", se.String())
			if r.code != 1 || !strings.Contains(r.stderr, "no space left on device") {
				t.Errorf("exit %d, want 1 and a disk-full error; stderr:\n%s", r.code, r.stderr)
			}
		})
	}
}

// badInputs writes a corrupt, a truncated and a mismatched input beside
// each other in a new folder and returns its path.
func badInputs(t *testing.T) string {
	t.Helper()
	ex := examples(t)
	dir := t.TempDir()
	model, err := os.ReadFile(filepath.Join(ex, "tiny-llama", "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(ex, "tiny-llama", "config.json")
	write := func(name string, b []byte) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A header whose length is right and whose JSON is not.
	write("corrupt.safetensors", append([]byte{16, 0, 0, 0, 0, 0, 0, 0}, `{"a": [1, 2, 3}}`...))
	write("truncated.safetensors", model[:len(model)/2])
	copyTree(t, config, filepath.Join(dir, "truncated-model", "config.json"))
	write("truncated-model/model.safetensors", model[:len(model)-1000])
	copyTree(t, filepath.Join(ex, "tiny-lora"), filepath.Join(dir, "truncated-adapter"))
	ad, _ := os.ReadFile(filepath.Join(ex, "tiny-lora", "adapter_model.safetensors"))
	write("truncated-adapter/adapter_model.safetensors", ad[:len(ad)-100])
	write("bad.jsonl", []byte("{\"input_ids\": [1, 2, 3]}\n{\"input_ids\": [1, 2,\n"))

	// An adapter for another base: the same modules with half the feature
	// sizes (lora_A is r×in, lora_B out×r).
	f, err := safetensors.Open(filepath.Join(ex, "tiny-lora", "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tensors := map[string]safetensors.Tensor{}
	for _, ti := range f.Header.Tensors {
		shape := append([]int64(nil), ti.Shape...)
		switch {
		case strings.Contains(ti.Name, "lora_A"):
			shape[1] /= 2
		case strings.Contains(ti.Name, "lora_B"):
			shape[0] /= 2
		}
		n := ti.DType.Size()
		for _, s := range shape {
			n *= int(s)
		}
		tensors[ti.Name] = safetensors.Tensor{DType: ti.DType, Shape: shape, Data: make([]byte, n)}
	}
	var buf bytes.Buffer
	if err := safetensors.Encode(&buf, nil, tensors); err != nil {
		t.Fatal(err)
	}
	write("other-adapter/adapter_model.safetensors", buf.Bytes())
	copyTree(t, filepath.Join(ex, "tiny-lora", "adapter_config.json"), filepath.Join(dir, "other-adapter", "adapter_config.json"))
	return dir
}

// TestBadInputs runs each tool on corrupt, truncated and mismatched inputs:
// exit 3, a message naming the file, and no output.
func TestBadInputs(t *testing.T) {
	t.Parallel()
	bins := binDir(t)
	in := badInputs(t)
	ex := examples(t)
	base, adapter := filepath.Join(ex, "tiny-llama"), filepath.Join(ex, "tiny-lora")
	data := filepath.Join(ex, "data", "progressions.jsonl")
	p := func(name string) string { return filepath.Join(in, name) }
	cases := []struct {
		name  string
		args  []string // "OUT" is replaced by a path in a fresh output folder
		names string   // what the message must name (any of "a|b")
		bug   string   // a known bug: when the run fails the check, the subtest is skipped with this
	}{
		{"inspect/corrupt", []string{"lora-inspect", p("corrupt.safetensors")}, "corrupt.safetensors", ""},
		{"inspect/truncated", []string{"lora-inspect", p("truncated.safetensors")}, "truncated.safetensors", ""},
		{"inspect/truncated-deltas", []string{"lora-inspect", "--deltas", p("truncated-adapter")}, "truncated-adapter", ""},
		{"inspect/mismatch", []string{"lora-inspect", "--deltas", p("other-adapter"), "--base", base}, "other-adapter|" + base, ""},
		{"quantize/corrupt", []string{"lora-quantize", p("corrupt.safetensors"), "-o", "OUT"}, "corrupt.safetensors", ""},
		{"quantize/truncated", []string{"lora-quantize", p("truncated.safetensors"), "-o", "OUT"}, "truncated.safetensors", ""},
		{"quantize/truncated-folder", []string{"lora-quantize", p("truncated-model"), "-o", "OUT"}, "truncated-model", ""},
		{"merge/corrupt-base", []string{"lora-merge", "--base", p("corrupt.safetensors"), "--adapter", adapter, "-o", "OUT"}, "corrupt.safetensors", ""},
		{"merge/truncated-base", []string{"lora-merge", "--base", p("truncated-model"), "--adapter", adapter, "-o", "OUT"}, "truncated-model", ""},
		{"merge/truncated-adapter", []string{"lora-merge", "--base", base, "--adapter", p("truncated-adapter"), "-o", "OUT"}, "truncated-adapter", ""},
		{"merge/mismatch", []string{"lora-merge", "--base", base, "--adapter", p("other-adapter"), "-o", "OUT"}, "other-adapter|" + base, ""},
		{"gguf/corrupt", []string{"lora-gguf", p("corrupt.safetensors"), "-o", "OUT.gguf"}, "corrupt.safetensors", ""},
		{"gguf/truncated", []string{"lora-gguf", p("truncated-model"), "-o", "OUT.gguf"}, "truncated-model", ""},
		{"gguf/mismatch", []string{"lora-gguf", p("other-adapter"), "--base", base, "-o", "OUT.gguf"}, "other-adapter|" + base, ""},
		{"train/truncated-base", []string{"lora-train", "--base", p("truncated-model"), "--data", data, "--max-steps", "1", "-o", "OUT"}, "truncated-model", ""},
		{"train/bad-data", []string{"lora-train", "--base", base, "--data", p("bad.jsonl"), "--max-steps", "1", "-o", "OUT"}, "bad.jsonl", ""},
		{"train/mismatch-eval", []string{"lora-train", "eval", "--base", base, "--adapter", p("other-adapter"), "--data", data}, "other-adapter|" + base, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out := t.TempDir()
			args := make([]string, len(c.args)-1)
			for i, a := range c.args[1:] {
				args[i] = strings.Replace(a, "OUT", filepath.Join(out, "out"), 1)
			}
			r := run(t, out, bins, nil, c.args[0], args...)
			named := false
			for _, n := range strings.Split(c.names, "|") {
				named = named || strings.Contains(r.stderr, n)
			}
			if (r.code != 3 || !named) && c.bug != "" {
				t.Skipf("KNOWN BUG (%s): exit %d, stderr:\n%s", c.bug, r.code, r.stderr)
			}
			if r.code != 3 {
				t.Errorf("exit %d, want 3\n%s", r.code, r.stderr)
			}
			if !named {
				t.Errorf("message does not name %s:\n%s", c.names, r.stderr)
			}
			if left := entries(t, out); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}

	// A truncated stream on stdin: exit 3, nothing written. lora-inspect reads
	// only a stream's header, so its stream is cut inside the header; the
	// others get half the stream.
	stream := modelStream(t, bins)
	for _, args := range [][]string{
		{"lora-inspect", "-"},
		{"lora-quantize", "-", "-o", "OUT"},
		{"lora-merge", "--base", "-", "--adapter", adapter, "-o", "OUT"},
		{"lora-gguf", "-", "-q", "-o", "OUT.gguf"},
	} {
		cut := len(stream) / 2
		if args[0] == "lora-inspect" {
			cut = 200
		}
		t.Run("stream/"+args[0], func(t *testing.T) {
			out := t.TempDir()
			for i := range args {
				args[i] = strings.Replace(args[i], "OUT", filepath.Join(out, "out"), 1)
			}
			r := run(t, out, bins, bytes.NewReader(stream[:cut]), args[0], args[1:]...)
			if r.code != 3 {
				t.Errorf("exit %d, want 3\n%s", r.code, r.stderr)
			}
			if left := entries(t, out); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

// TestDeadReader pipes each tool's stream into a reader that takes 10 bytes
// and closes the pipe (`... -o - | head -c 10`). The outputs are larger than
// a pipe's buffer, so the tool is still writing when the reader goes. The
// tool must exit quietly: nothing on stderr (-q keeps only errors), and
// either death by SIGPIPE or exit 0 or 1 — the README's exit codes do not
// cover a vanished reader, and a shell pipeline without pipefail ignores it.
func TestDeadReader(t *testing.T) {
	t.Parallel()
	bins := binDir(t)
	ex := examples(t)
	base, adapter := filepath.Join(ex, "tiny-llama"), filepath.Join(ex, "tiny-lora")
	for _, args := range [][]string{
		{"lora-quantize", base, "-q", "-o", "-"},
		{"lora-merge", "--base", base, "--adapter", adapter, "-q", "-o", "-"},
		{"lora-gguf", base, "-q", "-o", "-"},
	} {
		t.Run(args[0], func(t *testing.T) {
			t.Parallel()
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(filepath.Join(bins, args[0]), args[1:]...)
			var se bytes.Buffer
			cmd.Stdout, cmd.Stderr = pw, &se
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pw.Close()
			head := make([]byte, 10)
			if _, err := io.ReadFull(pr, head); err != nil {
				t.Fatal(err)
			}
			pr.Close()
			r := exitOf(t, cmd.Wait(), "", se.String())
			t.Logf("exit %d, signal %v", r.code, r.sig)
			if r.sig != 0 && r.sig != syscall.SIGPIPE {
				t.Errorf("killed by %v, want SIGPIPE or an exit", r.sig)
			}
			if r.sig == 0 && r.code != 0 && r.code != 1 {
				t.Errorf("exit %d, want SIGPIPE, 0 or 1", r.code)
			}
			if r.stderr != "" {
				t.Errorf("stderr not quiet:\n%s", r.stderr)
			}
		})
	}
}

// TestInterruptFile interrupts tools reading a 106 MB generated checkpoint
// from files (go run ./tools/genmodel, bf16, two shards, with
// a rank-8 adapter): the signal goes as soon as the temporary output holds
// data, while the tool is still writing (each run takes about half a second
// here). Exit 130 and nothing left in the output folder.
func TestInterruptFile(t *testing.T) {
	t.Parallel()
	bins := binDir(t)
	gen := t.TempDir()
	cmd := exec.Command("go", "run", "./tools/genmodel", "-o", gen, "-hidden", "1024", "-inter", "2816",
		"-layers", "2", "-vocab", "16000", "-heads", "16", "-kv-heads", "4", "-shards", "2", "-rank", "8")
	cmd.Dir = filepath.Join(examples(t), "..")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("genmodel: %v\n%s", err, b)
	}
	model, adapter := filepath.Join(gen, "model"), filepath.Join(gen, "adapter")
	cases := []struct {
		name string
		args []string // the output path is appended
		out  string
	}{
		{"merge-file", []string{"lora-merge", "--base", model, "--adapter", adapter, "-o"}, "merged.safetensors"},
		{"merge-folder", []string{"lora-merge", "--base", model, "--adapter", adapter, "-o"}, "merged"},
		{"quantize-file", []string{"lora-quantize", model, "-o"}, "nf4.safetensors"},
		{"quantize-folder", []string{"lora-quantize", model, "-o"}, "nf4"},
		{"gguf", []string{"lora-gguf", model, "-q", "-o"}, "model.gguf"},
	}
	for _, c := range cases {
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
			t.Run(c.name+"/"+sig.String(), func(t *testing.T) {
				dir := t.TempDir()
				cmd := exec.Command(filepath.Join(bins, c.args[0]), append(c.args[1:], filepath.Join(dir, c.out))...)
				var so, se bytes.Buffer
				cmd.Stdout, cmd.Stderr = &so, &se
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				exited := make(chan error, 1)
				go func() { exited <- cmd.Wait() }()
				deadline := time.Now().Add(15 * time.Second)
				for {
					if _, size := pending(dir); size > 0 {
						break
					}
					select {
					case err := <-exited:
						r := exitOf(t, err, so.String(), se.String())
						if r.code == 0 {
							// Too fast to catch on this machine: nothing tested.
							t.Skipf("finished before its output could be seen")
						}
						t.Fatalf("exit %d before the signal\n%s", r.code, r.stderr)
					default:
					}
					if time.Now().After(deadline) {
						cmd.Process.Kill()
						t.Fatal("no temporary output after 15 s")
					}
					time.Sleep(time.Millisecond)
				}
				if err := cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
				var werr error
				select {
				case werr = <-exited:
				case <-time.After(15 * time.Second):
					cmd.Process.Kill()
					t.Fatalf("still running 15 s after %v", sig)
				}
				r := exitOf(t, werr, so.String(), se.String())
				if r.code == 0 {
					t.Skipf("finished before the signal arrived")
				}
				if r.code != 130 {
					t.Errorf("exit %d (signal %v), want 130\n%s", r.code, r.sig, r.stderr)
				}
				if left := entries(t, dir); len(left) != 0 {
					t.Errorf("left behind: %v", left)
				}
			})
		}
	}
}

// TestDeadReaderShell is TestDeadReader as a user types it:
// `lora-gguf ... -o - | head -c 10` in bash. The pipeline's stderr must be
// empty and the tool's status SIGPIPE (141 in bash), 0 or 1.
func TestDeadReaderShell(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	if _, err := exec.LookPath("head"); err != nil {
		t.Skip("head not installed")
	}
	t.Parallel()
	bins := binDir(t)
	base := filepath.Join(examples(t), "tiny-llama")
	r := run(t, t.TempDir(), bins, nil, "bash", "-c",
		`lora-gguf "$1" -q -o - | head -c 10 >/dev/null; echo "${PIPESTATUS[0]}"`, "bash", base)
	status := strings.TrimSpace(r.stdout)
	if status != "141" && status != "0" && status != "1" {
		t.Errorf("lora-gguf status %q, want 141 (SIGPIPE), 0 or 1", status)
	}
	if r.stderr != "" {
		t.Errorf("stderr not quiet:\n%s", r.stderr)
	}
}
