package cuda

import (
	"flag"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/kernels"
	"github.com/lorakit/lorakit/pkg/compute"
)

// kernelsDir returns the folder of the kernel sources in the repository.
func kernelsDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs(filepath.Join("..", "..", "..", "kernels"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d, "nvrtc_prelude.h")); err != nil {
		t.Skipf("kernel sources not found: %v", err)
	}
	return d
}

var ptxEntryRE = regexp.MustCompile(`(?s)\.visible \.entry (\w+)\((.*?)\)`)
var ptxParamRE = regexp.MustCompile(`\.param \.(\w)(\d+) `)

// TestKernelsCompileForDevice compiles every kernel source for the GPU with
// clang's CUDA front end (NVRTC's implicit declarations from
// kernels/nvrtc_prelude.h), as NVRTC would at run time, with warnings as
// errors. It then checks the PTX against the registry the launches are
// validated with: the same kernels, the same parameter sizes, and no local
// memory (register arrays indexed only by constants). Skips without
// clang-14.
func TestKernelsCompileForDevice(t *testing.T) {
	clang := clangPath()
	if clang == "" {
		t.Skip("clang-14 not on PATH (apt-get install clang-14)")
	}
	dir := kernelsDir(t)
	reg, err := kernelRegistry()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	seen := map[string]bool{}
	for _, f := range kernels.Sources() {
		ptx := filepath.Join(out, f+".ptx")
		cmd := exec.Command(clang, "-x", "cuda", "--cuda-device-only", "--cuda-gpu-arch=sm_86", "-nocudainc",
			"-nocudalib", "-O2", "-S", "-Wall", "-Werror", "-include", filepath.Join(dir, "nvrtc_prelude.h"),
			"-I", dir, "-o", ptx, filepath.Join(dir, f))
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", f, err, b)
			continue
		}
		b, err := os.ReadFile(ptx)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if strings.Contains(text, ".local") {
			t.Errorf("%s: the PTX uses local memory", f)
		}
		for _, m := range ptxEntryRE.FindAllStringSubmatch(text, -1) {
			name := m[1]
			seen[name] = true
			sig, ok := reg.kernels[name]
			if !ok {
				t.Errorf("%s: kernel %s is not in the registry", f, name)
				continue
			}
			if sig.file != f {
				t.Errorf("kernel %s: registry says %s, PTX of %s", name, sig.file, f)
			}
			params := ptxParamRE.FindAllStringSubmatch(m[2], -1)
			if len(params) != len(sig.params) {
				t.Errorf("kernel %s: %d PTX parameters, registry %d", name, len(params), len(sig.params))
				continue
			}
			for i, p := range params {
				bits, _ := strconv.Atoi(p[2])
				if bits/8 != sig.params[i].size() {
					t.Errorf("kernel %s parameter %d: PTX .%s%s, registry %v", name, i, p[1], p[2], sig.params[i])
				}
			}
		}
	}
	for _, n := range reg.names() {
		if !seen[n] {
			t.Errorf("registry kernel %s not in any PTX", n)
		}
	}
}

// defines returns the integer #defines of common.cuh.
func defines(t *testing.T) map[string]uint64 {
	t.Helper()
	src, err := kernels.Read("common.cuh")
	if err != nil {
		t.Fatal(err)
	}
	d := map[string]uint64{}
	for _, m := range regexp.MustCompile(`(?m)^#define (LK_\w+) (0x[0-9A-Fa-f]+|\d+)(?:u|ull)?\s*$`).FindAllStringSubmatch(src, -1) {
		v, err := strconv.ParseUint(m[2], 0, 64)
		if err != nil {
			t.Fatal(err)
		}
		d[m[1]] = v
	}
	return d
}

// TestKernelConstants checks that the host's launch constants are the ones
// the kernels are written for.
func TestKernelConstants(t *testing.T) {
	d := defines(t)
	for name, want := range map[string]uint64{
		"LK_ELEM_THREADS": elemThreads, "LK_RED_THREADS": redThreads, "LK_ATTN_THREADS": attnThreads, "LK_ATTN_MAXR": attnMaxR,
		"LK_NORM2_CHUNK": norm2Chunk, "LK_MAX_THREADS": maxBlockThreads,
		"LK_ERR_EMBEDDING": errEmbedding, "LK_ERR_ROPE": errRope, "LK_ERR_TARGET": errTarget, "LK_ERR_SEGMENTS": errSegments,
	} {
		if got, ok := d[name]; !ok || got != want {
			t.Errorf("%s = %d (defined %v), host uses %d", name, got, ok, want)
		}
	}
	// Reductions halve blockDim.x: the block must be a power of two.
	for _, n := range []int{redThreads, attnThreads} {
		if n&(n-1) != 0 || n > maxBlockThreads {
			t.Errorf("reduction block of %d threads", n)
		}
	}
}

// TestDropoutHashSource reads the hash of dropout.cu/common.cuh (γ, the
// SplitMix64 multipliers and shifts, the 40-bit shift) out of the sources,
// evaluates it in Go and compares it with compute.DropoutDrops: the device
// mask is the host's bit for bit. (TestEmulatedConformance runs the kernel
// itself.)
func TestDropoutHashSource(t *testing.T) {
	d := defines(t)
	gamma, ok := d["LK_GOLDEN"]
	if !ok {
		t.Fatal("LK_GOLDEN not defined")
	}
	src, _ := kernels.Read("common.cuh")
	mix := regexp.MustCompile(`(?s)lk_mix64\(unsigned long long z\) \{(.*?)return z;`).FindStringSubmatch(src)
	if mix == nil {
		t.Fatal("lk_mix64 not found")
	}
	type step struct {
		shift bool
		v     uint64
	}
	var steps []step
	for _, m := range regexp.MustCompile(`z (\^=|\*=) (?:z >> (\d+)|(0x[0-9A-Fa-f]+)ull);`).FindAllStringSubmatch(mix[1], -1) {
		if m[1] == "^=" {
			n, _ := strconv.Atoi(m[2])
			steps = append(steps, step{true, uint64(n)})
		} else {
			v, _ := strconv.ParseUint(m[3], 0, 64)
			steps = append(steps, step{false, v})
		}
	}
	if len(steps) != 5 {
		t.Fatalf("lk_mix64 has %d steps, want 5", len(steps))
	}
	mix64 := func(z uint64) uint64 {
		for _, s := range steps {
			if s.shift {
				z ^= z >> s.v
			} else {
				z *= s.v
			}
		}
		return z
	}
	drop, _ := kernels.Read("dropout.cu")
	if !strings.Contains(drop, "lk_mix64(key + (unsigned long long)(i + 1) * LK_GOLDEN)") || !strings.Contains(drop, "(z >> 40)") ||
		!strings.Contains(drop, "u < threshold ? 0.f : keep") {
		t.Fatal("dropout.cu no longer has the expression this test evaluates")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		seed, stream := rng.Uint64(), rng.Uint64()
		p := rng.Float32()
		key, th := compute.DropoutKey(seed, stream), compute.DropoutThreshold(p)
		for range 50 {
			i := rng.IntN(1 << 30)
			dev := uint32(mix64(key+uint64(i+1)*gamma)>>40) < th
			if dev != compute.DropoutDrops(key, i, th) {
				t.Fatalf("seed %d stream %d p %v element %d: device drops %v", seed, stream, p, i, dev)
			}
		}
	}
}

// TestKernelNames checks that no kernel shares its name with a device
// function (NVRTC and the emulator would see an overload of an extern "C"
// function).
func TestKernelNames(t *testing.T) {
	reg, err := kernelRegistry()
	if err != nil {
		t.Fatal(err)
	}
	fn := regexp.MustCompile(`__device__[^(]*?\b(\w+)\s*\(`)
	for n, s := range reg.sources {
		for _, m := range fn.FindAllStringSubmatch(s, -1) {
			if _, ok := reg.kernels[m[1]]; ok {
				t.Errorf("%s: device function %s has a kernel's name", n, m[1])
			}
		}
	}
}

// runFiltered reports whether the test binary runs a subset of the tests.
func runFiltered() bool {
	f := flag.Lookup("test.run")
	return f != nil && f.Value.String() != ""
}
