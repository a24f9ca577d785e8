package export

// Verified by llama.cpp itself: GGUF files written here are loaded by the llama.cpp
// shipped in the npm package node-llama-cpp@3.21.1 and their logits compared with
// transformers' (fixtures) or with the float64 reference (reference_test.go).
// Skipped when node is not on PATH, or when LORAKIT_NO_LLAMACPP is set.

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/gguf"
	"github.com/lorakit/lorakit/pkg/peft"
)

// llamaCpp returns node and the path of tools/llamacpp/logits.mjs with node-llama-cpp
// installed in the user's cache (installed now when missing), or skips.
func llamaCpp(t *testing.T) (node, script string) {
	t.Helper()
	if os.Getenv("LORAKIT_NO_LLAMACPP") != "" {
		t.Skip("LORAKIT_NO_LLAMACPP is set")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH: llama.cpp interop test skipped")
	}
	script = filepath.Join(testbin.Root(t), "tools", "llamacpp", "logits.mjs")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, "install")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if _, nerr := exec.LookPath("npm"); nerr != nil {
			t.Skipf("node-llama-cpp is not installed and npm is not on PATH: %s", stderr.String())
		}
		t.Fatalf("installing node-llama-cpp (set LORAKIT_NO_LLAMACPP=1 to skip this test): %v\n%s", err, stderr.String())
	}
	t.Logf("node-llama-cpp in %s", strings.TrimSpace(string(out)))
	return node, script
}

type llamaJob struct {
	Name  string  `json:"name"`
	Model string  `json:"model"`
	Lora  string  `json:"lora,omitempty"`
	Scale float64 `json:"scale,omitempty"`
	IDs   [][]int `json:"ids"`
}

// runLlama evaluates the jobs and returns ln p per job, row, position and token (NaN
// where p underflowed).
func runLlama(t *testing.T, node, script string, jobs []llamaJob) map[string][][][]float64 {
	t.Helper()
	spec, _ := json.Marshal(map[string]any{"threads": 2, "jobs": jobs})
	in := writeFile(t, filepath.Join(t.TempDir(), "jobs.json"), spec)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, "eval", in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("llama.cpp eval: %v\n%s", err, stderr.String())
	}
	var res struct {
		Results []struct {
			Name     string         `json:"name"`
			LogProbs [][][]*float64 `json:"logprobs"`
		} `json:"results"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("llama.cpp eval output: %v", err)
	}
	got := map[string][][][]float64{}
	for _, r := range res.Results {
		rows := make([][][]float64, len(r.LogProbs))
		for i, row := range r.LogProbs {
			rows[i] = make([][]float64, len(row))
			for j, pos := range row {
				rows[i][j] = make([]float64, len(pos))
				for k, v := range pos {
					rows[i][j][k] = math.NaN()
					if v != nil {
						rows[i][j][k] = *v
					}
				}
			}
		}
		got[r.Name] = rows
	}
	return got
}

// llamaDiff is the largest centred difference between llama.cpp's ln p and reference
// logits, over the tokens within 40 nats of the top (smaller probabilities are
// imprecise in float32).
func llamaDiff(t *testing.T, got, want [][][]float64) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d", len(got), len(want))
	}
	d := 0.0
	for r := range want {
		if len(got[r]) != len(want[r]) {
			t.Fatalf("row %d: %d positions, want %d", r, len(got[r]), len(want[r]))
		}
		for p := range want[r] {
			g, w := got[r][p], want[r][p]
			if len(g) != len(w) {
				t.Fatalf("row %d position %d: %d tokens, want %d", r, p, len(g), len(w))
			}
			top := math.Inf(-1)
			for _, v := range g {
				if !math.IsNaN(v) {
					top = max(top, v)
				}
			}
			keep := make([]bool, len(g))
			for k, v := range g {
				keep[k] = !math.IsNaN(v) && v > top-40
			}
			d = max(d, centredDiff(g, w, keep))
		}
	}
	return d
}

func TestLlamaCppInterop(t *testing.T) {
	fx := testbin.Fixtures(t)
	node, script := llamaCpp(t)
	dir := t.TempDir()
	peftDir := filepath.Join(fx, "peft")
	tiny := filepath.Join(peftDir, "tiny")
	cfg, err := checkpoint.LoadConfig(filepath.Join(tiny, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	ids, want := fixtureLogits(t, fx)
	tinyW := loadWeights(t, filepath.Join(tiny, "model.safetensors"))
	tinyShapes := shapesOf(t, filepath.Join(tiny, "model.safetensors"))

	type check struct {
		job     llamaJob
		want    [][][]float64
		tol     float64
		atLeast float64 // > 0: a known-wrong export that must miss by at least this
	}
	var checks []check
	model := func(name, path string, o ModelOptions) string {
		b, _ := exportModel(t, path, o)
		return writeFile(t, filepath.Join(dir, name+".gguf"), b)
	}
	adapter := func(name, path, base string, o AdapterOptions) string {
		b, _ := exportAdapter(t, path, base, o)
		return writeFile(t, filepath.Join(dir, name+".gguf"), b)
	}
	add := func(name, m, lora string, ref [][][]float64, tol, atLeast float64) {
		checks = append(checks, check{llamaJob{Name: name, Model: m, Lora: lora, IDs: ids}, ref, tol, atLeast})
	}

	// The fixtures: transformers' logits.
	f32 := model("tiny-f32", tiny, ModelOptions{Type: gguf.TypeF32})
	add("base f32", f32, "", want["base"], 1e-4, 0)
	add("lora adapter f32", f32, adapter("lora-f32", filepath.Join(peftDir, "lora"), tiny, AdapterOptions{Type: gguf.TypeF32}), want["lora_adapter"], 1e-4, 0)
	add("lora adapter f16", f32, adapter("lora-f16", filepath.Join(peftDir, "lora"), tiny, AdapterOptions{Type: gguf.TypeF16}), want["lora_adapter"], 4e-3, 0)
	add("lora-merged f32", model("merged-f32", filepath.Join(peftDir, "lora-merged"), ModelOptions{Type: gguf.TypeF32}), "", want["lora_merged"], 1e-4, 0)
	add("base f16", model("tiny-f16", tiny, ModelOptions{Type: gguf.TypeF16}), "", want["base"], 2e-3, 0)
	add("base bf16", model("tiny-bf16", tiny, ModelOptions{Type: gguf.TypeBF16}), "", want["base"], 2e-2, 0)
	add("base q8_0", model("tiny-q8_0", tiny, ModelOptions{Type: gguf.TypeQ8_0}), "", want["base"], 3e-2, 0)
	add("base q4_0", model("tiny-q4_0", tiny, ModelOptions{Type: gguf.TypeQ4_0}), "", want["base"], 0.3, 0)
	// A bf16 checkpoint: widened to f32 it is exact; kept bf16 (auto, a byte copy)
	// llama.cpp rounds the activations to bf16 in its matmuls.
	bf16Ref := refAll(cfg, loadWeights(t, filepath.Join(peftDir, "tiny-bf16", "model.safetensors")), ids)
	add("bf16 checkpoint as f32", model("tinybf16-f32", filepath.Join(peftDir, "tiny-bf16"), ModelOptions{Type: gguf.TypeF32}), "", bf16Ref, 1e-4, 0)
	add("bf16 checkpoint as bf16", model("tinybf16-bf16", filepath.Join(peftDir, "tiny-bf16"), ModelOptions{Auto: true}), "", bf16Ref, 1e-2, 0)

	// Known-wrong exports must miss: the check can fail.
	heads := map[string]int{".attn_q.": cfg.Heads, ".attn_k.": cfg.KVHeads}
	add("control: q/k not permuted", unpermuted(t, f32, filepath.Join(dir, "tiny-noperm.gguf"), heads, ".weight"), "", want["base"], 0, 1e-3)
	add("control: lora_b not permuted", f32, unpermuted(t, adapter("lora-f32b", filepath.Join(peftDir, "lora"), tiny, AdapterOptions{Type: gguf.TypeF32}),
		filepath.Join(dir, "lora-noperm.gguf"), heads, ".weight.lora_b"), want["lora_adapter"], 0, 1e-3)

	// Llama 3.1 rope scaling (rope_freqs.weight), against the float64 reference. The
	// original context of 32 puts the tiny model's frequencies in all three bands.
	ropeCfgJSON := modifiedJSON(t, filepath.Join(tiny, "config.json"), map[string]any{
		"rope_parameters": map[string]any{"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
			"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
	})
	ropeDir := writeModel(t, filepath.Join(dir, "rope"), ropeCfgJSON, tinyW, tinyShapes, dtype.F32)
	ropeCfg, err := arch.ParseConfig(ropeCfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	ropeRef := refAll(ropeCfg, tinyW, ids)
	if d := maxDiff(ropeRef, want["base"]); d < 1e-3 {
		t.Fatalf("llama3 rope scaling changes the reference by only %.3g: the check would be blind", d)
	}
	add("llama3 rope f32", model("rope-f32", ropeDir, ModelOptions{Type: gguf.TypeF32}), "", ropeRef, 1e-4, 0)

	// 4-bit input, dequantized on the fly, against the reference on bitsandbytes'
	// dequantized weights.
	nf4W := tinyW.clone()
	for k, v := range loadWeights(t, filepath.Join(fx, "bnb", "tiny-nf4", "dequantized.safetensors")) {
		nf4W[k] = v
	}
	add("nf4 checkpoint f32", model("nf4-f32", filepath.Join(fx, "bnb", "tiny-nf4"), ModelOptions{Type: gguf.TypeF32}), "", refAll(cfg, nf4W, ids), 1e-4, 0)

	// PEFT scaling variants of the fixture adapter, against merged references.
	loraDir := filepath.Join(peftDir, "lora")
	variants := []struct {
		name string
		set  map[string]any
		rule string
	}{
		{"rslora", map[string]any{"use_rslora": true}, RuleRSLoRA},
		{"alpha_pattern", map[string]any{"alpha_pattern": map[string]any{"q_proj": 4, "down_proj": 40}}, RuleFolded},
		{"rslora+alpha_pattern", map[string]any{"use_rslora": true, "alpha_pattern": map[string]any{"k_proj": 3}}, RuleFolded},
	}
	for _, v := range variants {
		vdir := copyDir(t, loraDir, filepath.Join(dir, v.name), map[string][]byte{
			"adapter_config.json": modifiedJSON(t, filepath.Join(loraDir, "adapter_config.json"), v.set)})
		pc, err := peft.Parse(mustRead(t, filepath.Join(vdir, "adapter_config.json")))
		if err != nil {
			t.Fatal(err)
		}
		mt, err := peft.NewMatcher(pc)
		if err != nil {
			t.Fatal(err)
		}
		ref := refAll(cfg, mergeAdapter(t, tinyW, vdir, func(m peft.Module) float64 {
			a := mt.Alpha(m.Path)
			if pc.UseRSLoRA {
				return a / math.Sqrt(float64(m.Rank))
			}
			return a / float64(m.Rank)
		}), ids)
		_, p := exportAdapter(t, vdir, tiny, AdapterOptions{Type: gguf.TypeF32})
		if !hasWarning(p.Notes, "scaling") || (v.rule == RuleFolded) != hasWarning(p.Notes, "folded") {
			t.Errorf("%s: notes %q, want rule %s", v.name, p.Notes, v.rule)
		}
		add("lora "+v.name, f32, adapter("lora-"+v.name, vdir, tiny, AdapterOptions{Type: gguf.TypeF32}), ref, 1e-4, 0)
	}

	jobs := make([]llamaJob, len(checks))
	for i, c := range checks {
		jobs[i] = c.job
	}
	got := runLlama(t, node, script, jobs)
	for _, c := range checks {
		g, ok := got[c.job.Name]
		if !ok {
			t.Errorf("%s: no result", c.job.Name)
			continue
		}
		d := llamaDiff(t, g, c.want)
		switch {
		case c.atLeast > 0 && d < c.atLeast:
			t.Errorf("%s: max centred |Δlogit| %.3g, but a wrong export must miss by ≥ %g", c.job.Name, d, c.atLeast)
		case c.atLeast > 0:
			t.Logf("%-28s max centred |Δlogit| %.3g (wrong, as it must be)", c.job.Name, d)
		case d > c.tol:
			t.Errorf("%s: max centred |Δlogit| %.3g > %g", c.job.Name, d, c.tol)
		default:
			t.Logf("%-28s max centred |Δlogit| %.3g (tolerance %g)", c.job.Name, d, c.tol)
		}
	}
}

// unpermuted rewrites the F32 GGUF file in as out with the q/k row permutation
// undone in the tensors named blk.N<key>...<suffix> (key from heads: ".attn_q."
// or ".attn_k.", with their head counts): a known-wrong export in HF's row order.
func unpermuted(t *testing.T, in, out string, heads map[string]int, suffix string) string {
	t.Helper()
	f, err := gguf.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var buf bytes.Buffer
	w, err := gguf.NewWriter(&buf, f.Header.Metadata, f.Header.Tensors)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range f.Header.Tensors {
		data, err := f.ReadTensor(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		for key, n := range heads {
			if !strings.Contains(ti.Name, key) || !strings.HasSuffix(ti.Name, suffix) {
				continue
			}
			rows, rowBytes := ti.Shape[1], ti.Shape[0]*4
			order, err := gguf.LlamaQKRowOrder(int(rows), n)
			if err != nil {
				t.Fatal(err)
			}
			hf := make([]byte, len(data))
			for r, src := range order { // GGUF row r holds HF row order[r]
				copy(hf[int64(src)*rowBytes:int64(src+1)*rowBytes], data[int64(r)*rowBytes:int64(r+1)*rowBytes])
			}
			data = hf
		}
		if err := w.WriteTensor(ti.Name, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return writeFile(t, out, buf.Bytes())
}
