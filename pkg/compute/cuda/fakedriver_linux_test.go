//go:build linux && (amd64 || arm64)

package cuda

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ebitengine/purego"

	"github.com/lorakit/lorakit/internal/testbin"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/computetest"
)

// buildFakeLibs compiles fakeLibSource (with the emulator) and links it in a
// folder as libcuda.so.1, libcublas.so.13 and libnvrtc.so.13.
func buildFakeLibs(t *testing.T) string {
	t.Helper()
	clang := clangPath()
	if clang == "" {
		t.Skip("clang-14 not on PATH")
	}
	r, err := kernelRegistry()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	so, _, err := buildEmulatorLib(clang, dir, "libfakecuda.so", fakeLibSource, r)
	if err != nil {
		t.Fatalf("building the fake libraries: %v", err)
	}
	for _, n := range []string{"libcuda.so.1", "libcublas.so.13", "libnvrtc.so.13"} {
		if err := os.Symlink(so, filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestFakeDriver runs the real device code (purego bindings, the device
// worker, NVRTC compile and cache, module loading, kernelParams, cuBLAS
// GemmEx, events) against fake CUDA libraries whose kernels run on the
// emulator: the conformance suite must pass, every driver call must come
// from the worker thread, the kernel cache must be written and then used.
func TestFakeDriver(t *testing.T) {
	dir := buildFakeLibs(t)
	systemSearch = false
	defer func() { systemSearch = true }()
	cache := filepath.Join(t.TempDir(), "cache")
	opt := Options{LibDirs: []string{dir}, CacheDir: cache}
	be, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	d := be.Details()
	nsrc := len(be.reg.files)
	for _, want := range []string{"Fake H100, sm_90, 132 SMs, 80.0 GiB, driver 13.0", filepath.Join(dir, "libcuda.so.1"),
		"cuBLAS 13.0.1: " + filepath.Join(dir, "libcublas.so.13"), "NVRTC 13.0: " + filepath.Join(dir, "libnvrtc.so.13"),
		"--gpu-architecture=sm_90", "compiled, 0 from cache"} {
		if !strings.Contains(d, want) {
			t.Errorf("details lack %q:\n%s", want, d)
		}
	}
	if ents, _ := os.ReadDir(cache); len(ents) != nsrc {
		t.Errorf("%d cache entries, want %d", len(ents), nsrc)
	}
	t.Run("conformance", func(t *testing.T) { computetest.Run(t, be) })
	x, _ := be.Alloc(compute.F32, 1<<16)
	if _, err := be.Time(func() { be.Scale(x, 2) }); err != nil {
		t.Error(err)
	}
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	h, err := purego.Dlopen(filepath.Join(dir, "libcuda.so.1"), purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		t.Fatal(err)
	}
	fn, err := purego.Dlsym(h, "fake_wrong_thread_calls")
	if err != nil {
		t.Fatal(err)
	}
	if n, _, _ := purego.SyscallN(fn); n != 0 {
		t.Errorf("%d driver calls from a thread other than the device worker's", n)
	}

	// The second start reads every kernel from the cache; a damaged entry
	// is compiled again.
	ents, _ := os.ReadDir(cache)
	if err := os.WriteFile(filepath.Join(cache, ents[0].Name()), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	be, err = New(opt)
	if err != nil {
		t.Fatal(err)
	}
	if d := be.Details(); !strings.Contains(d, "1 compiled, "+strconv.Itoa(nsrc-1)+" from cache") {
		t.Errorf("second start: %s", d)
	}
	be.Close()

	// Without the cache every start compiles; a compile error is
	// ErrUnavailable with NVRTC's log.
	be, err = New(Options{LibDirs: []string{dir}, CacheDir: "off"})
	if err != nil {
		t.Fatal(err)
	}
	if d := be.Details(); !strings.Contains(d, strconv.Itoa(nsrc)+" compiled, 0 from cache") {
		t.Errorf("cache off: %s", d)
	}
	be.Close()
	t.Setenv("FAKE_NVRTC_FAIL", "1")
	if _, err := New(Options{LibDirs: []string{dir}, CacheDir: "off"}); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "fake compile log") {
		t.Errorf("compile error: %v", err)
	}
	t.Setenv("FAKE_NVRTC_FAIL", "0")

	// The lora-train binary over the fake libraries: the whole bench path
	// (purego bindings, NVRTC, cuBLAS GemmEx and GemmStridedBatchedEx with
	// bf16, the emulated kernels) in bf16 mixed precision with NF4 weights
	// made on the device and checkpointing, MFU against the fake's name.
	t.Run("lora-train bench", func(t *testing.T) {
		if h, err := purego.Dlopen("libcuda.so.1", purego.RTLD_NOW|purego.RTLD_LOCAL); err == nil {
			purego.Dlclose(h)
			t.Skip("a real libcuda.so.1 is installed: lora-train would find it first")
		}
		lt := testbin.Build(t, "lora-train")
		t.Setenv("LORAKIT_CUDA_LIBS", dir)
		t.Setenv("LORAKIT_CUDA_CACHE", filepath.Join(t.TempDir(), "cache"))
		cfg := filepath.Join(testbin.Fixtures(t), "peft", "tiny", "config.json")
		r := testbin.Run(t, nil, lt, "bench", "--device", "cuda", "--shape", cfg, "--batch", "2", "--seq", "16",
			"--steps", "1", "--qlora", "--grad-checkpoint", "--json")
		if r.Code != 0 {
			t.Fatalf("exit %d: %s", r.Code, r.Stderr)
		}
		var res struct {
			Precision  string  `json:"precision"`
			DeviceName string  `json:"device_name"`
			CC         int     `json:"compute_capability"`
			TokensPerS float64 `json:"tokens_per_s"`
			PeakFLOPS  float64 `json:"peak_flops"`
			MFU        float64 `json:"mfu"`
			PeakMemory int64   `json:"peak_memory_bytes"`
			QLoRA      bool    `json:"qlora"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
			t.Fatalf("%v: %s", err, r.Stdout)
		}
		if res.DeviceName != "Fake H100" || res.CC != 90 || res.TokensPerS <= 0 || res.PeakFLOPS != 989e12 || res.MFU <= 0 ||
			res.PeakMemory <= 0 || !res.QLoRA || res.Precision != "bf16" {
			t.Errorf("%+v\n%s", res, r.Stdout)
		}
	})

	// No device: ErrUnavailable with the reason.
	t.Setenv("FAKE_CUDA_NODEV", "1")
	if _, err := New(opt); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no CUDA device") {
		t.Errorf("no device: %v", err)
	}
	// A missing library: ErrUnavailable naming it.
	if _, err := New(Options{LibDirs: []string{t.TempDir()}}); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "libcuda.so.1") {
		t.Errorf("no library: %v", err)
	}
}

func itoa(n int) string {
	return strings.TrimSpace(strings.Repeat(" ", 0) + string(rune('0'+n/10%10)) + string(rune('0'+n%10)))
}
