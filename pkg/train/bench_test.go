package train

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/cpu"
	"github.com/lorakit/lorakit/pkg/llama"
)

func TestDevicePeak(t *testing.T) {
	for _, c := range []struct {
		dev  compute.Device
		p    llama.Precision
		want float64
	}{
		{compute.Device{Name: "NVIDIA H200", ComputeCapability: 90}, llama.PrecisionBF16, 989e12},
		{compute.Device{Name: "NVIDIA H100 80GB HBM3", ComputeCapability: 90}, llama.PrecisionBF16, 989e12},
		{compute.Device{Name: "NVIDIA H100 PCIe", ComputeCapability: 90}, llama.PrecisionBF16, 756e12},
		{compute.Device{Name: "NVIDIA H100 80GB HBM3", ComputeCapability: 90}, llama.PrecisionF32, 67e12},
		{compute.Device{Name: "NVIDIA A100-SXM4-80GB", ComputeCapability: 80}, llama.PrecisionBF16, 312e12},
		{compute.Device{Name: "NVIDIA A10", ComputeCapability: 86}, llama.PrecisionBF16, 125e12},
		{compute.Device{Name: "NVIDIA L40", ComputeCapability: 89}, llama.PrecisionBF16, 181e12},
		{compute.Device{Name: "Fake H100", ComputeCapability: 80}, llama.PrecisionBF16, 0}, // the wrong generation
		{compute.Device{Name: "host emulation"}, llama.PrecisionBF16, 0},
	} {
		if got := DevicePeak(c.dev, c.p); got.FLOPS != c.want || (c.want > 0) != (got.Source != "") {
			t.Errorf("%+v %v: %+v, want %g", c.dev, c.p, got, c.want)
		}
	}
}

// describedCPU is the CPU backend claiming bf16 tensor cores.
type describedCPU struct{ *cpu.Backend }

func (describedCPU) Device() compute.Device {
	return compute.Device{Name: "NVIDIA H200", ComputeCapability: 90, BF16TensorCores: true}
}

func TestResolvePrecision(t *testing.T) {
	for _, c := range []struct {
		be   compute.Backend
		name string
		want llama.Precision
	}{
		{cpu.New(1), "auto", llama.PrecisionF32},
		{cpu.New(1), "", llama.PrecisionF32},
		{describedCPU{cpu.New(1)}, "auto", llama.PrecisionBF16},
		{describedCPU{cpu.New(1)}, "f32", llama.PrecisionF32},
		{cpu.New(1), "bf16", llama.PrecisionBF16},
	} {
		if got, err := ResolvePrecision(c.be, c.name); err != nil || got != c.want {
			t.Errorf("%T %q: %v, %v", c.be, c.name, got, err)
		}
	}
	if _, err := ResolvePrecision(cpu.New(1), "fp8"); err == nil {
		t.Error("fp8 accepted")
	}
}

// TestBench runs the library bench on peft/tiny's shape: bf16 mixed
// precision where the device claims tensor cores (MFU against the H200's
// peak), NF4 projections and checkpointing, and f32 on the plain CPU.
func TestBench(t *testing.T) {
	cfg := tinyConfig(t)
	for _, c := range []struct {
		be          compute.Backend
		prec        string
		qlora, ckpt bool
	}{
		{describedCPU{cpu.New(0)}, "auto", true, true},
		{cpu.New(0), "auto", false, false},
	} {
		ready := false
		var steps int
		res, err := Bench(context.Background(), BenchOptions{Backend: c.be, Shape: "tiny", Config: cfg, Params: 123, Batch: 2, Seq: 16,
			Steps: 2, Warmup: 1, Precision: c.prec, QLoRA: c.qlora, GradCheckpoint: c.ckpt,
			Ready: func(*BenchResult) { ready = true }, OnStep: func(StepResult, int) { steps++ }})
		if err != nil {
			t.Fatal(err)
		}
		if !ready || steps != 3 || res.TokensPerS <= 0 || res.WorkspaceBytes <= 0 || math.Abs(res.Loss-math.Log(256)) > 0.2 {
			t.Errorf("ready %v, %d steps, %+v", ready, steps, res)
		}
		_, described := c.be.(describedCPU)
		if wantPrec := map[bool]string{true: "bf16", false: "f32"}[described]; res.Precision != wantPrec {
			t.Errorf("precision %s, want %s", res.Precision, wantPrec)
		}
		if described && (res.PeakFLOPS != 989e12 || res.MFU <= 0 || res.HFU <= res.MFU || res.HardwareFLOPPerStep <= res.FLOPPerStep) {
			t.Errorf("MFU against the H200: %+v", res)
		}
		var text bytes.Buffer
		res.WriteText(&text)
		for _, want := range []string{"tokens/s", "MFU", "device memory", "precision", res.Precision} {
			if !strings.Contains(text.String(), want) {
				t.Errorf("text output lacks %q:\n%s", want, text.String())
			}
		}
	}
	if _, err := Bench(context.Background(), BenchOptions{Backend: cpu.New(1), Config: cfg, Batch: 1, Seq: 1, Steps: 1}); err == nil {
		t.Error("a one-token sequence accepted")
	}
}

// TestStepFLOPArch: a sliding window scores fewer query-key pairs (seq²/2 −
// (seq−w)²/2 per layer), and the built-in shapes of every architecture
// plan and count (Phi-3's recipe takes its fused qkv_proj).
func TestStepFLOPArch(t *testing.T) {
	cfg, err := BenchConfig("mistral-7b-v0.3")
	if err != nil {
		t.Fatal(err)
	}
	global := StepFLOP(cfg, nil, 1, 8192, false)
	cfg.Attention[0].Sliding, cfg.Attention[0].Window = true, 4096
	windowed := StepFLOP(cfg, nil, 1, 8192, false)
	attn := 3 * 4 * float64(cfg.Heads*cfg.HeadDim)
	if d, want := global-windowed, attn*4096*4096/2; math.Abs(d-want) > 1e-9*want {
		t.Errorf("a window of 4096 at 8192 saves %g FLOP, want %g", d, want)
	}
	for _, shape := range []string{"qwen2.5-7b", "gemma2-9b", "gemma3-4b", "phi3.5-mini", "qwen3-8b"} {
		cfg, err := BenchConfig(shape)
		if err != nil {
			t.Fatal(err)
		}
		ad, err := NewAdapter(cfg, benchRecipe(cfg))
		if err != nil {
			t.Fatalf("%s: %v", shape, err)
		}
		if f := StepFLOP(cfg, ad.Specs, 1, 2048, false); !(f > 6*float64(cfg.Params().Total())*2048/2) {
			t.Errorf("%s: %g FLOP per step", shape, f)
		}
		if _, err := llama.PlanMemory(cfg, llama.Options{Precision: llama.PrecisionBF16}, ad.Specs, 1, 2048); err != nil {
			t.Errorf("%s: %v", shape, err)
		}
	}
	if _, err := BenchConfig("no-such-shape"); err == nil {
		t.Error("an unknown shape accepted")
	}
}
