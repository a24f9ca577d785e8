// Package kernels holds the CUDA C++ sources of the compute/cuda backend.
//
// Each *.cu file is one NVRTC program (one CUDA module) of extern "C"
// kernels; common.cuh is the header they share, handed to NVRTC as a named
// header. The sources include no system header and use no CUDA SDK type
// (bf16 is raw unsigned short bits), so NVRTC alone compiles them at run time
// for the device's architecture. nvrtc_prelude.h is not embedded: it declares
// what NVRTC provides implicitly, for the clang compile check of the tests.
package kernels

import (
	"embed"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// FS holds the kernel sources (*.cu) and the headers they include (*.cuh).
//
//go:embed *.cu *.cuh
var FS embed.FS

// Sources returns the names of the kernel sources (*.cu), sorted.
func Sources() []string {
	return list(".cu")
}

// Headers returns the names of the headers (*.cuh), sorted.
func Headers() []string {
	return list(".cuh")
}

func list(ext string) []string {
	ents, err := fs.ReadDir(FS, ".")
	if err != nil {
		panic(err) // embedded: cannot fail
	}
	var names []string
	for _, e := range ents {
		if path.Ext(e.Name()) == ext && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names
}

// Read returns the contents of the embedded file name.
func Read(name string) (string, error) {
	b, err := FS.ReadFile(name)
	return string(b), err
}
