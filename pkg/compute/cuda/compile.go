package cuda

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// nvrtcOptions returns the NVRTC options of a build for target (an
// --gpu-architecture option): the same at run time and in CompileKernels.
func nvrtcOptions(target string) []string {
	return []string{target, "--std=c++17"}
}

// KernelResources is ptxas's resource report for one kernel of one build.
type KernelResources struct {
	Kernel string
	File   string
	Arch   int // e.g. 90 for sm_90
	// Registers per thread, static shared memory, stack frame and spills
	// (bytes), as ptxas reports them.
	Registers   int
	SharedBytes int
	StackBytes  int
	SpillStores int
	SpillLoads  int
	// MaxThreads is the kernel's __launch_bounds__ (0 when it declares
	// none).
	MaxThreads int
}

// RegisterLimit returns the most registers a thread may use for a block of
// MaxThreads threads to fit one multiprocessor's 64 Ki registers (and the
// 255 an instruction can name).
func (k KernelResources) RegisterLimit() int {
	if k.MaxThreads <= 0 {
		return 255
	}
	return min(255, 65536/k.MaxThreads)
}

// CompileReport is what CompileKernels found.
type CompileReport struct {
	NVRTC     string // version, e.g. "11.8"
	Library   string // the file loaded
	Supported []int  // architectures NVRTC supports (nil: unknown)
	Kernels   []KernelResources
}

// CompileKernels compiles every kernel source for each architecture of
// archs (e.g. 80, 90) with NVRTC alone, with the sources, headers and
// options New uses at run time, and ptxas's verbose report added. It needs
// no driver and no GPU, and accepts CUDA 11.8's NVRTC (libnvrtc.so.11.2)
// besides the versions New loads. Without NVRTC the error wraps
// ErrUnavailable.
func CompileKernels(opt Options, archs ...int) (*CompileReport, error) {
	return compileKernels(opt, archs)
}

var (
	ptxasEntryRE = regexp.MustCompile(`Compiling entry function '(\w+)' for 'sm_(\d+)'`)
	ptxasPropsRE = regexp.MustCompile(`Function properties for (\w+)`)
	ptxasFrameRE = regexp.MustCompile(`(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads`)
	ptxasUsedRE  = regexp.MustCompile(`Used (\d+) registers`)
	ptxasSmemRE  = regexp.MustCompile(`(\d+) bytes smem`)
)

// parsePtxasReport reads the kernels' resources out of ptxas's verbose
// output in an NVRTC log:
//
//	ptxas info    : Compiling entry function 'lk_scale_f32' for 'sm_90'
//	ptxas info    : Function properties for lk_scale_f32
//	    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
//	ptxas info    : Used 10 registers, 372 bytes cmem[0]
func parsePtxasReport(log, file string, arch int) ([]KernelResources, error) {
	var ks []KernelResources
	var cur *KernelResources
	props := ""
	for _, line := range strings.Split(log, "\n") {
		if m := ptxasEntryRE.FindStringSubmatch(line); m != nil {
			a, _ := strconv.Atoi(m[2])
			if a != arch {
				return nil, fmt.Errorf("ptxas compiled %s for sm_%d, want sm_%d", m[1], a, arch)
			}
			ks = append(ks, KernelResources{Kernel: m[1], File: file, Arch: arch})
			cur = &ks[len(ks)-1]
			continue
		}
		if m := ptxasPropsRE.FindStringSubmatch(line); m != nil {
			props = m[1]
			continue
		}
		if m := ptxasFrameRE.FindStringSubmatch(line); m != nil && cur != nil && props == cur.Kernel {
			cur.StackBytes, _ = strconv.Atoi(m[1])
			cur.SpillStores, _ = strconv.Atoi(m[2])
			cur.SpillLoads, _ = strconv.Atoi(m[3])
			continue
		}
		if m := ptxasUsedRE.FindStringSubmatch(line); m != nil && cur != nil {
			cur.Registers, _ = strconv.Atoi(m[1])
			if s := ptxasSmemRE.FindStringSubmatch(line); s != nil {
				cur.SharedBytes, _ = strconv.Atoi(s[1])
			}
		}
	}
	if len(ks) == 0 {
		return nil, fmt.Errorf("no ptxas report in the NVRTC log: %q", log)
	}
	for _, k := range ks {
		if k.Registers == 0 {
			return nil, fmt.Errorf("no register count for %s in the NVRTC log", k.Kernel)
		}
	}
	return ks, nil
}
