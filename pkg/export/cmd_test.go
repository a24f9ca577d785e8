package export

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/gguf"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

func TestCLI(t *testing.T) {
	bin := testbin.Build(t, "lora-gguf")
	tiny, lora := fx(t, "peft", "tiny"), fx(t, "peft", "lora")
	dir := t.TempDir()

	t.Run("stream in, stream out", func(t *testing.T) {
		want, _ := exportModel(t, tiny, ModelOptions{Type: gguf.TypeQ8_0})
		r := testbin.Run(t, selfDescribing(t, tiny), bin, "-", "-o", "-", "--type", "q8_0", "--name", "tiny")
		if r.Code != 0 {
			t.Fatalf("exit %d: %s", r.Code, r.Stderr)
		}
		if !bytes.Equal([]byte(r.Stdout), want) {
			t.Errorf("streamed GGUF (%d bytes) differs from the folder export (%d bytes)", len(r.Stdout), len(want))
		}
		if !strings.Contains(r.Stderr, "GGUF model") || !strings.Contains(r.Stderr, "Q8_0") {
			t.Errorf("report not on stderr: %q", r.Stderr)
		}
	})

	t.Run("adapter stream carrying its base config", func(t *testing.T) {
		want, _ := exportAdapter(t, lora, tiny, AdapterOptions{Type: gguf.TypeF16})
		f, err := safetensors.Open(filepath.Join(lora, "adapter_model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		ts := map[string]safetensors.Tensor{}
		for _, ti := range f.Header.Tensors {
			d, _ := f.Data(ti.Name)
			ts[ti.Name] = safetensors.Tensor{DType: ti.DType, Shape: ti.Shape, Data: d}
		}
		var in bytes.Buffer
		md := checkpoint.Metadata(map[string][]byte{
			"adapter_config.json": mustRead(t, filepath.Join(lora, "adapter_config.json")),
			"config.json":         mustRead(t, filepath.Join(tiny, "config.json")),
		})
		if err := safetensors.Encode(&in, md, ts); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, "stream-adapter.gguf")
		r := testbin.Run(t, in.Bytes(), bin, "-", "-o", out, "-t", "f16", "--name", "lora")
		if r.Code != 0 || !bytes.Equal(mustRead(t, out), want) {
			t.Errorf("exit %d, stderr %q: output differs from the folder export", r.Code, r.Stderr)
		}
	})

	t.Run("file, report, quiet, json", func(t *testing.T) {
		out := filepath.Join(dir, "tiny.gguf")
		r := testbin.Run(t, nil, bin, tiny, "-o", out, "-t", "f16")
		want, _ := exportModel(t, tiny, ModelOptions{Type: gguf.TypeF16})
		if r.Code != 0 || !bytes.Equal(mustRead(t, out), want) {
			t.Fatalf("exit %d: %s", r.Code, r.Stderr)
		}
		if !strings.Contains(r.Stdout, "21 (16 F16, 5 F32)") || !strings.Contains(r.Stderr, "minimal byte vocabulary") {
			t.Errorf("report %q, stderr %q", r.Stdout, r.Stderr)
		}
		r = testbin.Run(t, nil, bin, tiny, "-o", out, "-q")
		if r.Code != 0 || r.Stdout != "" || r.Stderr != "" {
			t.Errorf("-q: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		r = testbin.Run(t, nil, bin, lora, "--base", tiny, "-o", filepath.Join(dir, "a.gguf"), "--json")
		var rep Report
		if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &rep) != nil || rep.Kind != "adapter" || rep.Alpha == nil || *rep.Alpha != 16 || rep.Tensors != 28 {
			t.Errorf("--json: exit %d %q", r.Code, r.Stdout)
		}
	})

	t.Run("exit codes", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			code int
			msg  string
		}{
			{"dora", []string{fx(t, "peft", "dora"), "--base", tiny, "-o", filepath.Join(dir, "d.gguf")}, 3, "lora-merge"},
			{"adapter without base", []string{lora, "-o", filepath.Join(dir, "x.gguf")}, 2, "--base"},
			{"quantized adapter", []string{lora, "--base", tiny, "-t", "q8_0", "-o", filepath.Join(dir, "x.gguf")}, 2, "f32, f16 or bf16"},
			{"base for a model", []string{tiny, "--base", tiny, "-o", filepath.Join(dir, "x.gguf")}, 2, "--base is for adapters"},
			{"bad type", []string{tiny, "-t", "q5_k", "-o", filepath.Join(dir, "x.gguf")}, 2, ""},
			{"output is a folder", []string{tiny, "-o", dir}, 2, "is a folder"},
			{"gguf input", []string{filepath.Join(dir, "tiny.gguf"), "-o", filepath.Join(dir, "x.gguf")}, 3, "GGUF"},
		} {
			r := testbin.Run(t, nil, bin, tc.args...)
			if r.Code != tc.code || !strings.Contains(r.Stderr, tc.msg) {
				t.Errorf("%s: exit %d (want %d), stderr %q", tc.name, r.Code, tc.code, r.Stderr)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "d.gguf")); err == nil {
			t.Error("refused DoRA export left a file")
		}
	})

	t.Run("atomic", func(t *testing.T) {
		// A NaN in the last tensor fails the Q8_0 export after most bytes are written:
		// the target keeps its old content and no temporary file survives.
		bad := filepath.Join(dir, "nan")
		w, shapes := randomModel(1, 64, 64, 2, 2, 32, 256, false)
		w["model.layers.0.mlp.up_proj.weight"][7] = float32(math.Inf(1))
		writeModel(t, bad, []byte(`{"model_type": "llama", "hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 1,
			"num_attention_heads": 2, "vocab_size": 256, "max_position_embeddings": 64}`), w, shapes, dtype.F32)
		outDir := t.TempDir()
		out := filepath.Join(outDir, "m.gguf")
		writeFile(t, out, []byte("old"))
		r := testbin.Run(t, nil, bin, bad, "-o", out, "-t", "q8_0")
		if r.Code != 3 || !strings.Contains(r.Stderr, "blk.0.ffn_up.weight") {
			t.Errorf("exit %d, stderr %q", r.Code, r.Stderr)
		}
		if b := mustRead(t, out); string(b) != "old" {
			t.Error("target overwritten by a failed export")
		}
		entries, _ := os.ReadDir(outDir)
		if len(entries) != 1 {
			t.Errorf("leftovers: %v", entries)
		}
		os.Remove(out)
		if r := testbin.Run(t, nil, bin, bad, "-o", out, "-t", "q8_0"); r.Code != 3 {
			t.Errorf("exit %d", r.Code)
		}
		if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
			t.Errorf("failed export left %v", entries)
		}
		// The same model as f16 is fine (Inf is representable).
		if r := testbin.Run(t, nil, bin, bad, "-o", out, "-t", "f16", "-q"); r.Code != 0 {
			t.Errorf("f16: exit %d %s", r.Code, r.Stderr)
		}
	})
}
