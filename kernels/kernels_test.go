package kernels

import (
	"strings"
	"testing"
)

func TestSources(t *testing.T) {
	srcs, hdrs := Sources(), Headers()
	if len(srcs) < 5 || len(hdrs) != 1 || hdrs[0] != "common.cuh" {
		t.Fatalf("sources %v, headers %v", srcs, hdrs)
	}
	for _, n := range srcs {
		s, err := Read(n)
		if err != nil {
			t.Fatal(err)
		}
		// NVRTC gets no SDK include path: the only include is the shared header.
		for _, line := range strings.Split(s, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "#include") && strings.TrimSpace(line) != `#include "common.cuh"` {
				t.Errorf("%s: %s", n, line)
			}
		}
		if !strings.Contains(s, `extern "C" __global__`) {
			t.Errorf("%s has no kernel", n)
		}
	}
	if _, err := Read("nvrtc_prelude.h"); err == nil {
		t.Error("the clang prelude is embedded")
	}
}
