package torchref

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/internal/num"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/llama"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/train"
)

var update = flag.Bool("update", false, "rewrite testdata/*.safetensors from torchref.py's output (needs torch)")

// adapterCase describes the adapter of a case.
type adapterCase struct {
	ia3     bool
	targets []string
	dora    bool
	bias    string // PEFT's bias option
	// fileBias stores perturbed trained biases in the adapter file (they
	// replace the base's).
	fileBias bool
	// virtual is train.MethodPrompt or train.MethodPrefix: 3 virtual
	// tokens instead of module adapters, and a batch without packing.
	virtual string
}

// refCase is one tiny model, adapter and batch.
type refCase struct {
	name    string
	config  string
	adapter adapterCase
	seq     int // tokens per row; row 0 packs two documents
}

// small is the common part of the tiny configs.
const small = `"hidden_size": 32, "intermediate_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2,
  "vocab_size": 64, "max_position_embeddings": 64, "rms_norm_eps": 1e-5`

var cases = []refCase{
	{"llama_bias_all", `{"model_type": "llama", ` + small + `, "num_hidden_layers": 2, "attention_bias": true,
	  "mlp_bias": true, "rope_theta": 10000, "rope_scaling": {"rope_type": "llama3", "factor": 4, "low_freq_factor": 1,
	  "high_freq_factor": 2, "original_max_position_embeddings": 64}}`,
		adapterCase{targets: []string{"all-linear"}, bias: "all"}, 20},
	{"mistral_window", `{"model_type": "mistral", ` + small + `, "num_hidden_layers": 2, "sliding_window": 5}`,
		adapterCase{targets: []string{"q_proj", "k_proj", "v_proj", "o_proj"}}, 22},
	{"qwen2_tied_window_bias", `{"model_type": "qwen2", ` + small + `, "num_hidden_layers": 2, "tie_word_embeddings": true,
	  "use_sliding_window": true, "sliding_window": 6, "max_window_layers": 1, "rope_theta": 1000000}`,
		adapterCase{targets: []string{"all-linear"}, bias: "lora_only", fileBias: true}, 20},
	{"qwen3_qknorm_dora_bias", `{"model_type": "qwen3", ` + small + `, "num_hidden_layers": 2, "head_dim": 12,
	  "attention_bias": true, "tie_word_embeddings": true}`,
		adapterCase{targets: []string{"q_proj", "k_proj", "v_proj", "o_proj", "down_proj"}, dora: true, bias: "all"}, 18},
	{"gemma_ia3", `{"model_type": "gemma", ` + small + `, "num_hidden_layers": 2, "num_attention_heads": 2,
	  "num_key_value_heads": 1, "head_dim": 16}`, adapterCase{ia3: true}, 18},
	{"gemma2_softcap_window", `{"model_type": "gemma2", ` + small + `, "num_hidden_layers": 3, "head_dim": 8,
	  "query_pre_attn_scalar": 20, "sliding_window": 5, "attn_logit_softcapping": 3.0, "final_logit_softcapping": 5.0}`,
		adapterCase{targets: []string{"all-linear"}}, 20},
	{"gemma3_local_global", `{"model_type": "gemma3_text", ` + small + `, "num_hidden_layers": 3, "head_dim": 8,
	  "query_pre_attn_scalar": 8, "sliding_window": 4, "sliding_window_pattern": 3, "rope_theta": 1000000,
	  "rope_local_base_freq": 10000, "rope_scaling": {"rope_type": "linear", "factor": 2.0}}`,
		adapterCase{targets: []string{"all-linear"}}, 20},
	{"phi3_longrope_long", phi3Config, adapterCase{targets: []string{"all-linear"}}, 22},
	{"phi3_longrope_short", phi3Config, adapterCase{targets: []string{"all-linear"}}, 14},
	{"phi3_fused_dora", phi3Config, adapterCase{targets: []string{"qkv_proj", "gate_up_proj"}, dora: true}, 16},
	{"phi3_ia3", phi3Config, adapterCase{ia3: true}, 16},
	{"llama_prompt", `{"model_type": "llama", ` + small + `, "num_hidden_layers": 2}`,
		adapterCase{virtual: train.MethodPrompt}, 12},
	{"gemma2_prompt_scaled", `{"model_type": "gemma2", ` + small + `, "num_hidden_layers": 2, "head_dim": 8,
	  "query_pre_attn_scalar": 20, "sliding_window": 5, "attn_logit_softcapping": 3.0, "final_logit_softcapping": 5.0}`,
		adapterCase{virtual: train.MethodPrompt}, 12},
	{"gemma3_prompt_scaled_module", `{"model_type": "gemma3_text", ` + small + `, "num_hidden_layers": 2, "head_dim": 8,
	  "query_pre_attn_scalar": 8, "sliding_window": 4, "sliding_window_pattern": 2}`,
		adapterCase{virtual: train.MethodPrompt}, 12},
	{"mistral_prefix_window", `{"model_type": "mistral", ` + small + `, "num_hidden_layers": 2, "sliding_window": 6}`,
		adapterCase{virtual: train.MethodPrefix}, 12},
	{"phi3_prefix_fused", phi3Config, adapterCase{virtual: train.MethodPrefix}, 12},
	{"gemma3_prefix_qknorm", `{"model_type": "gemma3_text", ` + small + `, "num_hidden_layers": 2, "head_dim": 8,
	  "query_pre_attn_scalar": 8, "sliding_window": 4, "sliding_window_pattern": 2}`,
		adapterCase{virtual: train.MethodPrefix}, 12},
}

// phi3Config rotates 6 of 8 dimensions per head, with LongRoPE from 16
// positions and a sliding window.
const phi3Config = `{"model_type": "phi3", ` + small + `, "num_hidden_layers": 2, "partial_rotary_factor": 0.75,
  "original_max_position_embeddings": 16, "sliding_window": 9, "rope_scaling": {"type": "longrope",
  "short_factor": [1.0, 1.25, 1.5], "long_factor": [1.5, 3.0, 6.0]}}`

func TestTorchRef(t *testing.T) {
	torch := torchAvailable()
	if !torch {
		if *update {
			t.Fatal("-update needs /usr/bin/python3 with torch")
		}
		t.Logf("torch is not available to %s (Debian: apt-get install python3-torch): comparing with the committed outputs of torchref.py", python())
	}
	// One interpreter computes every case (importing torch takes seconds).
	root := t.TempDir()
	dirs := make([]string, len(cases))
	cfgs := make([]*arch.Config, len(cases))
	batches := make([]llama.Batch, len(cases))
	for i, c := range cases {
		dirs[i] = filepath.Join(root, c.name)
		if err := os.Mkdir(dirs[i], 0o755); err != nil {
			t.Fatal(err)
		}
		cfgs[i], batches[i] = writeCase(t, c, dirs[i])
	}
	if torch {
		cmd := exec.Command(python(), append([]string{"torchref.py"}, dirs...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("torchref.py: %v\n%s", err, out)
		}
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, cfg, b := dirs[i], cfgs[i], batches[i]
			golden := filepath.Join("testdata", c.name+".safetensors")
			var ref map[string][]float32
			if torch {
				ref = readST(t, filepath.Join(dir, "out.safetensors"))
				if *update {
					copyFile(t, filepath.Join(dir, "out.safetensors"), golden)
				} else {
					// The committed outputs are this script's on these inputs.
					for name, want := range readST(t, golden) {
						if e := relErr(ref[name], want); e > 1e-5 {
							t.Errorf("%s: torchref.py now gives %.3g from %s (go test -run TorchRef -update)", name, e, golden)
						}
					}
				}
			} else {
				ref = readST(t, golden)
			}
			for _, prec := range []llama.Precision{llama.PrecisionF32, llama.PrecisionBF16} {
				got := run(t, cfg, dir, b, prec)
				tol := tolerances[prec]
				var report []string
				for _, name := range sortedKeys(ref) {
					e := relErr(got[name], ref[name])
					if prec == llama.PrecisionBF16 && strings.HasPrefix(name, "grad:") {
						e = normErr(got[name], ref[name])
					}
					report = append(report, fmt.Sprintf("%s %.2g", strings.TrimPrefix(name, "grad:model.layers."), e))
					limit := tol.grad
					switch {
					case name == "logits":
						limit = tol.logits
					case name == "loss":
						limit = tol.loss
					}
					if e > limit || math.IsNaN(e) {
						t.Errorf("%s %s: relative error %.3g > %.3g", prec, name, e, limit)
					}
				}
				if len(got) != len(ref) {
					t.Errorf("%s: lorakit has %d outputs, torchref %d: %v / %v", prec, len(got), len(ref), sortedKeys(got), sortedKeys(ref))
				}
				t.Logf("%s: %s", prec, strings.Join(report, ", "))
			}
		})
	}
}

// tolerances are max|lorakit − torch| / max|torch| per output (bf16
// gradients: ‖lorakit − torch‖ / ‖torch‖): f32 is the exact reference (only
// float32 orders of summation differ); bf16 mixed precision rounds every
// activation to 8 bits of mantissa, which over a few layers of a random
// model moves logits by a few percent.
var tolerances = map[llama.Precision]struct{ logits, loss, grad float64 }{
	llama.PrecisionF32:  {1e-5, 1e-6, 2e-5},
	llama.PrecisionBF16: {1e-1, 1e-2, 2.5e-1},
}

// normErr is ‖got − want‖ / ‖want‖.
func normErr(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var d, s float64
	for i := range want {
		x := float64(got[i]) - float64(want[i])
		d += x * x
		s += float64(want[i]) * float64(want[i])
	}
	return math.Sqrt(d / s)
}

// relErr is max|got − want| / max|want| (+Inf when the lengths differ).
func relErr(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var d, s float64
	for i := range want {
		d = math.Max(d, math.Abs(float64(got[i])-float64(want[i])))
		s = math.Max(s, math.Abs(float64(want[i])))
	}
	if s == 0 {
		return d
	}
	return d / s
}

// run computes the case with lorakit: logits, the mean loss and the
// gradient of every trainable tensor, named as torchref.py names them.
func run(t *testing.T, cfg *arch.Config, dir string, b llama.Batch, prec llama.Precision) map[string][]float32 {
	be := cpu.New(0)
	st := openST(t, filepath.Join(dir, "model.safetensors"))
	m, err := llama.New(be, cfg, tensors(st), llama.Options{Precision: prec})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ad, load, err := train.OpenAdapter(dir, nil, cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ad.Attach(m, load); err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{"logits": make([]float32, b.Rows*b.Seq*cfg.Vocab)}
	if err := m.Logits(b, out["logits"]); err != nil {
		t.Fatal(err)
	}
	sum, n, err := m.Loss(b)
	if err != nil {
		t.Fatal(err)
	}
	out["loss"] = []float32{float32(sum / float64(n))}
	m.ZeroGrad()
	if _, _, err := m.ForwardBackward(b, llama.Step{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Params() {
		g := make([]float32, p.Grad.Len())
		if err := be.Download(g, p.Grad); err != nil {
			t.Fatal(err)
		}
		out["grad:"+p.Name] = g
	}
	return out
}

// writeCase writes the case's checkpoint, adapter and batch to dir.
func writeCase(t testing.TB, c refCase, dir string) (*arch.Config, llama.Batch) {
	cfg, err := arch.ParseConfig([]byte(c.config))
	if err != nil {
		t.Fatal(err)
	}
	h := fnv.New64a()
	io.WriteString(h, c.config)
	rng := rand.New(rand.NewPCG(h.Sum64(), 1))
	uni := func(n int, lo, hi float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(lo + (hi-lo)*rng.Float64())
		}
		return v
	}
	// The base: weights of about unit-scale activations.
	base := map[string]tensor{}
	for _, ti := range cfg.Tensors() {
		shape := ints(ti.Shape)
		n := int(ti.Params())
		var v []float32
		switch {
		case ti.Role == arch.RoleNorm && cfg.Norm == arch.NormGemma:
			v = uni(n, -0.3, 0.3) // applied as 1 + w
		case ti.Role == arch.RoleNorm:
			v = uni(n, 0.7, 1.3)
		case ti.Bias:
			v = uni(n, -0.2, 0.2)
		case ti.Role == arch.RoleEmbedding || ti.Role == arch.RoleLMHead:
			v = uni(n, -1, 1)
		default:
			bound := 1.7 / math.Sqrt(float64(shape[1]))
			v = uni(n, -bound, bound)
		}
		base[ti.Name] = tensor{shape, v}
	}
	writeST(t, filepath.Join(dir, "model.safetensors"), base, "")
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(c.config), 0o644); err != nil {
		t.Fatal(err)
	}
	// The adapter: structure and config from pkg/train, random tensors.
	var ad *train.Adapter
	a := c.adapter
	switch {
	case a.virtual != "":
		ad, err = train.NewVirtualAdapter(cfg, train.VirtualOptions{Method: a.virtual, Tokens: 3})
	case a.ia3:
		ad, err = train.NewIA3Adapter(cfg)
	default:
		ad, err = train.NewAdapter(cfg, train.AdapterOptions{Rank: 4, Alpha: 6, Targets: a.targets, DoRA: a.dora, Bias: a.bias})
	}
	if err != nil {
		t.Fatal(err)
	}
	shapes := map[string]arch.Linear{}
	for _, l := range cfg.Linears() {
		shapes[l.Module] = l
	}
	adapter := map[string]tensor{}
	for _, s := range ad.Specs {
		p := cfg.ModulePath(s.Layer, s.Module)
		out, in := int(shapes[s.Module].Out), int(shapes[s.Module].In)
		switch {
		case s.IA3 && s.FeedForward:
			adapter[p+llama.SuffixIA3] = tensor{[]int{1, in}, uni(in, 0.6, 1.4)}
		case s.IA3:
			adapter[p+llama.SuffixIA3] = tensor{[]int{out, 1}, uni(out, 0.6, 1.4)}
		case s.Rank > 0:
			adapter[p+llama.SuffixA] = tensor{[]int{s.Rank, in}, uni(s.Rank*in, -0.5, 0.5)}
			adapter[p+llama.SuffixB] = tensor{[]int{out, s.Rank}, uni(out*s.Rank, -0.5, 0.5)}
			if s.DoRA {
				adapter[p+llama.SuffixMagnitude] = tensor{[]int{out}, uni(out, 0.5, 2)}
			}
		}
		if s.Bias && a.fileBias {
			suffix := llama.SuffixBias
			if s.Rank > 0 {
				suffix = llama.SuffixBaseBias
			}
			v := slices.Clone(base[p+".bias"].data)
			for i := range v {
				v[i] += float32(0.1 * (2*rng.Float64() - 1))
			}
			adapter[p+suffix] = tensor{[]int{out}, v}
		}
	}
	if a.virtual != "" { // PEFT's one unprefixed tensor, [P, hidden] or [P, layers·2·kv]
		width := cfg.Hidden
		if a.virtual == train.MethodPrefix {
			if width, err = llama.PrefixWidth(cfg); err != nil {
				t.Fatal(err)
			}
		}
		writeST(t, filepath.Join(dir, "adapter_model.safetensors"),
			map[string]tensor{llama.PromptEmbeddings: {[]int{3, width}, uni(3*width, -1, 1)}}, "")
	} else {
		writeST(t, filepath.Join(dir, "adapter_model.safetensors"), adapter, "base_model.model.")
	}
	raw, err := ad.ConfigJSON()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	// The batch: row 0 packs two documents, row 1 holds one; labels skip
	// each document's first token and a few others. With virtual tokens
	// nothing is packed, positions are the model's, and the first label of
	// row 1 is kept (the last virtual token predicts it).
	b := llama.Batch{Rows: 2, Seq: c.seq}
	var ids, labels, pos [][]int32
	for r := range b.Rows {
		starts := map[int]bool{0: true}
		if r == 0 && a.virtual == "" {
			starts[c.seq/2-2] = true
		}
		var ri, rl, rp []int32
		p := int32(0)
		for i := range c.seq {
			if starts[i] {
				p = 0
			}
			id := int32(rng.IntN(cfg.Vocab))
			l := id
			if (starts[i] && !(a.virtual != "" && r == 1)) || rng.IntN(8) == 0 {
				l = -100
			}
			ri, rl, rp = append(ri, id), append(rl, l), append(rp, p)
			p++
		}
		ids, labels, pos = append(ids, ri), append(labels, rl), append(pos, rp)
		b.IDs, b.Labels, b.Positions = append(b.IDs, ri...), append(b.Labels, rl...), append(b.Positions, rp...)
	}
	batch := map[string]any{"input_ids": ids, "labels": labels, "position_ids": pos}
	if a.virtual != "" {
		delete(batch, "position_ids")
		b.Positions = nil
	}
	js, _ := json.Marshal(batch)
	if err := os.WriteFile(filepath.Join(dir, "batch.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg, b
}

type tensor struct {
	shape []int
	data  []float32
}

func ints(s []int64) []int {
	out := make([]int, len(s))
	for i, d := range s {
		out[i] = int(d)
	}
	return out
}

func writeST(t testing.TB, path string, ts map[string]tensor, prefix string) {
	m := map[string]safetensors.Tensor{}
	for name, x := range ts {
		shape := make([]int64, len(x.shape))
		for i, d := range x.shape {
			shape[i] = int64(d)
		}
		m[prefix+name] = safetensors.Tensor{DType: dtype.F32, Shape: shape, Data: num.F32Bytes(x.data)}
	}
	var buf bytes.Buffer
	if err := safetensors.Encode(&buf, map[string]string{"format": "pt"}, m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func openST(t testing.TB, path string) *safetensors.File {
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readST(t testing.TB, path string) map[string][]float32 {
	f := openST(t, path)
	out := map[string][]float32{}
	for _, name := range f.Header.Names() {
		v, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = v
	}
	return out
}

// tensors is a llama.Loader over a safetensors file.
func tensors(f *safetensors.File) llama.Loader {
	return func(name string) ([]float32, []int, error) {
		ti, ok := f.Info(name)
		if !ok {
			return nil, nil, fmt.Errorf("%s: %w", name, llama.ErrNotFound)
		}
		v, err := f.Float32(name)
		return v, ints(ti.Shape), err
	}
}

func copyFile(t testing.TB, from, to string) {
	b, err := os.ReadFile(from)
	if err == nil {
		err = os.WriteFile(to, b, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// python is the interpreter with torch: /usr/bin/python3 (Debian's
// python3-torch), or $LORAKIT_TORCH_PYTHON.
func python() string {
	if p := os.Getenv("LORAKIT_TORCH_PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

// torchAvailable reports whether python() imports torch.
func torchAvailable() bool {
	return exec.Command(python(), "-c", "import torch").Run() == nil
}
