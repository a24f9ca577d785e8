package merge

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/lorakit/lorakit/internal/kernels/fma"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/peft"
)

// compareTo checks every tensor of got against want: same names, shapes
// and dtypes, max |diff| ≤ tol; it returns the bit-exact and total counts.
func compareTo(t *testing.T, got, want string, tol float64) (exact, total int) {
	t.Helper()
	gv, gi := tensorsOf(t, got)
	wv, wi := tensorsOf(t, want)
	if len(gi) != len(wi) {
		t.Fatalf("%d tensors, want %d", len(gi), len(wi))
	}
	var worst float64
	var worstName string
	for name, w := range wv {
		g, ok := gv[name]
		if !ok {
			t.Fatalf("tensor %q missing", name)
		}
		if gi[name].DType != wi[name].DType || len(g) != len(w) {
			t.Fatalf("tensor %q: %s %v, want %s %v", name, gi[name].DType, gi[name].Shape, wi[name].DType, wi[name].Shape)
		}
		for i := range w {
			total++
			if math.Float32bits(g[i]) == math.Float32bits(w[i]) {
				exact++
				continue
			}
			if d := math.Abs(float64(g[i]) - float64(w[i])); d > worst {
				worst, worstName = d, name
			}
		}
	}
	t.Logf("%s: %d of %d values bit-exact, max |diff| %.3g (%s)", filepath.Base(got), exact, total, worst, worstName)
	if worst > tol {
		t.Fatalf("max |diff| %g > %g in %s", worst, tol, worstName)
	}
	return exact, total
}

func TestFixtureLoRA(t *testing.T) {
	fx := fixtures(t)
	out := filepath.Join(t.TempDir(), "merged")
	s := mergeTo(t, filepath.Join(fx, "peft/tiny"), one(filepath.Join(fx, "peft/lora")), out, Options{})
	if s.Tensors.Merged != 14 || s.Tensors.Copied != 7 || s.Base.Kind != "float" {
		t.Errorf("summary %+v", s.Tensors)
	}
	exact, total := compareTo(t, out, filepath.Join(fx, "peft/lora-merged"), 1e-5)
	if exact != total {
		t.Errorf("f32 LoRA merge: %d of %d values differ from PEFT (expected bit-exact, spec §7.6)", total-exact, total)
	}
	// Same file, byte for byte, and the same carried files.
	for _, name := range []string{"model.safetensors", "config.json", "generation_config.json"} {
		g, _ := os.ReadFile(filepath.Join(out, name))
		w, _ := os.ReadFile(filepath.Join(fx, "peft/lora-merged", name))
		if !bytes.Equal(g, w) {
			t.Errorf("%s differs from the fixture", name)
		}
	}
}

func TestFixtureDoRA(t *testing.T) {
	fx := fixtures(t)
	out := filepath.Join(t.TempDir(), "merged")
	s := mergeTo(t, filepath.Join(fx, "peft/tiny"), one(filepath.Join(fx, "peft/dora")), out, Options{})
	if !s.Adapters[0].DoRA || s.Tensors.Merged != 8 {
		t.Errorf("summary %+v %+v", s.Adapters[0], s.Tensors)
	}
	// Bit-exact with the row norm in torch's order (rowNorm); the spec only
	// promises ≈ 1 ulp.
	if exact, total := compareTo(t, out, filepath.Join(fx, "peft/dora-merged"), 1e-5); exact != total {
		t.Errorf("DoRA merge: %d of %d values differ from PEFT", total-exact, total)
	}
}

// TestBF16Base merges the fixture LoRA into the bf16 base and checks, per
// element, that our single rounding is never farther from the exact merge
// than PEFT's safe_merge double rounding, bf16(W + bf16(ΔW)), beyond the
// float32 error of computing ΔW (a near-tie can fall either way).
func TestBF16Base(t *testing.T) {
	fx := fixtures(t)
	out := filepath.Join(t.TempDir(), "merged.safetensors")
	mergeTo(t, filepath.Join(fx, "peft/tiny-bf16"), one(filepath.Join(fx, "peft/lora")), out, Options{})
	got, infos := tensorsOf(t, out)
	base, _ := tensorsOf(t, filepath.Join(fx, "peft/tiny-bf16"))
	ad, _ := tensorsOf(t, filepath.Join(fx, "peft/lora"))
	const s = 2.0 // alpha 16 / r 8
	var n, better, equal, slack int
	for name, w := range base {
		if infos[name].DType != dtype.BF16 {
			t.Fatalf("%s: dtype %s, want BF16", name, infos[name].DType)
		}
		module := name[:len(name)-len(".weight")]
		a, ok := ad[peft.Prefix+module+".lora_A.weight"]
		if !ok {
			for i := range w {
				if got[name][i] != w[i] {
					t.Fatalf("%s changed but is not adapted", name)
				}
			}
			continue
		}
		b := ad[peft.Prefix+module+".lora_B.weight"]
		const r = 8
		in := len(a) / r
		for o := 0; o < len(b)/r; o++ {
			for i := 0; i < in; i++ {
				k := o*in + i
				var ex float64 // exact merge, in float64 (products and sums of 8 terms are near exact)
				var acc float32
				for kk := 0; kk < r; kk++ {
					ex += float64(b[o*r+kk]) * float64(a[kk*in+i])
					acc = fma.F32(b[o*r+kk], a[kk*in+i], acc)
				}
				exact := float64(w[k]) + s*ex
				d32 := float32(acc * s)
				double := dtype.BF16ToF32(dtype.F32ToBF16(float32(w[k] + dtype.BF16ToF32(dtype.F32ToBF16(d32)))))
				ours := float64(got[name][k])
				eo, ed := math.Abs(ours-exact), math.Abs(float64(double)-exact)
				tol := 4 * math.Ldexp(math.Abs(float64(w[k]))+math.Abs(s*ex), -24)
				n++
				switch {
				case eo < ed:
					better++
				case eo == ed:
					equal++
				case eo <= ed+tol:
					slack++
				default:
					t.Fatalf("%s[%d,%d]: ours %v is %g from the exact %v, PEFT's double rounding %v only %g", name, o, i, ours, eo, exact, double, ed)
				}
				if want := float64(dtype.BF16ToF32(dtype.F32ToBF16(float32(w[k] + d32)))); ours != want {
					t.Fatalf("%s[%d,%d]: %v, want bf16(f32(W + ΔW)) = %v", name, o, i, ours, want)
				}
			}
		}
	}
	t.Logf("bf16 merge: %d elements; ours strictly closer to the exact merge in %d, equal in %d, within f32 error of a tie in %d", n, better, equal, slack)
	if better == 0 {
		t.Fatal("double rounding never lost: the comparison is vacuous")
	}
}

// TestNF4Base merges into the bitsandbytes NF4 fixtures: the result must be
// dequantize_4bit(W) + ΔW exactly (dequantized.safetensors is the reference
// dequantization), the other tensors unchanged, quantization_config gone.
func TestNF4Base(t *testing.T) {
	fx := fixtures(t)
	lora := filepath.Join(fx, "peft/lora")
	ad, _ := tensorsOf(t, lora)
	for _, name := range []string{"tiny-nf4", "tiny-nf4-nodq"} {
		t.Run(name, func(t *testing.T) {
			base := filepath.Join(fx, "bnb", name)
			out := filepath.Join(t.TempDir(), "merged")
			s := mergeTo(t, base, one(lora), out, Options{})
			if s.Base.Kind != "nf4-dequantized" || s.Tensors.Dequantized != 14 {
				t.Errorf("summary %+v %+v", s.Base, s.Tensors)
			}
			got, infos := tensorsOf(t, out)
			deq, _ := tensorsOf(t, filepath.Join(base, "dequantized.safetensors"))
			plain, _ := tensorsOf(t, filepath.Join(fx, "peft/tiny"))
			if len(infos) != len(plain) {
				t.Fatalf("%d tensors, want %d", len(infos), len(plain))
			}
			checked := 0
			for tn, w0 := range deq {
				module := tn[:len(tn)-len(".weight")]
				a, b := ad[peft.Prefix+module+".lora_A.weight"], ad[peft.Prefix+module+".lora_B.weight"]
				in := len(a) / 8
				for k := range w0 {
					o, i := k/in, k%in
					want := float32(w0[k] + refDelta(func(kk int) float32 { return b[o*8+kk] }, func(kk int) float32 { return a[kk*in+i] }, 8, 2))
					if got[tn][k] != want {
						t.Fatalf("%s[%d]: %v, want dequantized + delta = %v", tn, k, got[tn][k], want)
					}
					checked++
				}
			}
			for tn, v := range plain {
				if _, q := deq[tn]; q {
					continue
				}
				if !equalF32(got[tn], v) {
					t.Fatalf("%s changed", tn)
				}
			}
			cfg, _ := os.ReadFile(filepath.Join(out, "config.json"))
			if bytes.Contains(cfg, []byte("quantization_config")) {
				t.Error("config.json still has quantization_config")
			}
			t.Logf("%d merged values equal dequantize_4bit + delta", checked)
		})
	}
}

func equalF32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestRequantize merges the q/k/v/o DoRA adapter into the NF4 base with
// --requantize: adapted weights are NF4 again (their dequantization is the
// NF4 quantization of the float merge), the others are byte-identical.
func TestRequantize(t *testing.T) {
	fx := fixtures(t)
	base := filepath.Join(fx, "bnb/tiny-nf4")
	dora := filepath.Join(fx, "peft/dora")
	dir := t.TempDir()
	floatOut := filepath.Join(dir, "float.safetensors")
	mergeTo(t, base, one(dora), floatOut, Options{})
	out := filepath.Join(dir, "requant")
	s := mergeTo(t, base, one(dora), out, Options{Requantize: true})
	if s.Tensors.Requantized != 8 {
		t.Errorf("summary %+v", s.Tensors)
	}
	merged, _ := tensorsOf(t, floatOut)
	src, err := checkpoint.Open(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	orig, err := checkpoint.Open(base, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	if len(src.Tensors) != len(orig.Tensors) {
		t.Fatalf("%d tensors, want %d", len(src.Tensors), len(orig.Tensors))
	}
	get := func(s *checkpoint.Source) func(string) (nf4.Tensor, bool) {
		return func(name string) (nf4.Tensor, bool) {
			ti, ok := s.Info(name)
			if !ok {
				return nf4.Tensor{}, false
			}
			b, _ := s.Data(name)
			return nf4.Tensor{DType: ti.DType, Shape: ti.Shape, Data: b}, true
		}
	}
	var names []string
	for _, ti := range src.Tensors {
		names = append(names, ti.Name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, suffix, ok := nf4.SplitStateKey(name); ok || suffix != "" {
			continue
		}
		qs, packed, err := nf4.ParseModule(name, get(src))
		if err != nil {
			continue // not a 4-bit weight
		}
		adapted := bytes.Contains([]byte(name), []byte("self_attn"))
		ob, _ := orig.Data(name)
		if !adapted {
			if !bytes.Equal(ob, packed) {
				t.Errorf("%s: unadapted 4-bit weight changed", name)
			}
			continue
		}
		want, err := nf4.QuantizeTensor(merged[name], qs.Shape, nf4.Options{Type: nf4.NF4, Blocksize: 64, DoubleQuant: true, DType: dtype.F32})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(want.Packed, packed) {
			t.Errorf("%s: packed codes differ from quantizing the float merge", name)
		}
		for _, nt := range want.Tensors(name) {
			b, _ := src.Data(nt.Name)
			if !bytes.Equal(b, nt.Data) {
				t.Errorf("%s differs from the quantized float merge", nt.Name)
			}
		}
	}
	cfg, _ := os.ReadFile(filepath.Join(out, "config.json"))
	ocfg, _ := os.ReadFile(filepath.Join(base, "config.json"))
	if !bytes.Equal(cfg, ocfg) {
		t.Error("config.json changed (quantization_config must stay)")
	}
}
