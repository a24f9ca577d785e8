package export

// A float64 reference forward pass of a Hugging Face Llama (eager attention, NEOX-style
// rotary, llama3 rope scaling as transformers computes it), used to make reference
// logits for configurations the fixtures do not cover (llama3 rope, rsLoRA and
// alpha_pattern scaling, 4-bit inputs). It is itself checked against the fixtures'
// transformers logits.

import (
	"math"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/safetensors"
)

type refWeights map[string][]float32

// loadWeights reads every tensor of a safetensors file as float32.
func loadWeights(t testing.TB, path string) refWeights {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := refWeights{}
	for _, ti := range f.Header.Tensors {
		if !ti.DType.IsFloat() {
			continue
		}
		v, err := f.Float32(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		w[ti.Name] = v
	}
	return w
}

func (w refWeights) clone() refWeights {
	c := refWeights{}
	for k, v := range w {
		c[k] = append([]float32(nil), v...)
	}
	return c
}

// refInvFreq is transformers' inverse rotary frequencies (default or llama3), in float64.
func refInvFreq(cfg *arch.Config) []float64 {
	dim := cfg.HeadDim
	s := cfg.Attention[0].Rope
	inv := make([]float64, dim/2)
	for i := range inv {
		inv[i] = 1 / math.Pow(s.Theta, float64(2*i)/float64(dim))
	}
	if s.Type != arch.RopeLlama3 {
		return inv
	}
	old := float64(s.OriginalMaxPositions)
	lowWL, highWL := old/s.LowFreqFactor, old/s.HighFreqFactor
	for i, f := range inv {
		wl := 2 * math.Pi / f
		switch {
		case wl < highWL:
		case wl > lowWL:
			inv[i] = f / s.Factor
		default:
			smooth := (old/wl - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
			inv[i] = (1-smooth)*f/s.Factor + smooth*f
		}
	}
	return inv
}

// refLogits runs the model on ids and returns logits [len(ids)][vocab].
func refLogits(cfg *arch.Config, w refWeights, ids []int) [][]float64 {
	D, H, KV, hd := cfg.Hidden, cfg.Heads, cfg.KVHeads, cfg.HeadDim
	T := len(ids)
	inv := refInvFreq(cfg)
	emb := w["model.embed_tokens.weight"]
	x := make([][]float64, T)
	for t, id := range ids {
		x[t] = make([]float64, D)
		for i := range D {
			x[t][i] = float64(emb[id*D+i])
		}
	}
	norm := func(v []float64, wt []float32) []float64 {
		var ss float64
		for _, a := range v {
			ss += a * a
		}
		r := 1 / math.Sqrt(ss/float64(len(v))+cfg.NormEps)
		out := make([]float64, len(v))
		for i, a := range v {
			out[i] = a * r * float64(wt[i])
		}
		return out
	}
	matvec := func(wt []float32, in []float64, rows int) []float64 {
		cols := len(in)
		out := make([]float64, rows)
		for r := range rows {
			var s float64
			for c, a := range in {
				s += float64(wt[r*cols+c]) * a
			}
			out[r] = s
		}
		return out
	}
	rope := func(v []float64, heads, pos int) {
		for h := range heads {
			b := v[h*hd : (h+1)*hd]
			for i := range hd / 2 {
				ang := float64(pos) * inv[i]
				c, s := math.Cos(ang), math.Sin(ang)
				a0, a1 := b[i], b[i+hd/2]
				b[i], b[i+hd/2] = a0*c-a1*s, a1*c+a0*s
			}
		}
	}
	for l := range cfg.Layers {
		p := "model.layers." + strconv.Itoa(l) + "."
		q, k, v := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for t := range T {
			h := norm(x[t], w[p+"input_layernorm.weight"])
			q[t] = matvec(w[p+"self_attn.q_proj.weight"], h, H*hd)
			k[t] = matvec(w[p+"self_attn.k_proj.weight"], h, KV*hd)
			v[t] = matvec(w[p+"self_attn.v_proj.weight"], h, KV*hd)
			rope(q[t], H, t)
			rope(k[t], KV, t)
		}
		for t := range T {
			att := make([]float64, H*hd)
			for h := range H {
				g := h / (H / KV)
				sc := make([]float64, t+1)
				m := math.Inf(-1)
				for u := 0; u <= t; u++ {
					var s float64
					for i := range hd {
						s += q[t][h*hd+i] * k[u][g*hd+i]
					}
					sc[u] = s / math.Sqrt(float64(hd))
					m = max(m, sc[u])
				}
				var z float64
				for u := range sc {
					sc[u] = math.Exp(sc[u] - m)
					z += sc[u]
				}
				for u := range sc {
					for i := range hd {
						att[h*hd+i] += sc[u] / z * v[u][g*hd+i]
					}
				}
			}
			o := matvec(w[p+"self_attn.o_proj.weight"], att, D)
			for i := range D {
				x[t][i] += o[i]
			}
			h := norm(x[t], w[p+"post_attention_layernorm.weight"])
			gt := matvec(w[p+"mlp.gate_proj.weight"], h, cfg.Intermediate)
			up := matvec(w[p+"mlp.up_proj.weight"], h, cfg.Intermediate)
			for i := range gt {
				gt[i] = gt[i] / (1 + math.Exp(-gt[i])) * up[i]
			}
			d := matvec(w[p+"mlp.down_proj.weight"], gt, D)
			for i := range D {
				x[t][i] += d[i]
			}
		}
	}
	lm := w["lm_head.weight"]
	if lm == nil {
		lm = emb
	}
	out := make([][]float64, T)
	for t := range T {
		out[t] = matvec(lm, norm(x[t], w["model.norm.weight"]), len(lm)/D)
	}
	return out
}

// fixtureLogits reads logits.safetensors: ids and the named logits as [row][pos][vocab].
func fixtureLogits(t testing.TB, fx string) (ids [][]int, logits map[string][][][]float64) {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(fx, "peft", "logits.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, _ := f.Info("ids")
	raw, err := f.Data("ids")
	if err != nil {
		t.Fatal(err)
	}
	rows, cols := int(info.Shape[0]), int(info.Shape[1])
	idf := make([]float32, rows*cols)
	if err := dtype.ToF32(idf, raw, dtype.I64); err != nil {
		t.Fatal(err)
	}
	ids = make([][]int, rows)
	for r := range rows {
		for c := range cols {
			ids[r] = append(ids[r], int(idf[r*cols+c]))
		}
	}
	logits = map[string][][][]float64{}
	for _, name := range []string{"base", "lora_adapter", "lora_merged", "dora_adapter", "dora_merged"} {
		ti, _ := f.Info(name)
		v, err := f.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		V := int(ti.Shape[2])
		out := make([][][]float64, rows)
		for r := range rows {
			out[r] = make([][]float64, cols)
			for c := range cols {
				out[r][c] = make([]float64, V)
				for k := range V {
					out[r][c][k] = float64(v[(r*cols+c)*V+k])
				}
			}
		}
		logits[name] = out
	}
	return ids, logits
}

// centredDiff is max |(a − mean a) − (b − mean b)| per position over the tokens where
// keep is true (all when keep is nil).
func centredDiff(a, b []float64, keep []bool) float64 {
	var ma, mb float64
	n := 0
	for i := range a {
		if keep == nil || keep[i] {
			ma += a[i]
			mb += b[i]
			n++
		}
	}
	ma /= float64(n)
	mb /= float64(n)
	d := 0.0
	for i := range a {
		if keep == nil || keep[i] {
			d = max(d, math.Abs((a[i]-ma)-(b[i]-mb)))
		}
	}
	return d
}

func refAll(cfg *arch.Config, w refWeights, ids [][]int) [][][]float64 {
	out := make([][][]float64, len(ids))
	for r, row := range ids {
		out[r] = refLogits(cfg, w, row)
	}
	return out
}

func maxDiff(a, b [][][]float64) float64 {
	d := 0.0
	for r := range a {
		for p := range a[r] {
			d = max(d, centredDiff(a[r][p], b[r][p], nil))
		}
	}
	return d
}

// TestReferenceForward checks the float64 reference against transformers' logits.
func TestReferenceForward(t *testing.T) {
	fx := testbin.Fixtures(t)
	cfg, err := checkpoint.LoadConfig(filepath.Join(fx, "peft", "tiny", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	ids, want := fixtureLogits(t, fx)
	for _, tc := range []struct{ model, logits string }{
		{"tiny", "base"}, {"lora-merged", "lora_merged"}, {"lora-merged", "lora_adapter"},
	} {
		w := loadWeights(t, filepath.Join(fx, "peft", tc.model, "model.safetensors"))
		if d := maxDiff(refAll(cfg, w, ids), want[tc.logits]); d > 2e-6 {
			t.Errorf("%s vs %s: max centred diff %.3g > 2e-6", tc.model, tc.logits, d)
		} else {
			t.Logf("%s vs %s: max centred diff %.3g", tc.model, tc.logits, d)
		}
	}
	// The reference must be able to fail: the base model does not give the LoRA logits.
	w := loadWeights(t, filepath.Join(fx, "peft", "tiny", "model.safetensors"))
	if d := maxDiff(refAll(cfg, w, ids), want["lora_adapter"]); d < 1e-2 {
		t.Errorf("base vs lora_adapter: diff %.3g, the reference cannot tell them apart", d)
	}
}
