package train

import (
	"strings"

	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/llama"
)

// Peak is a device's dense peak arithmetic rate for one precision: the
// denominator of MFU.
type Peak struct {
	FLOPS  float64 // FLOP/s; 0 when unknown
	Source string  // what it was looked up by, e.g. "NVIDIA H200 (datasheet, dense bf16)"
}

// peakRow is one device of the table: bf16 tensor-core (f32 accumulation)
// and plain f32 (no TF32) dense peaks from NVIDIA's datasheets.
type peakRow struct {
	name      string // a substring of the device name, most specific first
	cc        int
	bf16, f32 float64
}

var peaks = []peakRow{
	{"GH200", 90, 989e12, 67e12},
	{"H100 PCIe", 90, 756e12, 51.2e12},
	{"H100 NVL", 90, 835e12, 60e12},
	{"H200 NVL", 90, 835e12, 60e12},
	{"H100", 90, 989e12, 67e12}, // SXM5
	{"H200", 90, 989e12, 67e12}, // SXM: the H100's tensor cores
	{"A100", 80, 312e12, 19.5e12},
	{"A800", 80, 312e12, 19.5e12},
	{"L40S", 89, 362e12, 91.6e12},
	{"L40", 89, 181e12, 90.5e12},
	{"L4", 89, 121e12, 30.3e12},
	{"RTX 4090", 89, 165e12, 82.6e12}, // bf16 with f32 accumulation
	{"RTX 3090", 86, 71e12, 35.6e12},
	{"A10", 86, 125e12, 31.2e12},
}

// DevicePeak returns the peak of dev for precision p: the bf16 tensor-core
// rate for PrecisionBF16, the plain f32 rate otherwise. Unknown devices
// (and CPUs) give 0.
func DevicePeak(dev compute.Device, p llama.Precision) Peak {
	for _, r := range peaks {
		if !strings.Contains(dev.Name, r.name) || dev.ComputeCapability != 0 && dev.ComputeCapability != r.cc {
			continue
		}
		if p == llama.PrecisionBF16 {
			return Peak{FLOPS: r.bf16, Source: dev.Name + " (datasheet, dense bf16 tensor cores)"}
		}
		return Peak{FLOPS: r.f32, Source: dev.Name + " (datasheet, dense f32)"}
	}
	return Peak{}
}

// ResolvePrecision maps a precision name to the model's: "auto" (or "") is
// bf16 mixed precision on a device with bf16 tensor cores (CUDA sm_80 and
// later) and f32 elsewhere; "bf16" and "f32" are themselves.
func ResolvePrecision(be compute.Backend, name string) (llama.Precision, error) {
	if name == "" || name == "auto" {
		if d, ok := be.(compute.Describer); ok && d.Device().BF16TensorCores {
			return llama.PrecisionBF16, nil
		}
		return llama.PrecisionF32, nil
	}
	return llama.ParsePrecision(name)
}
