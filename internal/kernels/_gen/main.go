// Command _gen writes the assembly kernels of internal/kernels and their Go
// declarations: the amd64 files with avo (AVX2 and AVX-512 tiers), the arm64
// files with a small NEON emitter (arm64.go) that encodes the instructions
// the Go assembler lacks.
//
// Run it through go generate in internal/kernels; the kernels' tests check
// that a fresh run reproduces the committed files byte for byte.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

// generatedBy is the generator's name in the files' "Code generated" line;
// it names no path, so that output does not depend on where it is written.
const generatedBy = "internal/kernels/_gen"

// A family is one kernel package: its amd64 and arm64 generators (either may
// be nil).
type family struct {
	name  string
	amd64 func(*amd64Gen)
	arm64 func(*arm64Gen)
}

var families = []family{
	{"half", halfAMD64, halfARM64},
	{"gemm", gemmAMD64, gemmARM64},
	{"lowrank", lowRankAMD64, lowRankARM64},
	{"vec", vecAMD64, nil},
	{"nibble", nibbleAMD64, nibbleARM64},
	{"q8", q8AMD64, nil},
}

func main() {
	dir := flag.String("dir", "..", "the internal/kernels directory to write into")
	only := flag.String("family", "", "generate only this kernel family")
	flag.Parse()
	if err := run(*dir, *only); err != nil {
		fmt.Fprintln(os.Stderr, "_gen:", err)
		os.Exit(1)
	}
}

func run(dir, only string) error {
	found := false
	for _, f := range families {
		if only != "" && f.name != only {
			continue
		}
		found = true
		out := filepath.Join(dir, f.name)
		if err := os.MkdirAll(out, 0o755); err != nil {
			return err
		}
		var files []file
		if f.amd64 != nil {
			g := newAMD64()
			f.amd64(g)
			files = append(files, file{"amd64", g})
		}
		if f.arm64 != nil {
			g := newARM64()
			f.arm64(g)
			files = append(files, file{"arm64", g})
		}
		for _, fl := range files {
			asm, stubs, err := fl.g.print(f.name)
			if err != nil {
				return fmt.Errorf("%s %s: %w", f.name, fl.arch, err)
			}
			if err := write(out, f.name+"_"+fl.arch+".s", asm); err != nil {
				return err
			}
			if err := write(out, "stubs_"+fl.arch+".go", stubs); err != nil {
				return err
			}
		}
	}
	if !found {
		return fmt.Errorf("no kernel family %q", only)
	}
	return nil
}

// file is one architecture's generated assembly and stubs.
type file struct {
	arch string
	g    interface {
		print(pkg string) (asm, stubs []byte, err error)
	}
}

func write(dir, name string, b []byte) error {
	return os.WriteFile(filepath.Join(dir, name), b, 0o644)
}
