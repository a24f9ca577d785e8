package main

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestEncodings assembles the text of every encoder with llvm-mc and
// compares the bytes (skipped when llvm-mc is not installed).
func TestEncodings(t *testing.T) {
	var mc string
	for _, name := range []string{"llvm-mc", "llvm-mc-18", "llvm-mc-17", "llvm-mc-16", "llvm-mc-15", "llvm-mc-14"} {
		if p, err := exec.LookPath(name); err == nil {
			mc = p
			break
		}
	}
	if mc == "" {
		t.Skip("llvm-mc not found: NEON encodings not cross-checked")
	}
	var encs []enc
	for _, r := range [][3]int{{0, 1, 2}, {31, 17, 9}, {5, 30, 19}} {
		d, n, m := r[0], r[1], r[2]
		encs = append(encs, fadd4s(d, n, m), fmul4s(d, n, m), fcmgt4s(d, n, m), cmhi4s(d, n, m),
			fcvtl(d, n), fcvtl2(d, n), fcvtn(d, n), fcvtn2(d, n), umaxv4s(d, n))
		for i := range 4 {
			encs = append(encs, fmlaElem4s(d, n, m, i), fmulElem4s(d, n, m, i))
		}
	}
	var src strings.Builder
	for _, e := range encs {
		src.WriteString(e.text + "\n")
	}
	cmd := exec.Command(mc, "-triple=aarch64", "-show-encoding")
	cmd.Stdin = strings.NewReader(src.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", mc, err, out)
	}
	re := regexp.MustCompile(`encoding: \[0x(..),0x(..),0x(..),0x(..)\]`)
	got := re.FindAllStringSubmatch(string(out), -1)
	if len(got) != len(encs) {
		t.Fatalf("llvm-mc gave %d encodings for %d instructions:\n%s", len(got), len(encs), out)
	}
	for i, e := range encs {
		var w uint32
		for k := 4; k >= 1; k-- {
			b, _ := strconv.ParseUint(got[i][k], 16, 8)
			w = w<<8 | uint32(b)
		}
		if w != e.bits {
			t.Errorf("%s: encoded %#08x, llvm-mc %#08x", e.text, e.bits, w)
		}
	}
}
