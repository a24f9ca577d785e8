package cuda

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
)

// TestNVRTCCompile compiles every kernel source for sm_80 (A100) and sm_90
// (H100, H200) with the real NVRTC, through the backend's own loader and
// with the options of a run (CompileKernels), and checks ptxas's report:
// every kernel declares its launch bounds, none spills, and each fits its
// register budget (64 Ki registers for a block of its launch bounds). CUDA
// 11.8's NVRTC is enough (Debian's libnvrtc11.2 in non-free; .ci/run
// installs it); the test skips when no NVRTC loads.
func TestNVRTCCompile(t *testing.T) {
	archs := []int{80, 90}
	rep, err := CompileKernels(Options{}, archs...)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("no NVRTC to compile with (Debian: apt-get install libnvrtc11.2, from non-free): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	reg, err := kernelRegistry()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var table []string
	for _, k := range rep.Kernels {
		seen[fmt.Sprintf("%s/%d", k.Kernel, k.Arch)] = true
		if _, ok := reg.kernels[k.Kernel]; !ok {
			t.Errorf("sm_%d: ptxas reports %s, which the registry does not know", k.Arch, k.Kernel)
		}
		if k.MaxThreads == 0 {
			t.Errorf("%s: no __launch_bounds__", k.Kernel)
		}
		if k.SpillStores != 0 || k.SpillLoads != 0 {
			t.Errorf("sm_%d %s: spills (%d bytes stored, %d loaded)", k.Arch, k.Kernel, k.SpillStores, k.SpillLoads)
		}
		if k.Registers > k.RegisterLimit() {
			t.Errorf("sm_%d %s: %d registers, more than %d for a block of %d threads", k.Arch, k.Kernel, k.Registers,
				k.RegisterLimit(), k.MaxThreads)
		}
		table = append(table, fmt.Sprintf("sm_%d %-26s %3d regs (limit %3d at %4d threads) %5d B smem %4d B stack",
			k.Arch, k.Kernel, k.Registers, k.RegisterLimit(), k.MaxThreads, k.SharedBytes, k.StackBytes))
	}
	for _, n := range reg.names() {
		for _, a := range archs {
			if !seen[fmt.Sprintf("%s/%d", n, a)] {
				t.Errorf("sm_%d: no ptxas report for %s", a, n)
			}
		}
	}
	sort.Strings(table)
	t.Logf("NVRTC %s (%s), %d kernels:\n%s", rep.NVRTC, rep.Library, len(reg.kernels), strings.Join(table, "\n"))
}

func TestParsePtxasReport(t *testing.T) {
	log := `ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'lk_a' for 'sm_90'
ptxas info    : Function properties for lk_a
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 40 registers, 2048 bytes smem, 400 bytes cmem[0]
ptxas info    : Compiling entry function 'lk_b' for 'sm_90'
ptxas info    : Function properties for lk_b
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 10 registers, used 1 barriers, 372 bytes cmem[0]`
	ks, err := parsePtxasReport(log, "x.cu", 90)
	if err != nil {
		t.Fatal(err)
	}
	want := []KernelResources{
		{Kernel: "lk_a", File: "x.cu", Arch: 90, Registers: 40, SharedBytes: 2048, StackBytes: 8, SpillStores: 4, SpillLoads: 12},
		{Kernel: "lk_b", File: "x.cu", Arch: 90, Registers: 10},
	}
	if fmt.Sprint(ks) != fmt.Sprint(want) {
		t.Errorf("got %+v\nwant %+v", ks, want)
	}
	if _, err := parsePtxasReport(log, "x.cu", 80); err == nil {
		t.Error("a report for another architecture accepted")
	}
	if _, err := parsePtxasReport("nothing", "x.cu", 90); err == nil {
		t.Error("an empty report accepted")
	}
	if l := (KernelResources{MaxThreads: 1024}).RegisterLimit(); l != 64 {
		t.Errorf("register limit for 1024 threads: %d", l)
	}
}
