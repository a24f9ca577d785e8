package inspect

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tool"
)

func fixtures(t testing.TB) string {
	t.Helper()
	return testbin.Fixtures(t)
}

func inspectPath(t *testing.T, path string, o Options) *Report {
	t.Helper()
	r, err := Inspect(path, o)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return r
}

func TestFixtures(t *testing.T) {
	fx := fixtures(t)
	tiny := int64(106_816)
	cases := []struct {
		path             string
		kind             string
		total, trainable int64
		check            func(*testing.T, *Report)
	}{
		{"peft/lora", "adapter", 16_384, 16_384, func(t *testing.T, r *Report) {
			if len(r.Modules) != 7 || r.DoRA || r.PEFTType != "LORA" || len(r.Layers) != 2 {
				t.Errorf("modules %+v dora %v layers %v", r.Modules, r.DoRA, r.Layers)
			}
			for _, m := range r.Modules {
				if m.Rank != 8 || m.Alpha != 16 || m.Scaling != 2 || m.Count != 2 {
					t.Errorf("module %+v", m)
				}
			}
		}},
		{"peft/dora", "adapter", 3_968, 3_968, func(t *testing.T, r *Report) {
			if !r.DoRA || len(r.Modules) != 4 || r.Modules[0].Rank != 4 || r.Modules[0].Scaling != 2 {
				t.Errorf("dora report %+v", r.Modules)
			}
		}},
		{"peft/train/plain/init", "adapter", 0, 0, nil},
		{"peft/tiny", "model", tiny, 0, func(t *testing.T, r *Report) {
			b := r.Breakdown
			if b.Embeddings != 16_384 || b.LMHead != 16_384 || b.Norms != 320 || b.Attention != 24_576 || b.MLP != 49_152 {
				t.Errorf("breakdown %+v", b)
			}
			if r.Config == nil || r.Config.KVHeads != 2 || r.DTypes["F32"] != tiny {
				t.Errorf("config %+v dtypes %v", r.Config, r.DTypes)
			}
		}},
		{"peft/tiny-bf16", "model", tiny, 0, func(t *testing.T, r *Report) {
			if r.DTypes["BF16"] != tiny {
				t.Errorf("dtypes %v", r.DTypes)
			}
		}},
		{"peft/lora-merged", "model", tiny, 0, nil},
		{"peft/dora-merged", "model", tiny, 0, nil},
		{"bnb/tiny-nf4", "quantized-model", tiny, 0, func(t *testing.T, r *Report) {
			if r.QuantType != "nf4" || r.Blocksize != 64 || r.DoubleQuant == nil || !*r.DoubleQuant || r.QuantizedParams != 73_728 {
				t.Errorf("quant %q %d %v %d", r.QuantType, r.Blocksize, r.DoubleQuant, r.QuantizedParams)
			}
		}},
		{"bnb/tiny-nf4-nodq", "quantized-model", tiny, 0, func(t *testing.T, r *Report) {
			if r.DoubleQuant == nil || *r.DoubleQuant {
				t.Errorf("nodq reported double quant")
			}
		}},
		{"bnb/tiny-nf4/dequantized.safetensors", "model", 73_728, 0, nil},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			r := inspectPath(t, filepath.Join(fx, c.path), Options{Tensors: true})
			if r.Kind != c.kind || r.Schema != 1 {
				t.Fatalf("kind %q schema %d", r.Kind, r.Schema)
			}
			if c.total > 0 && (r.TotalParams != c.total || r.TrainableParams != c.trainable) {
				t.Errorf("total %d trainable %d, want %d %d", r.TotalParams, r.TrainableParams, c.total, c.trainable)
			}
			if len(r.Tensors) == 0 {
				t.Error("--tensors gave no rows")
			}
			if c.check != nil {
				c.check(t, r)
			}
			var buf bytes.Buffer
			if err := WriteText(&buf, r); err != nil || buf.Len() == 0 {
				t.Fatal("empty text report")
			}
		})
	}
}

// TestPlanLlama31 checks the figures of the issue for the Llama-3.1-8B config.
func TestPlanLlama31(t *testing.T) {
	cfg, err := checkpoint.LoadConfig("llama3-8b")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		targets []string
		want    int64
	}{
		{[]string{"q_proj,k_proj,v_proj,o_proj"}, 13_631_488},
		{[]string{"q_proj", "v_proj"}, 6_815_744},
		{[]string{"all-linear"}, 41_943_040},
	} {
		r, err := Plan(cfg, PlanOptions{Rank: 16, Alpha: 32, Targets: c.targets, Batch: 1, Seq: 2048})
		if err != nil {
			t.Fatal(err)
		}
		if r.TrainableParams != c.want || r.TotalParams != 8_030_261_248 {
			t.Errorf("%v: trainable %d total %d, want %d", c.targets, r.TrainableParams, r.TotalParams, c.want)
		}
		if c.want == 13_631_488 {
			if pct := fmt.Sprintf("%.2f", r.Percent); pct != "0.17" {
				t.Errorf("percent %v", r.Percent)
			}
			if mb := float64(r.AdapterBytes["bf16"]) / 1e6; mb < 27 || mb > 28 {
				t.Errorf("bf16 adapter %.1f MB, want ~27", mb)
			}
			m := r.Memory
			if m.QLoRA.Weights >= m.LoRA.Weights || m.QLoRA.Weights < 5_600_000_000 || m.QLoRA.Weights > 5_800_000_000 {
				t.Errorf("QLoRA weights %d bytes (spec: ~5.70 GB)", m.QLoRA.Weights)
			}
		}
	}
	if _, err := Plan(cfg, PlanOptions{Rank: 16, Targets: []string{"qproj"}}); err == nil {
		t.Error("unknown target accepted")
	}
	dora, _ := Plan(cfg, PlanOptions{Rank: 16, Targets: []string{"q_proj"}, DoRA: true})
	if dora.TrainableParams != 32*(16*(4096+4096)+4096) {
		t.Errorf("DoRA plan %d", dora.TrainableParams)
	}
}

// TestStreamedAdapter feeds a self-describing adapter file through stdin.
func TestStreamedAdapter(t *testing.T) {
	fx := fixtures(t)
	src, err := checkpoint.Open(filepath.Join(fx, "peft/lora"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var buf bytes.Buffer
	w, _ := safetensors.NewWriter(&buf, checkpoint.Metadata(src.Files), src.Tensors)
	for _, ti := range w.Order() {
		d, _ := src.Data(ti.Name)
		w.WriteTensor(ti.Name, d)
	}
	w.Close()
	r, err := Inspect("-", Options{Env: tool.Env{Stdin: bytes.NewReader(buf.Bytes())}, Deltas: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != "adapter" || r.Source != "stream" || r.TrainableParams != 16_384 || r.Modules[0].Alpha != 16 || len(r.Deltas) != 14 {
		t.Fatalf("streamed adapter: %+v", r)
	}
}

// TestDeltasMatchDenseMerge compares ||ΔW|| with the merged fixture:
// lora-merged − tiny is exactly s·B·A.
func TestDeltasMatchDenseMerge(t *testing.T) {
	fx := fixtures(t)
	r := inspectPath(t, filepath.Join(fx, "peft/lora"), Options{Deltas: true, Base: filepath.Join(fx, "peft/tiny")})
	base, _ := safetensors.Open(filepath.Join(fx, "peft/tiny/model.safetensors"))
	merged, _ := safetensors.Open(filepath.Join(fx, "peft/lora-merged/model.safetensors"))
	defer base.Close()
	defer merged.Close()
	for i, d := range r.Deltas {
		w0, _ := base.Float32(d.Module + ".weight")
		w1, _ := merged.Float32(d.Module + ".weight")
		var n2, b2 float64
		for j := range w0 {
			x := float64(w1[j]) - float64(w0[j])
			n2 += x * x
			b2 += float64(w0[j]) * float64(w0[j])
		}
		if rel := (d.Norm*d.Norm - n2) / n2; rel > 1e-4 || rel < -1e-4 {
			t.Errorf("%s: ||ΔW||² %v vs dense %v", d.Module, d.Norm*d.Norm, n2)
		}
		if d.BaseNorm*d.BaseNorm-b2 > 1e-9*b2 || b2-d.BaseNorm*d.BaseNorm > 1e-9*b2 {
			t.Errorf("%s: base norm", d.Module)
		}
		if i > 0 && d.Relative > r.Deltas[i-1].Relative {
			t.Error("deltas not sorted most-changed first")
		}
		if d.EffectiveRank <= 1 || d.EffectiveRank > 8 || len(d.SingularValues) != 8 {
			t.Errorf("%s: effective rank %v, %d singular values", d.Module, d.EffectiveRank, len(d.SingularValues))
		}
	}
}

// TestHeadersOnlyOnHugeSparseModel inspects a 16 GiB checkpoint whose data
// is never written (a sparse file): it must take milliseconds.
func TestHeadersOnlyOnHugeSparseModel(t *testing.T) {
	dir := t.TempDir()
	cfg, _ := os.ReadFile(filepath.Join(fixtures(t), "peft/tiny/config.json"))
	os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644)
	var infos []safetensors.TensorInfo
	for i := 0; i < 4; i++ {
		infos = append(infos, safetensors.TensorInfo{Name: "model.layers." + string(rune('0'+i)) + ".mlp.up_proj.weight", DType: dtype.BF16, Shape: []int64{65536, 32768}})
	}
	hdr, laid, _ := safetensors.EncodeHeader(map[string]string{"format": "pt"}, infos)
	f, _ := os.Create(filepath.Join(dir, "model.safetensors"))
	var n [8]byte
	n[0], n[1], n[2] = byte(len(hdr)), byte(len(hdr)>>8), byte(len(hdr)>>16)
	f.Write(n[:])
	f.Write(hdr)
	if err := f.Truncate(int64(8+len(hdr)) + laid[3].Offsets[1]); err != nil {
		t.Skip("no sparse files:", err)
	}
	f.Close()
	start := time.Now()
	r := inspectPath(t, dir, Options{})
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("inspecting a 16 GiB checkpoint took %v", el)
	}
	if r.Bytes != 16<<30 || r.TotalParams != 8<<30 {
		t.Errorf("bytes %d params %d", r.Bytes, r.TotalParams)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	good, _ := os.ReadFile(filepath.Join(fixtures(t), "peft/lora/adapter_model.safetensors"))
	files := map[string][]byte{
		"truncated.safetensors": good[:len(good)/2],
		"text.safetensors":      []byte("hello, this is not a tensor file at all\n"),
		"empty.safetensors":     nil,
		"gguf-trunc.gguf":       []byte("GGUF\x03\x00\x00\x00"),
	}
	for name, b := range files {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		_, err := Inspect(p, Options{})
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
	}
	if _, err := Inspect(filepath.Join(dir, "truncated.safetensors"), Options{}); !errors.Is(err, safetensors.ErrTruncated) && !errors.Is(err, safetensors.ErrHeader) {
		t.Errorf("truncated: %v", err)
	}
}
