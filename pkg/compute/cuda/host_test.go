package cuda

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/lorakit/lorakit/pkg/compute/computetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	cleanupEmulator()
	os.Exit(code)
}

// TestEmulatedConformance runs the whole conformance suite on the kernels
// of kernels/*.cu, compiled by clang as host C++ and run by the emulator,
// and cuBLAS replaced by a column-major reference: everything of the
// backend but the GPU itself.
func TestEmulatedConformance(t *testing.T) {
	emu, err := sharedEmulator()
	if err != nil {
		t.Skipf("no kernel emulator: %v", err)
	}
	be, dev := newHostBackend(t, emu)
	computetest.Run(t, be)
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	// Every kernel of the sources ran at least once.
	for _, k := range be.reg.names() {
		if runFiltered() {
			break
		}
		if dev.launches[k] == 0 {
			t.Errorf("kernel %s never launched by the conformance suite", k)
		}
	}
}

// TestEmulatedAttentionChunks runs the attention cases with small chunks of
// queries, so that the bf16 path's chunking (several chunks per sequence, a
// last partial one, keys from a window's start) is exercised.
func TestEmulatedAttentionChunks(t *testing.T) {
	emu, err := sharedEmulator()
	if err != nil {
		t.Skipf("no kernel emulator: %v", err)
	}
	for _, chunk := range []int{16, 7} {
		be, dev := newHostBackend(t, emu)
		be.opt.AttentionChunk = chunk
		for _, c := range computetest.Cases {
			if strings.HasPrefix(c.Name, "attention") {
				t.Run(fmt.Sprintf("chunk%d/%s", chunk, c.Name), func(t *testing.T) { computetest.RunCase(t, be, c) })
			}
		}
		if dev.launches["lk_attn_chunk_ds"] == 0 {
			t.Error("the bf16 path did not run")
		}
		if err := be.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// recorder is a testing.TB that records failures instead of reporting
// them (value checks fail on a device that does not run kernels).
type recorder struct {
	testing.TB
	failed bool
}

type fatal struct{}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Error(...any)          { r.failed = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true; panic(fatal{}) }
func (r *recorder) Fatal(...any)          { r.failed = true; panic(fatal{}) }
func (r *recorder) Logf(string, ...any)   {}

// runRecorded runs case c and reports whether its checks failed; panics
// other than a Fatal propagate (a launch that does not match its kernel).
func runRecorded(t *testing.T, be *Backend, c computetest.Case) (failed bool) {
	r := &recorder{TB: t}
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(fatal); !ok {
				panic(v)
			}
		}
		failed = r.failed
	}()
	computetest.RunCase(r, be, c)
	return r.failed
}

// TestHostDispatch runs every conformance case on the host device without
// the emulator: every launch must match its kernel's signature, launch
// limits and live memory. Memory, conversion and GEMM cases run for real
// (their kernels have Go twins) and must pass.
func TestHostDispatch(t *testing.T) {
	be, dev := newHostBackend(t, nil)
	exact := func(name string) bool {
		return name == "memory" || name == "upload_bf16_rounding" || name == "convert" || strings.HasPrefix(name, "gemm_")
	}
	for _, c := range computetest.Cases {
		t.Run(c.Name, func(t *testing.T) {
			if exact(c.Name) {
				computetest.RunCase(t, be, c)
				return
			}
			runRecorded(t, be, c)
		})
	}
	if dev.gemms == 0 {
		t.Error("no GEMM reached cuBLAS")
	}
	for _, k := range be.reg.names() {
		if runFiltered() {
			break
		}
		if dev.launches[k] == 0 {
			t.Errorf("kernel %s never launched", k)
		}
	}
}
