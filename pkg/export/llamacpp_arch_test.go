package export

// Every architecture of the registry through llama.cpp: a tiny random checkpoint made
// here (internal/randmodel) → our GGUF files (the base in every type, the base with an
// adapter GGUF, the model lora-merge writes) → the logits of the llama.cpp that
// node-llama-cpp 3.21.1 runs, compared with each other and with lorakit's own forward
// pass (the model `lora-train eval` uses); and once per model_type the QLoRA chain
// (quantize → train → merge → GGUF). Skipped as llamacpp_test.go is.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/randmodel"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/gguf"
	"github.com/lorakit/lorakit/pkg/llama"
	"github.com/lorakit/lorakit/pkg/merge"
	"github.com/lorakit/lorakit/pkg/quantize"
	"github.com/lorakit/lorakit/pkg/train"
)

// archCase is one tiny model of an architecture and what the test runs on it.
type archCase struct {
	name    string
	model   randmodel.Config
	adapter randmodel.AdapterOptions
	// short and long are row lengths: every row is at most short tokens long, and
	// with long > 0 a job of its own evaluates a row of long tokens (beyond the
	// sliding window of the architectures llama.cpp runs with one, beyond LongRoPE's
	// original context).
	short, long int
	// beyondCap is set where llama.cpp has no sliding window and the export caps
	// context_length to it: on a row longer than the window, llama.cpp must differ
	// from lorakit (the reason for the cap).
	beyondCap int
	tol       float64
}

// archCases are the models of TestLlamaCppArchitectures: every architecture of the
// registry, and variants that exercise what the export does differently.
func archCases() []archCase {
	tiny := func(mt string, set map[string]any) randmodel.Config {
		c := randmodel.Tiny(mt, 7)
		for k, v := range set {
			c.Extra[k] = v
		}
		return c
	}
	allLinear := randmodel.AdapterOptions{Rank: 4, Alpha: 8, Seed: 11}
	withHead := randmodel.AdapterOptions{Rank: 4, Alpha: 8, Seed: 11, Targets: []string{"all-linear", "lm_head"}}
	withEmbed := randmodel.AdapterOptions{Rank: 4, Alpha: 8, Seed: 11, Targets: []string{"all-linear", "lm_head", "embed_tokens"}}
	// Gemma 2 and 3: llama.cpp's GELU reads a float16 table (input and output rounded
	// to float16), and the sandwich norms bring the MLP's output, rounding included,
	// back to unit scale. Against a float64 transformers forward these models show up
	// to 3.1e-3 (Gemma 1, without sandwich norms: 1.3e-4); with the table emulated in
	// that forward, at most 6.3e-4 (float16 rounding flips), so it is the table.
	const gemmaTol = 5e-3
	return []archCase{
		{name: "llama", model: tiny("llama", nil), adapter: allLinear, short: 12, tol: 1e-4},
		{name: "llama lm_head and embed_tokens LoRA", model: tiny("llama", nil), adapter: withEmbed, short: 12, tol: 1e-4},
		{name: "llama biases, llama3 rope", model: tiny("llama", map[string]any{"attention_bias": true, "mlp_bias": true,
			"rope_parameters": map[string]any{"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
				"high_freq_factor": 4.0, "original_max_position_embeddings": 16}}), adapter: withHead, short: 12, tol: 1e-4},
		{name: "mistral", model: tiny("mistral", nil), adapter: withHead, short: 8, beyondCap: 16, tol: 1e-4},
		{name: "qwen2", model: tiny("qwen2", nil), adapter: withHead, short: 12, tol: 1e-4},
		{name: "qwen2 sliding", model: tiny("qwen2", map[string]any{"use_sliding_window": true, "sliding_window": 8, "max_window_layers": 1}),
			adapter: allLinear, short: 8, beyondCap: 16, tol: 1e-4},
		{name: "qwen3", model: tiny("qwen3", nil), adapter: withHead, short: 12, tol: 1e-4},
		{name: "gemma", model: tiny("gemma", nil), adapter: allLinear, short: 12, tol: 1e-3},
		{name: "gemma2", model: tiny("gemma2", nil), adapter: allLinear, short: 8, long: 20, tol: gemmaTol},
		{name: "gemma2 query_pre_attn_scalar", model: tiny("gemma2", map[string]any{"query_pre_attn_scalar": 24}), adapter: allLinear, short: 8, long: 20, tol: gemmaTol},
		{name: "gemma3_text", model: tiny("gemma3_text", nil), adapter: allLinear, short: 8, long: 20, tol: gemmaTol},
		{name: "gemma3_text query_pre_attn_scalar", model: tiny("gemma3_text", map[string]any{"query_pre_attn_scalar": 24, "final_logit_softcapping": 5.0}),
			adapter: allLinear, short: 8, long: 20, tol: gemmaTol},
		{name: "gemma3 multimodal", model: tiny("gemma3", nil), adapter: allLinear, short: 8, long: 20, tol: gemmaTol},
		{name: "phi3", model: tiny("phi3", nil), adapter: withHead, short: 12, tol: 1e-4},
		// llama.cpp picks LongRoPE's factors by its context, which it rounds up to a
		// multiple of 256: an original context of 256 gives the short factors to the
		// short rows and the long ones to a row of 260 tokens, as transformers does.
		{name: "phi3 longrope", model: tiny("phi3", map[string]any{"original_max_position_embeddings": 256, "max_position_embeddings": 512,
			"rope_scaling": map[string]any{"type": "longrope", "short_factor": []float64{1, 1.1, 1.5, 2}, "long_factor": []float64{1, 2, 4, 8}}}),
			adapter: allLinear, short: 12, long: 260, tol: 1e-4},
	}
}

// qloraChain quantizes the case's base to NF4 in d, trains a QLoRA adapter on it
// for a few steps and merges it onto the NF4 base, as `lora-quantize`,
// `lora-train` and `lora-merge` do; it returns the three paths.
func qloraChain(t *testing.T, c archCase, d string) (nf4, adapter, merged string) {
	t.Helper()
	nf4, adapter, merged = filepath.Join(d, "nf4"), filepath.Join(d, "qlora"), filepath.Join(d, "qlora-merged")
	if _, err := quantize.Run(context.Background(), filepath.Join(d, "base"), nf4, quantize.DefaultOptions()); err != nil {
		t.Fatalf("%s: lora-quantize: %v", c.name, err)
	}
	var data strings.Builder
	for _, row := range c.rows(c.model.Tokens, 16, 16, 16, 16) {
		b, _ := json.Marshal(map[string][]int{"input_ids": row})
		data.Write(append(b, '\n'))
	}
	o := train.DefaultOptions()
	o.Base, o.Data, o.Output = nf4, writeFile(t, filepath.Join(d, "train.jsonl"), []byte(data.String())), adapter
	o.Targets, o.LR, o.MaxSteps, o.Batch, o.Seq, o.Device, o.Threads = []string{"all-linear"}, 5e-3, 3, 2, 16, "cpu", 2
	if _, err := train.Run(context.Background(), o); err != nil {
		t.Fatalf("%s: lora-train: %v", c.name, err)
	}
	if _, err := merge.Run(context.Background(), nf4, []merge.AdapterInput{{Path: adapter, Weight: 1}}, merged, merge.Options{}); err != nil {
		t.Fatalf("%s: lora-merge onto NF4: %v", c.name, err)
	}
	return nf4, adapter, merged
}

// rows are deterministic rows of token ids below n, of the given lengths (0: none).
func (c archCase) rows(n int, lengths ...int) [][]int {
	r := rand.New(rand.NewPCG(uint64(len(c.name)), uint64(len(lengths))))
	var out [][]int
	for _, length := range lengths {
		if length <= 0 {
			continue
		}
		row := make([]int, length)
		for i := range row {
			row[i] = r.IntN(n)
		}
		out = append(out, row)
	}
	return out
}

// lorakitLogits is the seam to lorakit's own forward pass: the model `lora-train eval`
// uses (pkg/llama through pkg/train) on the CPU in f32, with the adapter when not "".
// It returns logits [row][position][vocab]; an architecture the model does not run
// gives an error wrapping arch.ErrUnsupported.
func lorakitLogits(base, adapter string, rows [][]int) ([][][]float64, error) {
	b, err := train.OpenBase(base, nil)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	be, err := train.NewBackend("cpu", 2)
	if err != nil {
		return nil, err
	}
	m, err := b.NewModel(be, llama.Options{Precision: llama.PrecisionF32})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	if adapter != "" {
		ad, load, err := train.OpenAdapter(adapter, nil, b.Config, 0)
		if err != nil {
			return nil, err
		}
		if err := m.AddAdapters(ad.Specs, load); err != nil {
			return nil, err
		}
	}
	V := m.Config().Vocab
	out := make([][][]float64, len(rows))
	for r, row := range rows {
		ids := make([]int32, len(row))
		for i, id := range row {
			ids[i] = int32(id)
		}
		dst := make([]float32, len(row)*V)
		if err := m.Logits(llama.Batch{Rows: 1, Seq: len(row), IDs: ids}, dst); err != nil {
			return nil, err
		}
		for p := range row {
			lg := make([]float64, V)
			for k := range lg {
				lg[k] = float64(dst[p*V+k])
			}
			out[r] = append(out[r], lg)
		}
	}
	return out, nil
}

// truncate keeps the first n logits of every position (llama.cpp's vocabulary of a
// trimmed embedding).
func truncate(x [][][]float64, n int) [][][]float64 {
	out := make([][][]float64, len(x))
	for r := range x {
		for _, p := range x[r] {
			out[r] = append(out[r], p[:min(n, len(p))])
		}
	}
	return out
}

// TestLlamaCppArchitectures: for every architecture, llama.cpp applies our adapter GGUF
// as lora-merge merges it, runs every output type as the f32 file within its rounding,
// and computes lorakit's logits: every registered architecture runs in lorakit's model,
// so an architecture the model refuses fails here.
func TestLlamaCppArchitectures(t *testing.T) {
	node, script := llamaCpp(t)
	dir := t.TempDir()
	type check struct {
		arch    string
		job     llamaJob
		against string    // another job's name, or "" for lorakit's logits of…
		lorakit [2]string // …this base and adapter
		tol     float64
		atLeast float64 // > 0: must differ by at least this much
	}
	var checks []check
	var jobs []llamaJob
	covered := map[string]bool{}
	for _, c := range archCases() {
		cfg, err := c.model.Arch()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		first := !covered[cfg.Arch.ModelType]
		covered[cfg.Arch.ModelType] = true
		d := filepath.Join(dir, strings.NewReplacer(" ", "-", ",", "").Replace(c.name))
		base, ad, merged := filepath.Join(d, "base"), filepath.Join(d, "adapter"), filepath.Join(d, "merged")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := c.model.Write(base); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if err := c.model.AdapterWith(ad, c.adapter); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if _, err := merge.Run(context.Background(), base, []merge.AdapterInput{{Path: ad, Weight: 1}}, merged, merge.Options{}); err != nil {
			t.Fatalf("%s: lora-merge: %v", c.name, err)
		}
		file := func(what string, b []byte) string { return writeFile(t, filepath.Join(d, what+".gguf"), b) }
		f32, _ := exportModel(t, base, ModelOptions{Type: gguf.TypeF32})
		a32, _ := exportAdapter(t, ad, base, AdapterOptions{Type: gguf.TypeF32})
		m32, _ := exportModel(t, merged, ModelOptions{Type: gguf.TypeF32})
		basePath, adPath, mergedPath := file("base-f32", f32), file("adapter-f32", a32), file("merged-f32", m32)
		rows := c.rows(c.model.Tokens, c.short, c.short-3, 5)
		job := func(name, model, lora string, ids [][]int) llamaJob {
			j := llamaJob{Name: c.name + ": " + name, Model: model, Lora: lora, IDs: ids}
			jobs = append(jobs, j)
			return j
		}
		// against: another job; lorakit: the base and adapter of a lorakit reference.
		add := func(j llamaJob, against string, lorakit [2]string, tol, atLeast float64) {
			checks = append(checks, check{arch: c.name, job: j, against: against, lorakit: lorakit, tol: tol, atLeast: atLeast})
		}
		none := [2]string{}
		jb, ja, jm := job("base f32", basePath, "", rows), job("base + adapter f32", basePath, adPath, rows), job("merged f32", mergedPath, "", rows)
		add(ja, jm.Name, none, c.tol, 0) // llama.cpp applies the adapter as lora-merge merges it
		add(jb, jm.Name, none, 0, 1e-2)  // control: the adapter changes the logits
		add(jb, "", [2]string{base, ""}, c.tol, 0)
		// lorakit's model applies LoRA to the decoder layers' linears only: an
		// adapter on lm_head or embed_tokens is checked through the merged model.
		if slices.ContainsFunc(c.adapter.Targets, func(t string) bool { return t == "lm_head" || t == "embed_tokens" }) {
			add(ja, "", [2]string{merged, ""}, c.tol, 0)
		} else {
			add(ja, "", [2]string{base, ad}, c.tol, 0)
		}
		add(jm, "", [2]string{merged, ""}, c.tol, 0)
		// The other types load and compute the f32 file's logits within their
		// rounding (these models' logits span about ±10; the encodings themselves
		// are checked bit for bit elsewhere).
		for _, ty := range []struct {
			t   gguf.Type
			tol float64
		}{{gguf.TypeF16, 0.03}, {gguf.TypeBF16, 0.3}, {gguf.TypeQ8_0, 0.6}, {gguf.TypeQ4_0, 3}} {
			b, _ := exportModel(t, base, ModelOptions{Type: ty.t})
			add(job("base "+strings.ToLower(ty.t.String()), file("base-"+ty.t.String(), b), "", rows), jb.Name, none, ty.tol, 0)
		}
		if c.long > 0 {
			long := c.rows(c.model.Tokens, c.long)
			n := fmt.Sprintf(", %d tokens", c.long)
			jb, ja, jm := job("base f32"+n, basePath, "", long), job("base + adapter f32"+n, basePath, adPath, long), job("merged f32"+n, mergedPath, "", long)
			add(ja, jm.Name, none, c.tol, 0)
			add(jb, "", [2]string{base, ""}, c.tol, 0)
			add(jm, "", [2]string{merged, ""}, c.tol, 0)
		}
		if c.beyondCap > 0 {
			add(job(fmt.Sprintf("base beyond the window, %d tokens", c.beyondCap), basePath, "", c.rows(c.model.Tokens, c.beyondCap)), "", [2]string{base, ""}, 0, 1e-3)
		}
		if first {
			// The whole QLoRA chain, once per model_type: lora-quantize → lora-train
			// (QLoRA on all linear projections, rows longer than a sliding window) →
			// lora-merge onto the NF4 base → lora-gguf, whose llama.cpp logits must
			// be lorakit's forward of the NF4 base with the trained adapter.
			nf4, qad, qmerged := qloraChain(t, c, d)
			m, _ := exportModel(t, qmerged, ModelOptions{Type: gguf.TypeF32})
			j := job("QLoRA-trained, merged f32", file("qlora-merged-f32", m), "", rows)
			add(j, "", [2]string{nf4, qad}, c.tol, 0)
			add(j, "", [2]string{nf4, ""}, 0, 1e-3) // control: training changed the NF4 base's logits
		}
	}
	for _, a := range arch.All() {
		if !covered[a.ModelType] {
			t.Errorf("no case for %s", a.ModelType)
		}
	}

	got := runLlama(t, node, script, jobs)
	byArch := map[string][]check{}
	var order []string
	for _, c := range checks {
		if byArch[c.arch] == nil {
			order = append(order, c.arch)
		}
		byArch[c.arch] = append(byArch[c.arch], c)
	}
	for _, name := range order {
		t.Run(name, func(t *testing.T) {
			for _, c := range byArch[name] {
				g, ok := got[c.job.Name]
				if !ok {
					t.Errorf("%s: no result", c.job.Name)
					continue
				}
				var want [][][]float64
				what := c.against
				if c.against != "" {
					want = got[c.against]
				} else {
					var err error
					if want, err = lorakitLogits(c.lorakit[0], c.lorakit[1], c.job.IDs); err != nil {
						t.Errorf("%s: lorakit's forward: %v", c.job.Name, err)
						continue
					}
					want = truncate(want, len(g[0][0]))
					what = "lorakit's forward"
				}
				d, tol := llamaDiff(t, g, want), c.tol
				switch {
				case c.atLeast > 0 && d < c.atLeast:
					t.Errorf("%s vs %s: max centred |Δlogit| %.3g, but must differ by ≥ %g", c.job.Name, what, d, c.atLeast)
				case c.atLeast > 0:
					t.Logf("%-60s vs %s: %.3g (differs, as it must)", c.job.Name, what, d)
				case d > tol:
					t.Errorf("%s vs %s: max centred |Δlogit| %.3g > %.3g", c.job.Name, what, d, tol)
				default:
					t.Logf("%-60s vs %s: %.3g (tolerance %.3g)", c.job.Name, what, d, tol)
				}
			}
		})
	}
}
