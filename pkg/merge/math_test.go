package merge

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tool"
)

// loraMod is a synthetic LoRA module: A (r, in), B (out, r).
type loraMod struct {
	path        string
	r, in, out  int
	a, b        []float32
	mag         []float32 // DoRA magnitude, when set
	embed       bool      // lora_embedding_A/B (in = vocabulary, out = dim)
	transposedA bool
}

func newLoRA(g *rng32, path string, r, in, out int) *loraMod {
	return &loraMod{path: path, r: r, in: in, out: out, a: g.vec(r*in, 0.3), b: g.vec(out*r, 0.2)}
}

func (m *loraMod) put(ts map[string]safetensors.Tensor) {
	pa, pb := ".lora_A.weight", ".lora_B.weight"
	if m.embed {
		pa, pb = ".lora_embedding_A", ".lora_embedding_B"
	}
	ts[peft.Prefix+m.path+pa] = tf32([]int64{int64(m.r), int64(m.in)}, m.a)
	ts[peft.Prefix+m.path+pb] = tf32([]int64{int64(m.out), int64(m.r)}, m.b)
	if m.mag != nil {
		ts[peft.Prefix+m.path+".lora_magnitude_vector"] = tf32([]int64{int64(len(m.mag))}, m.mag)
	}
}

// delta is f32(f32(B·A)[o, i] · scale), the spec's definition.
func (m *loraMod) delta(o, i int, scale float32) float32 {
	return refDelta(func(k int) float32 { return m.b[o*m.r+k] }, func(k int) float32 { return m.a[k*m.in+i] }, m.r, scale)
}

// checkMatrix compares got (rows×cols) with want(i, j) bit for bit.
func checkMatrix(t *testing.T, name string, got []float32, rows, cols int, want func(i, j int) float32) {
	t.Helper()
	if len(got) != rows*cols {
		t.Fatalf("%s: %d values, want %d×%d", name, len(got), rows, cols)
	}
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			if w := want(i, j); math.Float32bits(got[i*cols+j]) != math.Float32bits(w) {
				t.Fatalf("%s[%d,%d] = %v, want %v", name, i, j, got[i*cols+j], w)
			}
		}
	}
}

func llamaConfig(extra map[string]any) map[string]any {
	c := map[string]any{"model_type": "llama", "architectures": []string{"LlamaForCausalLM"}, "dtype": "float32", "tie_word_embeddings": false}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// columnFactors is DoRA's per-column factor mag[c] / ‖column c‖ of the
// rows×cols merged weight, the norm a float32 sum over the rows in order
// (torch's reduction of a strided dimension).
func columnFactors(rows, cols int, mag []float32, merged func(i, c int) float32) []float32 {
	factor := make([]float32, cols)
	for c := range factor {
		var s float32
		for i := 0; i < rows; i++ {
			x := merged(i, c)
			s = float32(s + float32(x*x))
		}
		factor[c] = mag[c] / float32(math.Sqrt(float64(s)))
	}
	return factor
}

// TestScalingRules: rsLoRA and rank/alpha patterns (spec §5, §6), with r
// taken from the tensor shape and α from the first matching pattern.
func TestScalingRules(t *testing.T) {
	g := &rng32{1}
	dir := t.TempDir()
	const out, in = 12, 20
	base := map[string]safetensors.Tensor{}
	w := map[string][]float32{}
	for _, name := range []string{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"} {
		w[name] = g.vec(out*in, 1)
		base[name+".weight"] = tf32([]int64{out, in}, w[name])
	}
	basePath := writeModel(t, filepath.Join(dir, "base"), llamaConfig(nil), base)
	for _, rs := range []bool{false, true} {
		ts := map[string]safetensors.Tensor{}
		mods := map[string]*loraMod{}
		for name := range w {
			r := 2
			if strings.HasSuffix(name, "q_proj") {
				r = 4 // rank_pattern
			}
			mods[name] = newLoRA(g, name, r, in, out)
			mods[name].put(ts)
		}
		cfg := map[string]any{"r": 2, "lora_alpha": 8, "use_rslora": rs, "target_modules": []string{"q_proj", "v_proj"},
			"rank_pattern": map[string]any{"q_proj": 4}, "alpha_pattern": map[string]any{"layers.0.self_attn.v_proj": 32}}
		ad := writeAdapter(t, filepath.Join(dir, "ad"), cfg, ts)
		outPath := filepath.Join(dir, "out.safetensors")
		mergeTo(t, basePath, one(ad), outPath, Options{})
		got, _ := tensorsOf(t, outPath)
		for name, m := range mods {
			alpha := 8.0
			if name == "model.layers.0.self_attn.v_proj" {
				alpha = 32
			}
			s := alpha / float64(m.r)
			if rs {
				s = alpha / math.Sqrt(float64(m.r))
			}
			checkMatrix(t, name, got[name+".weight"], out, in, func(o, i int) float32 {
				return float32(w[name][o*in+i] + m.delta(o, i, float32(s)))
			})
		}
	}
}

// TestSeveralAdapters: W' = W0 + Σ wᵢ·sᵢ·BᵢAᵢ, each delta rounded once to
// float32 with the weight folded into its scaling, added in order.
func TestSeveralAdapters(t *testing.T) {
	g := &rng32{2}
	dir := t.TempDir()
	const out, in = 9, 33
	q, v := "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"
	wq, wv := g.vec(out*in, 1), g.vec(out*in, 1)
	basePath := writeModel(t, filepath.Join(dir, "base"), llamaConfig(nil), map[string]safetensors.Tensor{
		q + ".weight": tf32([]int64{out, in}, wq), v + ".weight": tf32([]int64{out, in}, wv)})
	m1q, m1v, m2q := newLoRA(g, q, 3, in, out), newLoRA(g, v, 3, in, out), newLoRA(g, q, 5, in, out)
	t1, t2 := map[string]safetensors.Tensor{}, map[string]safetensors.Tensor{}
	m1q.put(t1)
	m1v.put(t1)
	m2q.put(t2)
	a1 := writeAdapter(t, filepath.Join(dir, "a1"), map[string]any{"r": 3, "lora_alpha": 6, "target_modules": []string{"q_proj", "v_proj"}}, t1)
	a2 := writeAdapter(t, filepath.Join(dir, "a2"), map[string]any{"r": 5, "lora_alpha": 20, "target_modules": []string{"q_proj"}}, t2)
	outPath := filepath.Join(dir, "out.safetensors")
	mergeTo(t, basePath, []adapterIn{{a1, 0.7}, {a2, -0.3}}, outPath, Options{})
	got, _ := tensorsOf(t, outPath)
	s1, s2 := float32(0.7*2.0), float32(-0.3*4.0)
	checkMatrix(t, q, got[q+".weight"], out, in, func(o, i int) float32 {
		return float32(float32(wq[o*in+i]+m1q.delta(o, i, s1)) + m2q.delta(o, i, s2))
	})
	checkMatrix(t, v, got[v+".weight"], out, in, func(o, i int) float32 { return float32(wv[o*in+i] + m1v.delta(o, i, s1)) })

	// The order of equal-weight adapters changes nothing but f32 rounding of
	// the sum; a single adapter with weight 1 is the plain merge.
	single := filepath.Join(dir, "single.safetensors")
	mergeTo(t, basePath, []adapterIn{{a2, 1}}, single, Options{})
	got, _ = tensorsOf(t, single)
	checkMatrix(t, q, got[q+".weight"], out, in, func(o, i int) float32 { return float32(wq[o*in+i] + m2q.delta(o, i, 4)) })
}

// TestFanInFanOut: a GPT-2 Conv1D weight stored (in, out); ΔW = (B·A)ᵀ·s;
// DoRA norms per output feature, i.e. per stored column.
func TestFanInFanOut(t *testing.T) {
	g := &rng32{3}
	dir := t.TempDir()
	const in, out, r = 16, 24, 4
	name := "transformer.h.0.attn.c_attn"
	w := g.vec(in*out, 1)
	basePath := writeModel(t, filepath.Join(dir, "base"), map[string]any{"model_type": "gpt2"}, map[string]safetensors.Tensor{
		name + ".weight": tf32([]int64{in, out}, w)})
	m := newLoRA(g, name, r, in, out)
	for _, dora := range []bool{false, true} {
		ts := map[string]safetensors.Tensor{}
		if dora {
			m.mag = g.vec(out, 1)
			for i := range m.mag {
				m.mag[i] = 2 + m.mag[i]
			}
		}
		m.put(ts)
		ad := writeAdapter(t, filepath.Join(dir, "ad"), map[string]any{"r": r, "lora_alpha": 8, "fan_in_fan_out": true, "use_dora": dora, "target_modules": []string{"c_attn"}}, ts)
		outPath := filepath.Join(dir, "out.safetensors")
		mergeTo(t, basePath, one(ad), outPath, Options{})
		got, _ := tensorsOf(t, outPath)
		merged := func(i, o int) float32 { return float32(w[i*out+o] + m.delta(o, i, 2)) }
		want := merged
		if dora {
			factor := columnFactors(in, out, m.mag, merged)
			want = func(i, o int) float32 { return float32(factor[o] * merged(i, o)) }
		}
		checkMatrix(t, name, got[name+".weight"], in, out, want)
	}
}

// TestEmbeddingLoRA: lora_embedding_A (r, V), lora_embedding_B (D, r);
// ΔW = (B·A)ᵀ·s on the (V, D) weight; DoRA norms over the vocabulary.
func TestEmbeddingLoRA(t *testing.T) {
	g := &rng32{4}
	dir := t.TempDir()
	const vocab, dim, r = 30, 8, 3
	name := "model.embed_tokens"
	w := g.vec(vocab*dim, 1)
	basePath := writeModel(t, filepath.Join(dir, "base"), llamaConfig(nil), map[string]safetensors.Tensor{
		name + ".weight": tf32([]int64{vocab, dim}, w), "lm_head.weight": tf32([]int64{vocab, dim}, g.vec(vocab*dim, 1))})
	m := newLoRA(g, name, r, vocab, dim)
	m.embed = true
	for _, dora := range []bool{false, true} {
		ts := map[string]safetensors.Tensor{}
		if dora {
			m.mag = g.vec(dim, 1)
			for i := range m.mag {
				m.mag[i] = 5 + m.mag[i]
			}
		}
		m.put(ts)
		ad := writeAdapter(t, filepath.Join(dir, "ad"), map[string]any{"r": r, "lora_alpha": 6, "use_dora": dora, "target_modules": []string{"embed_tokens"}}, ts)
		outPath := filepath.Join(dir, "out.safetensors")
		mergeTo(t, basePath, one(ad), outPath, Options{})
		got, _ := tensorsOf(t, outPath)
		merged := func(v, d int) float32 { return float32(w[v*dim+d] + m.delta(d, v, 2)) }
		want := merged
		if dora {
			factor := columnFactors(vocab, dim, m.mag, merged)
			want = func(v, d int) float32 { return float32(factor[d] * merged(v, d)) }
		}
		checkMatrix(t, name, got[name+".weight"], vocab, dim, want)
	}
}

// TestModulesToSaveAndBiases: full tensors replace the base's (converted to
// the base dtype once), lora_B.bias adds s·bias, bias="all" tensors replace.
func TestModulesToSaveAndBiases(t *testing.T) {
	g := &rng32{5}
	dir := t.TempDir()
	const vocab, dim = 10, 8
	q := "model.layers.0.self_attn.q_proj"
	k := "model.layers.0.self_attn.k_proj"
	wq, bq, bk := g.vec(dim*dim, 1), g.vec(dim, 1), g.vec(dim, 1)
	bf := func(shape []int64, v []float32) safetensors.Tensor {
		b := make([]byte, 2*len(v))
		dtype.FromF32(b, v, dtype.BF16)
		return safetensors.Tensor{DType: dtype.BF16, Shape: shape, Data: b}
	}
	base := map[string]safetensors.Tensor{
		"lm_head.weight": bf([]int64{vocab, dim}, g.vec(vocab*dim, 1)), "model.embed_tokens.weight": bf([]int64{vocab, dim}, g.vec(vocab*dim, 1)),
		q + ".weight": bf([]int64{dim, dim}, wq), q + ".bias": bf([]int64{dim}, bq), k + ".weight": bf([]int64{dim, dim}, g.vec(dim*dim, 1)), k + ".bias": bf([]int64{dim}, bk),
	}
	basePath := writeModel(t, filepath.Join(dir, "base"), llamaConfig(map[string]any{"dtype": "bfloat16"}), base)
	baseVals, _ := tensorsOf(t, basePath)
	m := newLoRA(g, q, 2, dim, dim)
	ts := map[string]safetensors.Tensor{}
	m.put(ts)
	lb := g.vec(dim, 1)
	ts[peft.Prefix+q+".lora_B.bias"] = tf32([]int64{dim}, lb)
	head := g.vec(vocab*dim, 1)
	ts[peft.Prefix+"lm_head.weight"] = tf32([]int64{vocab, dim}, head)
	kb := g.vec(dim, 1)
	ts[peft.Prefix+k+".bias"] = tf32([]int64{dim}, kb)
	ad := writeAdapter(t, filepath.Join(dir, "ad"), map[string]any{"r": 2, "lora_alpha": 4, "lora_bias": true, "bias": "all", "modules_to_save": []string{"lm_head"}, "target_modules": []string{"q_proj"}}, ts)
	outPath := filepath.Join(dir, "out")
	s := mergeTo(t, basePath, one(ad), outPath, Options{})
	if len(s.Adapters[0].Replaced) != 2 {
		t.Errorf("replaced %v", s.Adapters[0].Replaced)
	}
	got, infos := tensorsOf(t, outPath)
	round := func(x float32) float32 { return dtype.BF16ToF32(dtype.F32ToBF16(x)) }
	checkMatrix(t, "lm_head", got["lm_head.weight"], vocab, dim, func(i, j int) float32 { return round(head[i*dim+j]) })
	checkMatrix(t, k+".bias", got[k+".bias"], 1, dim, func(_, j int) float32 { return round(kb[j]) })
	checkMatrix(t, q+".bias", got[q+".bias"], 1, dim, func(_, j int) float32 {
		return round(float32(baseVals[q+".bias"][j] + float32(lb[j]*2)))
	})
	checkMatrix(t, q+".weight", got[q+".weight"], dim, dim, func(o, i int) float32 {
		return round(float32(baseVals[q+".weight"][o*dim+i] + m.delta(o, i, 2)))
	})
	checkMatrix(t, "embed", got["model.embed_tokens.weight"], vocab, dim, func(i, j int) float32 { return baseVals["model.embed_tokens.weight"][i*dim+j] })
	for name, ti := range infos {
		if ti.DType != dtype.BF16 {
			t.Errorf("%s: %s, want BF16 (auto keeps the base dtype)", name, ti.DType)
		}
	}
}

// TestIA3: an ordinary (out, 1) vector scales rows and the bias; a
// feedforward (1, in) vector scales columns (spec §7.4).
func TestIA3(t *testing.T) {
	g := &rng32{6}
	dir := t.TempDir()
	const hid, inter = 8, 12
	k, down := "model.layers.0.self_attn.k_proj", "model.layers.0.mlp.down_proj"
	wk, bk, wd := g.vec(hid*hid, 1), g.vec(hid, 1), g.vec(hid*inter, 1)
	basePath := writeModel(t, filepath.Join(dir, "base"), llamaConfig(nil), map[string]safetensors.Tensor{
		k + ".weight": tf32([]int64{hid, hid}, wk), k + ".bias": tf32([]int64{hid}, bk), down + ".weight": tf32([]int64{hid, inter}, wd)})
	lk, ld := g.vec(hid, 1), g.vec(inter, 1)
	ad := writeAdapter(t, filepath.Join(dir, "ad"), map[string]any{"peft_type": "IA3", "target_modules": []string{"k_proj", "down_proj"}, "feedforward_modules": []string{"down_proj"}},
		map[string]safetensors.Tensor{peft.Prefix + k + ".ia3_l": tf32([]int64{hid, 1}, lk), peft.Prefix + down + ".ia3_l": tf32([]int64{1, inter}, ld)})
	outPath := filepath.Join(dir, "out.safetensors")
	mergeTo(t, basePath, one(ad), outPath, Options{})
	got, _ := tensorsOf(t, outPath)
	checkMatrix(t, k, got[k+".weight"], hid, hid, func(o, i int) float32 { return float32(wk[o*hid+i] * lk[o]) })
	checkMatrix(t, k+".bias", got[k+".bias"], 1, hid, func(_, o int) float32 { return float32(bk[o] * lk[o]) })
	checkMatrix(t, down, got[down+".weight"], hid, inter, func(o, i int) float32 { return float32(wd[o*inter+i] * ld[i]) })
}

// TestTiedEmbeddings: spec §7.5. A LoRA on lm_head of a tied model writes
// a separate lm_head.weight, leaves the embedding alone and unties; trainable
// tokens keep the tie.
func TestTiedEmbeddings(t *testing.T) {
	g := &rng32{7}
	dir := t.TempDir()
	const vocab, dim = 16, 8
	emb := g.vec(vocab*dim, 1)
	basePath := writeModel(t, filepath.Join(dir, "base"), llamaConfig(map[string]any{"tie_word_embeddings": true}), map[string]safetensors.Tensor{
		"model.embed_tokens.weight": tf32([]int64{vocab, dim}, emb), "model.norm.weight": tf32([]int64{dim}, g.vec(dim, 1))})
	m := newLoRA(g, "lm_head", 2, dim, vocab)
	ts := map[string]safetensors.Tensor{}
	m.put(ts)
	ad := writeAdapter(t, filepath.Join(dir, "ad"), map[string]any{"r": 2, "lora_alpha": 2, "target_modules": []string{"lm_head"}}, ts)
	outPath := filepath.Join(dir, "out")
	s := mergeTo(t, basePath, one(ad), outPath, Options{})
	if !s.Untied {
		t.Error("summary does not say the embeddings were untied")
	}
	got, _ := tensorsOf(t, outPath)
	checkMatrix(t, "lm_head", got["lm_head.weight"], vocab, dim, func(o, i int) float32 { return float32(emb[o*dim+i] + m.delta(o, i, 1)) })
	checkMatrix(t, "embed", got["model.embed_tokens.weight"], vocab, dim, func(o, i int) float32 { return emb[o*dim+i] })
	cfg, _ := os.ReadFile(filepath.Join(outPath, "config.json"))
	if tie, present := configTie(cfg); tie || !present {
		t.Errorf("tie_word_embeddings = %v (present %v), want false", tie, present)
	}

	// Trainable tokens replace embedding rows and keep the tie.
	delta := g.vec(2*dim, 1)
	ad2 := writeAdapter(t, filepath.Join(dir, "ad2"), map[string]any{"r": 2, "lora_alpha": 2, "target_modules": []string{"q_proj"}, "trainable_token_indices": []int{3, 11}},
		map[string]safetensors.Tensor{peft.Prefix + "model.embed_tokens.token_adapter.trainable_tokens_delta": tf32([]int64{2, dim}, delta)})
	out2 := filepath.Join(dir, "out2")
	if s := mergeTo(t, basePath, one(ad2), out2, Options{}); s.Untied {
		t.Error("trainable tokens untied the embeddings")
	}
	got, infos := tensorsOf(t, out2)
	if _, ok := infos["lm_head.weight"]; ok {
		t.Error("lm_head.weight written for a tied model")
	}
	checkMatrix(t, "embed", got["model.embed_tokens.weight"], vocab, dim, func(o, i int) float32 {
		switch o {
		case 3:
			return delta[i]
		case 11:
			return delta[dim+i]
		}
		return emb[o*dim+i]
	})
}

// TestMismatch: every unmatched key is listed, nothing is written.
func TestMismatch(t *testing.T) {
	g := &rng32{8}
	dir := t.TempDir()
	q := "model.layers.0.self_attn.q_proj"
	basePath := writeModel(t, filepath.Join(dir, "base"), llamaConfig(nil), map[string]safetensors.Tensor{
		q + ".weight": tf32([]int64{8, 8}, g.vec(64, 1)), "model.layers.0.mlp.up_proj.weight": {DType: dtype.I8, Shape: []int64{4, 8}, Data: make([]byte, 32)}})
	ts := map[string]safetensors.Tensor{}
	newLoRA(g, q, 2, 8, 6).put(ts)                                 // wrong out
	newLoRA(g, "model.layers.7.self_attn.q_proj", 2, 8, 8).put(ts) // no such layer
	newLoRA(g, "model.layers.0.mlp.up_proj", 2, 8, 4).put(ts)      // integer base
	newLoRA(g, "language_model.model.layers.0.q", 2, 8, 8).put(ts) // VLM nesting
	ad := writeAdapter(t, filepath.Join(dir, "ad"), map[string]any{"r": 2, "lora_alpha": 2}, ts)
	outPath := filepath.Join(dir, "out")
	_, err := tryMerge(basePath, one(ad), outPath, Options{}, nil)
	if !errors.Is(err, ErrMismatch) || errclass.Of(err) != errclass.Invalid {
		t.Fatalf("err = %v (class %v), want ErrMismatch, invalid input", err, errclass.Of(err))
	}
	for _, key := range []string{q + ".lora_A.weight", "model.layers.7.self_attn.q_proj.lora_B.weight", "up_proj.lora_A.weight", "language_model.model.layers.0.q.lora_A.weight", "4 adapter key(s)"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %q: %v", key, err)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Error("error spans several lines")
	}
	if _, err := os.Stat(outPath); !os.IsNotExist(err) {
		t.Error("output written despite the mismatch")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "tmp") {
			t.Errorf("temporary output %s left behind", e.Name())
		}
	}
}

// TestRefused: spec §2.4 — adapters lorakit cannot merge correctly exit 3
// naming the key.
func TestRefused(t *testing.T) {
	g := &rng32{9}
	dir := t.TempDir()
	q := "model.layers.0.self_attn.q_proj"
	basePath := writeModel(t, filepath.Join(dir, "base"), llamaConfig(nil), map[string]safetensors.Tensor{q + ".weight": tf32([]int64{8, 8}, g.vec(64, 1))})
	ts := map[string]safetensors.Tensor{}
	newLoRA(g, q, 2, 8, 8).put(ts)
	for _, c := range []struct {
		cfg  map[string]any
		want error
		key  string
	}{
		{map[string]any{"use_qalora": true}, peft.ErrUnsupportedVariant, "use_qalora"},
		{map[string]any{"init_lora_weights": "pissa"}, peft.ErrMutatedBase, "init_lora_weights"},
		{map[string]any{"target_parameters": []string{"experts"}}, peft.ErrUnsupportedFeature, "target_parameters"},
		{map[string]any{"layer_replication": [][]int{{0, 1}}}, peft.ErrUnsupportedFeature, "layer_replication"},
		{map[string]any{"peft_type": "LOHA"}, peft.ErrUnsupportedType, "peft_type"},
		{map[string]any{"use_dora": true}, ErrMismatch, "lora_magnitude_vector"},
	} {
		cfg := map[string]any{"r": 2, "lora_alpha": 2}
		for k, v := range c.cfg {
			cfg[k] = v
		}
		if c.cfg["peft_type"] != nil {
			cfg["r"], cfg["lora_alpha"] = nil, nil
			delete(cfg, "r")
			delete(cfg, "lora_alpha")
		}
		ad := writeAdapter(t, filepath.Join(dir, c.key), cfg, ts)
		_, err := tryMerge(basePath, one(ad), filepath.Join(dir, "out"), Options{}, nil)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.key) || errclass.Of(err) != errclass.Invalid {
			t.Errorf("%v: err = %v (class %v), want %v naming %q", c.cfg, err, errclass.Of(err), c.want, c.key)
		}
	}
	// No adapter_config.json.
	noCfg := filepath.Join(dir, "nocfg")
	writeAdapter(t, noCfg, nil, ts)
	os.Remove(filepath.Join(noCfg, "adapter_config.json"))
	if _, err := tryMerge(basePath, one(noCfg), filepath.Join(dir, "out"), Options{}, nil); !errors.Is(err, model.ErrNoAdapterConfig) {
		t.Errorf("no config: %v", err)
	}
}

// TestOutputDType: --dtype rounds every float tensor once, from the f32
// merge, and config.json follows.
func TestOutputDType(t *testing.T) {
	fx := fixtures(t)
	dir := t.TempDir()
	f32Out := filepath.Join(dir, "f32.safetensors")
	mergeTo(t, filepath.Join(fx, "peft/tiny"), one(filepath.Join(fx, "peft/lora")), f32Out, Options{})
	ref, _ := tensorsOf(t, f32Out)
	for _, d := range []dtype.DType{dtype.BF16, dtype.F16} {
		out := filepath.Join(dir, string(d))
		mergeTo(t, filepath.Join(fx, "peft/tiny"), one(filepath.Join(fx, "peft/lora")), out, Options{DType: d})
		got, infos := tensorsOf(t, out)
		for name, v := range ref {
			if infos[name].DType != d {
				t.Fatalf("%s: %s", name, infos[name].DType)
			}
			b := make([]byte, len(v)*2)
			dtype.FromF32(b, v, d)
			w := make([]float32, len(v))
			dtype.ToF32(w, b, d)
			if !equalF32(got[name], w) {
				t.Fatalf("%s: not the %s rounding of the f32 merge", name, d)
			}
		}
		cfg, _ := os.ReadFile(filepath.Join(out, "config.json"))
		if !strings.Contains(string(cfg), `"dtype": "`+d.TorchName()+`"`) {
			t.Errorf("config.json dtype not updated:\n%s", cfg)
		}
	}
}

// TestChunkedTensors: a weight of several engine chunks (row blocks of
// uneven count, a partial last chunk) merges exactly as one whole: LoRA
// and DoRA (norms per row, and per column over every chunk's rows), on a
// float32 and a 4-bit base whose chunks start inside quantization blocks.
func TestChunkedTensors(t *testing.T) {
	g := &rng32{11}
	dir := t.TempDir()
	const rows, cols, r = 301, 2003, 4 // 301 rows: 32-row blocks, 128-row chunks
	if rows*cols < 2*chunkElems || blockRows(cols)*cols%64 == 0 {
		t.Fatal("the shape must span several chunks, and blocks must end inside 4-bit blocks")
	}
	w := g.vec(rows*cols, 1)
	q, err := nf4.QuantizeTensor(w, []int64{rows, cols}, nf4.Options{Type: nf4.NF4, Blocksize: 64, DoubleQuant: true, DType: dtype.F32})
	if err != nil {
		t.Fatal(err)
	}
	w4 := make([]float32, rows*cols)
	if err := nf4.Dequantize(w4, q.Packed, q.State.BlockAbsmax(), 64, &q.State.Map); err != nil {
		t.Fatal(err)
	}
	const name = "model.layers.0.self_attn.q_proj"
	floatBase := writeModel(t, filepath.Join(dir, "f32"), llamaConfig(nil), map[string]safetensors.Tensor{
		name + ".weight": tf32([]int64{rows, cols}, w)})
	ts4 := map[string]safetensors.Tensor{}
	for _, nt := range q.Tensors(name + ".weight") {
		ts4[nt.Name] = safetensors.Tensor{DType: nt.DType, Shape: nt.Shape, Data: nt.Data}
	}
	quantBase := writeModel(t, filepath.Join(dir, "nf4"), llamaConfig(map[string]any{"quantization_config": map[string]any{
		"quant_method": "bitsandbytes", "load_in_4bit": true, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": true}}), ts4)
	m := newLoRA(g, name, r, cols, rows)
	mag := g.vec(rows, 1)
	for i := range mag {
		mag[i] += 3
	}
	for _, base := range []struct {
		path string
		w    []float32
	}{{floatBase, w}, {quantBase, w4}} {
		for _, dora := range []bool{false, true} {
			m.mag = nil
			if dora {
				m.mag = mag
			}
			ts := map[string]safetensors.Tensor{}
			m.put(ts)
			ad := writeAdapter(t, filepath.Join(dir, "ad"), map[string]any{"r": r, "lora_alpha": 8, "use_dora": dora}, ts)
			out := filepath.Join(dir, "out.safetensors")
			mergeTo(t, base.path, one(ad), out, Options{Env: tool.Env{Threads: 2}})
			got, _ := tensorsOf(t, out)
			merged := func(o, i int) float32 { return float32(base.w[o*cols+i] + m.delta(o, i, 2)) }
			want := merged
			if dora {
				factor := make([]float32, rows)
				row := make([]float32, cols)
				for o := range factor {
					for i := range row {
						row[i] = merged(o, i)
					}
					factor[o] = mag[o] / rowNorm(row)
				}
				want = func(o, i int) float32 { return float32(factor[o] * merged(o, i)) }
			}
			checkMatrix(t, fmt.Sprintf("%s (dora %v)", base.path, dora), got[name+".weight"], rows, cols, want)
		}
	}

	// Fan-in-fan-out DoRA: norms per stored column, over all chunks.
	const c = "transformer.h.0.attn.c_attn"
	gpt := writeModel(t, filepath.Join(dir, "gpt2"), map[string]any{"model_type": "gpt2"}, map[string]safetensors.Tensor{
		c + ".weight": tf32([]int64{cols, rows}, w)})
	mc := newLoRA(g, c, r, cols, rows)
	mc.mag = mag
	ts := map[string]safetensors.Tensor{}
	mc.put(ts)
	ad := writeAdapter(t, filepath.Join(dir, "ad"), map[string]any{"r": r, "lora_alpha": 8, "fan_in_fan_out": true, "use_dora": true, "target_modules": []string{"c_attn"}}, ts)
	out := filepath.Join(dir, "gpt2.safetensors")
	mergeTo(t, gpt, one(ad), out, Options{Env: tool.Env{Threads: 2}})
	got, _ := tensorsOf(t, out)
	merged := func(i, o int) float32 { return float32(w[i*rows+o] + mc.delta(o, i, 2)) }
	factor := columnFactors(cols, rows, mag, merged)
	checkMatrix(t, c, got[c+".weight"], cols, rows, func(i, o int) float32 { return float32(factor[o] * merged(i, o)) })
}
