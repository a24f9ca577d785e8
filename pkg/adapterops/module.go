package adapterops

import (
	"fmt"
	"math"

	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/linalg"
	"github.com/lorakit/lorakit/pkg/peft"
)

// factors is one LoRA module of one adapter in PEFT layout: A is r×in and B
// is out×r, row-major (an MLX-layout module is transposed on reading).
type factors struct {
	mod   peft.Module
	a, b  []float32
	scale float64 // α/r or α/√r in float64, as PEFT's Python float
}

// scaling64 is PEFT's scaling of a module as a Python float.
func scaling64(m peft.Module, rslora bool) float64 {
	if rslora {
		return m.Alpha / math.Sqrt(float64(m.Rank))
	}
	return m.Alpha / float64(m.Rank)
}

// readFloats returns a tensor as float32 values, refusing non-finite ones.
func readFloats(src source, name string) ([]float32, error) {
	t, b, err := src.Tensor(name)
	if err != nil {
		return nil, err
	}
	out := make([]float32, t.NumElements())
	if err := dtype.ToF32(out, b, t.DType); err != nil {
		return nil, fmt.Errorf("%s: tensor %q: %w", src.Path(), name, err)
	}
	for i, v := range out {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("%s: tensor %q: %w: non-finite value %v at index %d", src.Path(), name, ErrUnsupported, v, i)
		}
	}
	return out, nil
}

// readFactors reads the A and B of a module.
func readFactors(src source, m peft.Module) (*factors, error) {
	a, err := readFloats(src, m.A)
	if err != nil {
		return nil, err
	}
	b, err := readFloats(src, m.B)
	if err != nil {
		return nil, err
	}
	r, in, out := m.Rank, int(m.In), int(m.Out)
	if m.Transposed { // MLX: A is (in, r), B is (r, out)
		a, b = transpose32(a, in, r), transpose32(b, r, out)
	}
	return &factors{mod: m, a: a, b: b, scale: scaling64(m, src.Config().UseRSLoRA)}, nil
}

func transpose32(x []float32, rows, cols int) []float32 {
	out := make([]float32, len(x))
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			out[j*rows+i] = x[i*cols+j]
		}
	}
	return out
}

// dense64 returns x as a rows×cols float64 matrix, each value multiplied by
// scale.
func dense64(x []float32, rows, cols int, scale float64) *linalg.Dense {
	d := linalg.NewDense(rows, cols, nil)
	for i, v := range x {
		d.Data[i] = float64(v) * scale
	}
	return d
}

// matrices returns s·B and A as float64 matrices: the product is ΔW.
func (f *factors) matrices() (b, a *linalg.Dense) {
	r := f.mod.Rank
	return dense64(f.b, int(f.mod.Out), r, f.scale), dense64(f.a, r, int(f.mod.In), 1)
}

// checkLoRA refuses adapters that are not plain LoRA (IA³, AdaLoRA), and,
// unless allowDoRA, DoRA adapters; what names the operation.
func checkLoRA(src source, what string, allowDoRA bool) error {
	cfg := src.Config()
	if cfg.PeftType != peft.TypeLoRA {
		return fmt.Errorf("%s: %w: %s works on LoRA adapters, not %s", src.Path(), ErrUnsupported, what, cfg.PeftType)
	}
	if cfg.UseDoRA && !allowDoRA {
		return doraErr(src, "key", "use_dora", what)
	}
	for _, m := range src.Analysis().Modules {
		switch m.Kind {
		case peft.KindLinear, peft.KindEmbedding:
		default:
			return fmt.Errorf("%s: tensor %q: %w: %s module (%s works on LoRA modules)", src.Path(), m.A, ErrUnsupported, m.Kind, what)
		}
		if m.DoRA() && !allowDoRA {
			return doraErr(src, "tensor", m.Magnitude, what)
		}
	}
	return nil
}

func doraErr(src source, kind, name, what string) error {
	return fmt.Errorf("%s: %s %q: %w: DoRA: the merged weight renormalises W0+ΔW by the base's row norms, so %s cannot be done exactly without the base model",
		src.Path(), kind, name, ErrUnsupported, what)
}

// Names of the output tensors of a module (PEFT's standard keys).
func outNames(path string, kind peft.ModuleKind) (a, b string) {
	if kind == peft.KindEmbedding {
		return peft.Prefix + path + ".lora_embedding_A", peft.Prefix + path + ".lora_embedding_B"
	}
	return peft.Prefix + path + ".lora_A.weight", peft.Prefix + path + ".lora_B.weight"
}

// outBiasName is the output name of a module's lora_B bias.
func outBiasName(path string) string { return peft.Prefix + path + ".lora_B.bias" }

// encode converts float32 values to the output dtype's bytes.
func encode(v []float32, dt dtype.DType) ([]byte, error) {
	out := make([]byte, len(v)*dt.Size())
	if err := dtype.FromF32(out, v, dt); err != nil {
		return nil, err
	}
	return out, nil
}

// encodeAll encodes tensors by name.
func encodeAll(dt dtype.DType, ts map[string][]float32) (map[string][]byte, error) {
	out := make(map[string][]byte, len(ts))
	for name, v := range ts {
		b, err := encode(v, dt)
		if err != nil {
			return nil, err
		}
		out[name] = b
	}
	return out, nil
}

// outputDType checks and defaults an output dtype option.
func outputDType(dt dtype.DType) (dtype.DType, error) {
	switch dt {
	case "":
		return dtype.F32, nil
	case dtype.F32, dtype.BF16, dtype.F16:
		return dt, nil
	}
	return "", fmt.Errorf("%w: output dtype %s (want F32, BF16 or F16)", ErrOption, dt)
}
